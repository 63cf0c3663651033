/**
 * The HTTP stream (for networks that block WebSockets), over real HTTP on every adapter: the same
 * messages as a socket, one event each, and a last `close` event; the upgrade's checks; nothing kept
 * between two requests, so another process behind a round-robin balancer can serve the next one.
 */
import http from 'node:http'
import WebSocket from 'ws'
import { createClient, type Client, type WebSocketConstructor } from '../src/client'
import { HttpSocket, httpFallback } from '../src/client/http'
import type { Hub } from '../src'
import { redisBackplane } from '../src/redis'
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { fakeHub } from './helpers/fake'
import { httpOnlyProxy, type HttpOnlyProxy } from './helpers/http-only-proxy'
import { closeAll, json, plain } from './helpers/plain'
import { describeWithRedis, REDIS_URL, uniquePrefix } from './helpers/redis'
import { until } from './helpers/wait'

type Event = { event: string; data: Record<string, unknown> }

/** One stream over its own TCP connection: its events as they come, and `next()` to wait for one. */
class Stream {
  readonly events: Event[] = []
  private read = 0
  private waiters: Array<() => void> = []
  ended = false

  private constructor(
    readonly response: http.IncomingMessage,
    private readonly request: http.ClientRequest,
  ) {
    let buffer = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => {
      buffer += chunk
      for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
        const lines = buffer.slice(0, end).split('\n')
        buffer = buffer.slice(end + 2)
        const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message'
        const data = lines
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n')
        this.events.push({ event, data: JSON.parse(data) as Record<string, unknown> })
        this.wake()
      }
    })
    const ended = (): void => {
      this.ended = true
      this.wake()
    }
    response.once('end', ended)
    response.once('close', ended)
  }

  /** The status (and headers) of the answer. */
  get status(): number {
    return this.response.statusCode ?? 0
  }

  static open(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Stream> {
    return new Promise((resolve, reject) => {
      const request = http.request(url, {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', ...headers },
      })
      request.once('response', (response) => resolve(new Stream(response, request)))
      request.once('error', reject)
      request.end(typeof body === 'string' ? body : JSON.stringify(body))
    })
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake()
  }

  /** The next event (`close` events too); fails if the stream ends first. */
  async next(): Promise<Event> {
    while (this.read >= this.events.length) {
      if (this.ended) throw new Error('the stream ended')
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
    return this.events[this.read++]!
  }

  /** The client goes away: its TCP connection closes. */
  close(): void {
    this.request.destroy()
  }
}

const subscribe = (path: string, version?: string) => ({ type: 'subscribe', path, version })

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  const streams: Stream[] = []
  const open = async (body: unknown, headers?: Record<string, string>): Promise<Stream> => {
    const stream = await Stream.open(`${app.url}/listen`, body, headers)
    streams.push(stream)
    return stream
  }

  beforeEach(async () => {
    app = await startFixture(framework)
    app.state.create('first')
  })
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.close()
    await app.close()
  })

  it('carries the messages of a socket: welcome, the snapshot, every change, then close', async () => {
    const stream = await open({ messages: [subscribe('/items')] })
    expect(stream.status).toBe(200)
    expect(stream.response.headers['content-type']).toBe('text/event-stream; charset=utf-8')
    expect(stream.response.headers['x-listenjs-protocol']).toBe('listenjs.v1')
    expect((await stream.next()).data).toMatchObject({ type: 'welcome', id: expect.any(String) })
    const snapshot = (await stream.next()).data
    expect(snapshot).toMatchObject({
      type: 'data',
      path: '/items',
      snapshot: true,
      json: [{ title: 'first' }],
    })
    const response = await fetch(`${app.url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'second' }),
    })
    expect(response.status).toBe(201)
    expect((await stream.next()).data).toMatchObject({
      type: 'data',
      path: '/items',
      json: [{ title: 'first' }, { title: 'second' }],
    })
    expect(app.hub.stats().connections).toBe(1)
    await app.hub.close({ restart: true })
    expect(await stream.next()).toEqual({ event: 'close', data: { code: 1012, reason: 'server restart' } })
  })

  it('a new stream with the versions held is answered subscribed: nothing is sent again', async () => {
    const first = await open({ messages: [subscribe('/items')] })
    await first.next()
    const { version } = (await first.next()).data as { version: string }
    first.close()
    await until(() => app.hub.stats().connections === 0)
    const second = await open({ messages: [subscribe('/items', version), subscribe('/items/1')] })
    await second.next()
    const answers = [(await second.next()).data, (await second.next()).data]
    expect(answers).toContainEqual({ type: 'subscribed', path: '/items', version })
    expect(answers).toContainEqual(
      expect.objectContaining({ type: 'data', path: '/items/1', snapshot: true }),
    )
  })

  it('opening a stream is not a write: nothing is pushed for its path', async () => {
    const pushes: string[] = []
    app.hub.on('push', ({ path }) => pushes.push(path))
    const watcher = await open({ messages: [subscribe('/items')] })
    await watcher.next()
    await watcher.next()
    const other = await open({ messages: [subscribe('/items/1')] })
    await other.next()
    await other.next()
    other.close()
    await until(() => app.hub.stats().connections === 1)
    expect(pushes).toEqual([])
  })

  it('the checks of an upgrade: 403 for a foreign Origin, 400 for a bad body or no known protocol', async () => {
    expect((await open({ messages: [] }, { origin: 'https://evil.example' })).status).toBe(403)
    // A body that is not JSON: 400, or whatever the app's own body parser answers first (Koa's: 500 here).
    expect((await open('not json')).status).toBeGreaterThanOrEqual(400)
    expect((await open({ messages: 'x' })).status).toBe(400)
    expect((await open({ protocols: ['listenjs.v9'], messages: [] })).status).toBe(400)
    // A message past limits.messageBytes closes the stream with 1009, as it would a socket, whoever
    // read the body (here the framework's body parser may have).
    const big = await open({ messages: [{ type: 'pong', pad: 'x'.repeat(20 * 1024) }] })
    expect((await big.next()).data).toMatchObject({ type: 'welcome' })
    expect(await big.next()).toMatchObject({ event: 'close', data: { code: 1009 } })
    expect(app.hub.stats().connections).toBe(0)
  })

  it('a page of another allowed origin: the preflight and the stream carry CORS headers; others get 403', async () => {
    await app.close()
    app = await startFixture(framework, { hub: { allowedOrigins: ['http://app.example'] } })
    const preflight = (origin: string) =>
      new Promise<http.IncomingMessage>((resolve, reject) => {
        const request = http.request(`${app.url}/listen`, {
          method: 'OPTIONS',
          agent: false,
          headers: {
            origin,
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'content-type',
          },
        })
        request.once('response', (response) => {
          response.resume()
          resolve(response)
        })
        request.once('error', reject)
        request.end()
      })
    const allowed = await preflight('http://app.example')
    expect(allowed.statusCode).toBe(204)
    expect(allowed.headers).toMatchObject({
      'access-control-allow-origin': 'http://app.example',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'POST',
    })
    expect(String(allowed.headers['access-control-allow-headers'])).toContain('content-type')
    expect((await preflight('http://evil.example')).statusCode).toBe(403)
    const stream = await open({ messages: [subscribe('/items')] }, { origin: 'http://app.example' })
    expect(stream.status).toBe(200)
    expect(stream.response.headers).toMatchObject({
      'access-control-allow-origin': 'http://app.example',
      'access-control-allow-credentials': 'true',
      'access-control-expose-headers': 'x-listenjs-protocol',
    })
    expect((await stream.next()).data).toMatchObject({ type: 'welcome' })
  })

  it('a body of more messages than the rate allows closes the stream with 4429, as it would a socket', async () => {
    await app.close()
    app = await startFixture(framework, { hub: { limits: { messageBurst: 5, messagesPerSecond: 1 } } })
    const stream = await open({ messages: Array.from({ length: 20 }, () => ({ type: 'pong' })) })
    expect((await stream.next()).data).toMatchObject({ type: 'welcome' })
    expect(await stream.next()).toMatchObject({ event: 'close', data: { code: 4429 } })
    expect(app.hub.stats().connections).toBe(0)
  })

  it('a bad message in the body closes the stream with 4400, as it would a socket', async () => {
    const stream = await open({ messages: [{ type: 'nope' }] })
    expect((await stream.next()).data).toMatchObject({ type: 'welcome' })
    expect((await stream.next()).data).toMatchObject({ type: 'error', code: 'bad_message' })
    expect(await stream.next()).toMatchObject({ event: 'close', data: { code: 4400 } })
  })

  it('speaks listenjs.v1.1 when offered: patches', async () => {
    for (let i = 0; i < 40; i++) app.state.create(`item ${i}`)
    const stream = await open({
      protocols: ['listenjs.v1.1', 'listenjs.v1'],
      messages: [subscribe('/items')],
    })
    expect(stream.response.headers['x-listenjs-protocol']).toBe('listenjs.v1.1')
    await stream.next()
    await stream.next()
    await fetch(`${app.url}/items/3`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'edited' }),
    })
    expect((await stream.next()).data).toMatchObject({
      type: 'patch',
      ops: [{ op: 'replace', path: '/2/title', value: 'edited' }],
    })
  })
})

describeWithRedis('the HTTP stream across processes', () => {
  it('any process serves any request: a stream on B sees a write on A, the next stream on A resumes from its versions', async () => {
    const prefix = uniquePrefix()
    const a = await startFixture('express', {
      hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) },
    })
    const b = await startFixture('koa', { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
    const streams: Stream[] = []
    try {
      await until(() => a.hub.stats().backplane === 'connected' && b.hub.stats().backplane === 'connected')
      // One store for both processes, as behind a balancer.
      for (const app of [a, b]) app.state.create('shared')
      const onB = await Stream.open(`${b.url}/listen`, { messages: [subscribe('/items')] })
      streams.push(onB)
      await onB.next()
      await onB.next()
      for (const app of [a, b]) app.state.create('written on a')
      await fetch(`${a.url}/items/1`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'shared' }),
      })
      const change = (await onB.next()).data as { version: string; json: unknown }
      expect(change).toMatchObject({ type: 'data', json: [{ title: 'shared' }, { title: 'written on a' }] })
      onB.close()
      const onA = await Stream.open(`${a.url}/listen`, { messages: [subscribe('/items', change.version)] })
      streams.push(onA)
      await onA.next()
      expect((await onA.next()).data).toEqual({ type: 'subscribed', path: '/items', version: change.version })
    } finally {
      for (const stream of streams) stream.close()
      await a.close()
      await b.close()
    }
  })
})

describe('the body bound, where the hub reads the body itself', () => {
  it('answers 413 past 256 KiB', async () => {
    const ref: { hub?: Hub } = {}
    const server = await plain((req, res) => {
      if (ref.hub?.isStream(req)) ref.hub.stream(req, res)
      else json(res, 404, {})
    })
    ref.hub = server.hub
    const answer = await Stream.open(`${server.url}/listen`, {
      messages: [{ type: 'pong', pad: 'x'.repeat(300 * 1024) }],
    }).catch(() => undefined)
    // The hub stops reading and answers 413; a client still sending may see the connection reset.
    expect(answer === undefined ? 'reset' : String(answer.status)).toMatch(/^(413|reset)$/)
    expect(server.hub.stats().connections).toBe(0)
    await closeAll()
  })
})

describe('the heartbeat of a stream (through the seam, on a fake clock)', () => {
  afterEach(() => jest.useRealTimers())

  it('is pinged every interval and never terminated for not answering; a socket that can answer is', async () => {
    jest.useFakeTimers()
    const fake = fakeHub({ heartbeat: { intervalMs: 1000, timeoutMs: 500 } })
    const stream = fake.connect()
    stream.oneWay = true
    const socket = fake.connect()
    for (const s of [stream, socket]) s.message({ type: 'pong' })
    jest.advanceTimersByTime(3 * 1000 + 600)
    expect(stream.of('ping')).toHaveLength(3)
    expect(stream.terminated).toBe(false)
    expect(socket.of('ping')).toHaveLength(1)
    expect(socket.terminated).toBe(true)
    await fake.hub.close()
  })
})

describe.each(FRAMEWORKS)('the listenjs client over the HTTP stream, %s', (framework) => {
  let app: Fixture
  let proxy: HttpOnlyProxy
  const clients: Client[] = []
  beforeEach(async () => {
    app = await startFixture(framework)
    app.state.create('first')
    proxy = await httpOnlyProxy([app.port])
  })
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close()
    await proxy.close()
    await app.close()
  })
  // The client warns once when WebSockets cannot open: expected here.
  beforeEach(() => jest.spyOn(console, 'warn').mockImplementation(() => {}))
  afterEach(() => jest.restoreAllMocks())
  const client = (options: Parameters<typeof createClient>[0]): Client => {
    const c = createClient({
      url: `${proxy.url}/listen`,
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
      ...options,
    })
    clients.push(c)
    return c
  }
  const post = (title: string) =>
    fetch(`${app.url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title }),
    })

  it('behind a proxy that refuses upgrades, httpFallback switches to the stream and stays live', async () => {
    const live = client({ WebSocket: httpFallback(WebSocket as unknown as WebSocketConstructor) })
    const seen: unknown[] = []
    const off = live.listen('/items', (items) => seen.push(items))
    await off.ready
    expect(proxy.refused).toBe(2)
    expect(seen).toEqual([[{ id: '1', title: 'first' }]])
    await post('second')
    await until(() => seen.length === 2)
    expect(seen[1]).toEqual([
      { id: '1', title: 'first' },
      { id: '2', title: 'second' },
    ])
  })

  it('goes back to WebSockets once they open again, recovering from the versions held', async () => {
    // WebSockets fail twice (a dead port), then work: the stream in between, retired after 200 ms.
    let made = 0
    const Flaky = function (url: string, protocols: string | string[]) {
      const target = made++ < 2 ? 'ws://127.0.0.1:1/listen' : `ws://127.0.0.1:${app.port}/listen`
      return new WebSocket(target === url ? url : target, protocols)
    } as unknown as WebSocketConstructor
    const live = client({ WebSocket: httpFallback(Flaky, { retryWebSocketMs: 200 }) })
    const seen: unknown[] = []
    await live.listen('/items', (value) => seen.push(value)).ready
    expect(made).toBe(2)
    // The stream retires: a WebSocket again, and the state held is confirmed, not delivered twice.
    await until(() => made === 3 && live.status() === 'open' && live.recovered(), 5000)
    expect(seen).toHaveLength(1)
    await post('over a socket')
    await until(() => seen.length === 2)
  })

  it('listening to one more path opens a new stream with the versions held: nothing is delivered twice', async () => {
    const live = client({ WebSocket: HttpSocket as unknown as WebSocketConstructor })
    const items: unknown[] = []
    await live.listen('/items', (value) => items.push(value)).ready
    const one: unknown[] = []
    await live.listen('/items/1', (value) => one.push(value)).ready
    expect(one).toEqual([{ id: '1', title: 'first' }])
    expect(items).toHaveLength(1)
    await until(() => app.hub.stats().connections === 1)
    await post('second')
    await until(() => items.length === 2)
    expect(one).toHaveLength(1)
  })

  it('a restart closes the stream with 1012; the client reconnects and recovers from its versions', async () => {
    const live = client({ WebSocket: HttpSocket as unknown as WebSocketConstructor })
    const seen: unknown[] = []
    await live.listen('/items', (value) => seen.push(value)).ready
    const statuses: string[] = []
    live.onStatus((status) => statuses.push(status))
    app.hub.disconnect(() => true, 1012)
    await until(() => statuses.includes('open'))
    await until(() => live.recovered())
    expect(seen).toHaveLength(1)
  })
})
