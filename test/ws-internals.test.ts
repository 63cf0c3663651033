/**
 * What listenjs uses of `ws` beyond its documented API (src/node/ws-internals.ts). If a `ws` release
 * changes `Sender.frame` or `WebSocket#_socket`, these fail loudly, and the last one shows the
 * endpoint still works through the public API.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import { SUBPROTOCOL } from '../src/core/protocol'
import { frameBuilder, rawSocketOf, textFrame } from '../src/node/ws-internals'

describe('ws internals', () => {
  it('ws exports Sender.frame, and it builds an unmasked text frame byte for byte', () => {
    expect(frameBuilder).toBeDefined()
    const payload = Buffer.from('{"type":"ping"}')
    const frame = textFrame(payload)!
    // FIN + text opcode, then the length (< 126: one byte, mask bit clear), then the payload.
    expect([...frame.subarray(0, 2)]).toEqual([0x81, payload.length])
    expect(frame.subarray(2).equals(payload)).toBe(true)
    const long = Buffer.alloc(70_000, 0x61)
    const longFrame = textFrame(long)!
    expect([...longFrame.subarray(0, 2)]).toEqual([0x81, 127])
    expect(longFrame.readBigUInt64BE(2)).toBe(BigInt(long.length))
  })

  it('a server-side WebSocket keeps its TCP socket in _socket, and a frame written there arrives', async () => {
    const server = http.createServer()
    const wss = new WebSocketServer({ server })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const accepted = new Promise<WebSocket>((resolve) => wss.once('connection', resolve))
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`)
    const received = new Promise<string>((resolve) => client.once('message', (data) => resolve(String(data))))
    const ws = await accepted
    const raw = rawSocketOf(ws)
    expect(raw).toBeDefined()
    raw!.write(textFrame(Buffer.from('{"via":"raw"}'))!)
    expect(await received).toBe('{"via":"raw"}')
    client.close()
    wss.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
})

describe('what the endpoint reads of a socket', () => {
  it('ws.bufferedAmount is the TCP socket writableLength when nothing is compressed', async () => {
    const server = http.createServer()
    const wss = new WebSocketServer({ server, perMessageDeflate: false })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const accepted = new Promise<WebSocket>((resolve) => wss.once('connection', resolve))
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`)
    await new Promise((resolve) => client.once('open', resolve))
    // The client stops reading: what the server writes piles up in its socket.
    ;(client as unknown as { _socket: { pause(): void } })._socket.pause()
    const ws = await accepted
    const raw = rawSocketOf(ws)!
    const frame = textFrame(Buffer.alloc(64 * 1024, 0x61))!
    for (let i = 0; i < 1000 && raw.write(frame); i++) {
      // until the kernel's buffers are full and Node starts holding bytes
    }
    ws.send('x'.repeat(1000))
    expect(raw.writableLength).toBeGreaterThan(0)
    expect(ws.bufferedAmount).toBe(raw.writableLength)
    client.terminate()
    wss.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
})

describe('without them', () => {
  it('the endpoint sends through ws.send and reports drains from its callback', async () => {
    jest.resetModules()
    jest.doMock('../src/node/ws-internals', () => ({
      frameBuilder: undefined,
      textFrame: () => undefined,
      rawSocketOf: () => undefined,
    }))
    const { createHub } = await import('../src/node')
    const server = http.createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end('{"ok":true}')
    })
    const hub = createHub()
    hub.attach(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/listen`, [
      SUBPROTOCOL,
    ])
    const frames: Array<Record<string, unknown>> = []
    const data = new Promise<void>((resolve) =>
      client.on('message', (raw) => {
        frames.push(JSON.parse(String(raw)) as Record<string, unknown>)
        if (frames.some((f) => f.type === 'data')) resolve()
      }),
    )
    await new Promise((resolve) => client.once('open', resolve))
    client.send(JSON.stringify({ type: 'subscribe', path: '/x' }))
    await data
    expect(frames.map((f) => f.type)).toEqual(['welcome', 'data'])
    expect(frames[1]).toMatchObject({ path: '/x', json: { ok: true } })
    client.close()
    await hub.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    jest.dontMock('../src/node/ws-internals')
  })
})
