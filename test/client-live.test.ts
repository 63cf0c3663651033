/**
 * The client against a bare `ws` server that plays the hub's part, to check what the client does
 * on the wire: answering pings, and reconnecting when the server goes silent.
 */
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import { createClient, type Client } from '../src/client'
import { until } from './helpers/wait'

describe('client on the wire', () => {
  let server: WebSocketServer
  let client: Client
  const received: string[] = []
  let connections = 0
  let onConnection: (ws: WebSocket) => void = () => {}

  beforeEach(async () => {
    received.length = 0
    connections = 0
    server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'listenjs.v1' })
    server.on('connection', (ws) => {
      connections++
      ws.on('message', (data) => received.push(String(data)))
      onConnection(ws)
    })
    await new Promise((resolve) => server.once('listening', resolve))
    const { port } = server.address() as AddressInfo
    client = createClient({
      url: `ws://127.0.0.1:${port}/listen`,
      WebSocket,
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    })
  })

  afterEach(async () => {
    client.close()
    for (const ws of server.clients) ws.terminate()
    await new Promise((resolve) => server.close(resolve))
  })

  it('answers the server ping with pong', async () => {
    onConnection = (ws) => {
      ws.send(JSON.stringify({ type: 'welcome', id: 'c1', heartbeat: { intervalMs: 1000, timeoutMs: 1000 } }))
      ws.send(JSON.stringify({ type: 'ping' }))
    }
    client.listen('/x', () => {})
    await until(() => received.includes('{"type":"pong"}'))
    expect(received[0]).toBe('{"type":"subscribe","path":"/x"}')
  })

  it('reconnects and resubscribes when it hears nothing for interval + timeout', async () => {
    // A server that announces a short heartbeat and then never speaks again.
    onConnection = (ws) =>
      ws.send(JSON.stringify({ type: 'welcome', id: 'c1', heartbeat: { intervalMs: 60, timeoutMs: 60 } }))
    client.listen('/x', () => {})
    await until(() => connections >= 2)
    await until(() => received.filter((m) => m.includes('"subscribe"')).length >= 2)
  })

  it('reconnects at once, not as a failure, after a 1001 or 1012 close', async () => {
    let first = true
    onConnection = (ws) => {
      ws.send(
        JSON.stringify({ type: 'welcome', id: 'c1', heartbeat: { intervalMs: 10_000, timeoutMs: 10_000 } }),
      )
      if (first) {
        first = false
        ws.close(1012, 'server restart')
      }
    }
    const errors: unknown[] = []
    client.listen('/x', () => {}, { onError: (e) => errors.push(e) })
    await until(() => connections === 2)
    expect(errors).toEqual([])
  })

  it('after a restart, resubscribes with the version held; a subscribed answer calls nothing and recovers', async () => {
    let n = 0
    onConnection = (ws) => {
      const id = `c${++n}`
      ws.send(JSON.stringify({ type: 'welcome', id, heartbeat: { intervalMs: 10_000, timeoutMs: 10_000 } }))
      ws.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { type: string; path: string; version?: string }
        if (message.type !== 'subscribe') return
        if (message.version === 'v1') {
          ws.send(JSON.stringify({ type: 'subscribed', path: message.path, version: 'v1' }))
        } else {
          ws.send(
            JSON.stringify({ type: 'data', path: message.path, version: 'v1', snapshot: true, json: 1 }),
          )
          ws.close(1012, 'server restart')
        }
      })
    }
    const values: unknown[] = []
    const resyncs: unknown[] = []
    client.onResync((info) => resyncs.push(info))
    const off = client.listen('/x', (value) => values.push(value))
    await off.ready
    await until(() => resyncs.length === 1)
    expect(received.filter((m) => m.includes('"subscribe"'))).toEqual([
      '{"type":"subscribe","path":"/x"}',
      '{"type":"subscribe","path":"/x","version":"v1"}',
    ])
    expect(values).toEqual([1])
    expect(resyncs).toEqual([{ recovered: true, changed: [] }])
    expect(client.recovered()).toBe(true)
    expect(client.headers()).toEqual({ 'X-Listenjs-Client': 'c2' })
  })
  it('a cookie client refused with 401 reconnects once and recovers on the new socket, reporting nothing', async () => {
    // Plays a server whose session cookie was rotated: the first socket's credentials are refused,
    // the next upgrade carries the new cookie and is allowed.
    onConnection = (ws) => {
      const n = connections
      ws.send(
        JSON.stringify({
          type: 'welcome',
          id: `c${n}`,
          heartbeat: { intervalMs: 10_000, timeoutMs: 10_000 },
        }),
      )
      ws.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { type: string; path: string }
        if (message.type !== 'subscribe') return
        ws.send(
          JSON.stringify(
            n === 1
              ? { type: 'error', code: 'unauthorized', message: 'x', path: message.path, status: 401 }
              : { type: 'data', path: message.path, version: 'v1', snapshot: true, json: 'inbox' },
          ),
        )
      })
    }
    const errors: unknown[] = []
    const values: unknown[] = []
    const off = client.listen('/inbox', (value) => values.push(value), { onError: (e) => errors.push(e) })
    await off.ready
    expect(values).toEqual(['inbox'])
    expect(errors).toEqual([])
    expect(connections).toBe(2)
    expect(client.status()).toBe('open')
  })

  it('a cookie client refused with 401 on the new socket too reports it and stops reconnecting', async () => {
    onConnection = (ws) => {
      ws.send(
        JSON.stringify({ type: 'welcome', id: 'c', heartbeat: { intervalMs: 10_000, timeoutMs: 10_000 } }),
      )
      ws.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { type: string; path: string }
        if (message.type !== 'subscribe') return
        const error = { type: 'error', code: 'unauthorized', message: 'x', path: message.path, status: 401 }
        ws.send(JSON.stringify(error))
      })
    }
    const off = client.listen('/inbox', () => {})
    await expect(off.ready).rejects.toMatchObject({ code: 'unauthorized', status: 401 })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(connections).toBe(2)
    expect(client.status()).toBe('open')
  })

  it('reauthenticate() sends the new token on the same socket and keeps the subscription', async () => {
    let token = 'old'
    client.close()
    const { port } = server.address() as AddressInfo
    client = createClient({ url: `ws://127.0.0.1:${port}/listen`, WebSocket, auth: () => token })
    onConnection = (ws) => {
      ws.send(
        JSON.stringify({ type: 'welcome', id: 'c1', heartbeat: { intervalMs: 10_000, timeoutMs: 10_000 } }),
      )
      ws.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { type: string; path: string }
        if (message.type === 'subscribe')
          ws.send(
            JSON.stringify({ type: 'data', path: message.path, version: 'v1', snapshot: true, json: 1 }),
          )
      })
    }
    const values: unknown[] = []
    await client.listen('/x', (value) => values.push(value)).ready
    token = 'new'
    await client.reauthenticate()
    await until(() => received.includes('{"type":"auth","token":"new"}'))
    expect(received).toEqual([
      '{"type":"auth","token":"old"}',
      '{"type":"subscribe","path":"/x"}',
      '{"type":"auth","token":"new"}',
    ])
    expect(connections).toBe(1)
    expect(values).toEqual([1])
  })
})
