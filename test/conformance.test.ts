/**
 * The conformance suite: every rule of the resource model, over real sockets, on each adapter.
 * A behaviour that holds for Fastify must hold for Express and Koa.
 */
import WebSocket from 'ws'
import { createClient, type Client, type Meta } from '../src/client'
import type { ListenjsError } from '../src/core/errors'
import * as testing from '../src/testing'
import { FRAMEWORKS, startFixture, tlsMaterial, type Fixture, type Item } from './helpers/apps'
import { TestClient, type Frame } from './helpers/tclient'
import { until } from './helpers/wait'

async function request(app: Fixture, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${app.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
}

/** Collects what one `listen` call receives. */
function recorder<T = unknown>() {
  const data: Array<{ value: T; meta: Meta }> = []
  const errors: ListenjsError[] = []
  const gone: number[] = []
  return {
    data,
    errors,
    gone,
    onData: (value: T, meta: Meta) => data.push({ value, meta }),
    options: {
      onError: (e: ListenjsError) => errors.push(e),
      onGone: (g: { status: number }) => gone.push(g.status),
    },
    last: () => data[data.length - 1]?.value,
  }
}

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  const clients: TestClient[] = []
  const liveClients: Client[] = []
  const liveTests: testing.LiveTest[] = []

  /** One connection through `listenjs/testing`, as a user's own test opens it; closed after the test. */
  async function liveTest(options?: testing.ConnectOptions): Promise<testing.LiveTest> {
    const live = await testing.connect(app.url, options)
    liveTests.push(live)
    return live
  }

  /** Generous bounds for a busy machine: a push is awaited up to 5 s, silence is 300 ms long. */
  const PUSH = { timeoutMs: 5000 }
  const QUIET = { forMs: 300 }

  /**
   * Counts the frames (data, gone, error) the hub sends to any socket from now on: what the client of
   * `listenjs/testing` does not show counts too (a state it already holds, a gone, a later error).
   */
  function framesSent(): () => number {
    const before = app.hub.stats().messagesSent
    return () => app.hub.stats().messagesSent - before
  }

  async function connect(headers?: Record<string, string>): Promise<TestClient> {
    const client = await TestClient.connect(app.wsUrl, { headers })
    clients.push(client)
    return client
  }

  async function subscribed(path: string, headers?: Record<string, string>): Promise<[TestClient, Frame]> {
    const client = await connect(headers)
    client.subscribe(path)
    const snapshot = await client.next()
    return [client, snapshot]
  }

  function client(options: Parameters<typeof createClient>[0] = {}): Client {
    const c = createClient({
      url: app.wsUrl,
      WebSocket,
      reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
      ...options,
    })
    liveClients.push(c)
    return c
  }

  beforeEach(async () => {
    app = await startFixture(framework)
    app.state.create('first')
  })

  afterEach(async () => {
    await Promise.all(liveTests.splice(0).map((live) => live.close()))
    for (const c of liveClients.splice(0)) c.close()
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await app.close()
  })

  describe('snapshot', () => {
    it('delivers the current state of GET path as the first message of a subscription', async () => {
      const [, snapshot] = await subscribed('/items')
      expect(snapshot).toMatchObject({
        type: 'data',
        path: '/items',
        snapshot: true,
        json: [{ id: '1', title: 'first' }],
      })
      expect(typeof snapshot.version).toBe('string')
    })

    it('refuses a subscription when the replayed GET answers 401, 403 or 404, keeping the socket open', async () => {
      const client = await connect({ cookie: 'session=eve' })
      client.subscribe('/private')
      expect(await client.next()).toMatchObject({
        type: 'error',
        code: 'unauthorized',
        status: 403,
        path: '/private',
      })
      client.subscribe('/missing')
      expect(await client.next()).toMatchObject({
        type: 'error',
        code: 'not_found',
        status: 404,
        path: '/missing',
      })
      const anonymous = await connect()
      anonymous.subscribe('/private')
      expect(await anonymous.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 401 })
      // Nothing registered, and the socket still works.
      expect(app.hub.stats().subscriptions).toBe(0)
      client.subscribe('/items')
      expect(await client.next()).toMatchObject({ type: 'data', path: '/items' })
    })

    it('forwards the cookie, Host and real remote address to the replay, never Accept-Encoding, and marks it', async () => {
      const live = await liveTest({
        headers: { cookie: 'session=alice', 'accept-encoding': 'gzip, br', 'x-forwarded-for': '203.0.113.9' },
      })
      expect(await live.listen('/whoami')).toMatchObject({
        cookie: 'session=alice',
        host: `127.0.0.1:${app.port}`,
        acceptEncoding: null,
        ifNoneMatch: null,
        forwardedFor: '203.0.113.9',
        remoteAddress: '127.0.0.1',
        secure: false,
        replay: true,
      })
    })

    it('forwards the real remote address, not a loopback default', async () => {
      const client = await TestClient.connect(app.wsUrl, { localAddress: '127.0.0.2' })
      clients.push(client)
      client.subscribe('/whoami')
      expect(((await client.next()).json as { remoteAddress: string }).remoteAddress).toBe('127.0.0.2')
    })

    it('delivers JSON bodies as sent (large integers intact), other types as text, and 204 as null', async () => {
      const client = await connect()
      client.subscribe('/bigint')
      client.subscribe('/text')
      client.subscribe('/empty')
      const frames = new Map<string, Frame>()
      for (let i = 0; i < 3; i++) {
        const f = await client.next()
        frames.set(f.path as string, f)
      }
      expect(frames.get('/text')).toMatchObject({ text: 'hello text' })
      expect(frames.get('/empty')).toMatchObject({ json: null })
      // The raw frame carries the integer digits exactly as the route wrote them.
      const raw = await new Promise<string>((resolve) => {
        const ws = new WebSocket(app.wsUrl, ['listenjs.v1'])
        ws.on('message', (data) => {
          const text = String(data)
          if (text.includes('"path":"/bigint"')) {
            resolve(text)
            ws.close()
          }
        })
        ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', path: '/bigint' })))
      })
      expect(raw).toContain('"json":{"n":12345678901234567890}')
    })

    it('refuses invalid paths with bad_path and keeps the socket', async () => {
      const client = await connect()
      for (const path of [
        'items',
        '/a/../items',
        '/a/%2e%2e/items',
        '/a//b',
        '/a%2Fb',
        '/a\\b',
        '/a\u0000',
      ]) {
        client.subscribe(path)
        expect(await client.next()).toMatchObject({ type: 'error', code: 'bad_path', path })
      }
      client.subscribe('/items')
      expect(await client.next()).toMatchObject({ type: 'data' })
    })
  })

  describe('changes', () => {
    it.each([
      [
        'POST',
        '/items',
        { title: 'second' },
        [
          { id: '1', title: 'first' },
          { id: '2', title: 'second' },
        ],
      ],
      ['PUT', '/items/1', { title: 'replaced' }, [{ id: '1', title: 'replaced' }]],
      ['PATCH', '/items/1', { title: 'patched' }, [{ id: '1', title: 'patched' }]],
      ['DELETE', '/items/1', undefined, []],
    ])('pushes the new state after a successful %s', async (method, path, body, expected) => {
      const live = await liveTest()
      expect(await live.listen('/items')).toEqual([{ id: '1', title: 'first' }])
      const sent = framesSent()
      const pushed = live.expectPush('/items', undefined, PUSH)
      const response = await request(app, method, path, body)
      expect(response.ok).toBe(true)
      expect(await pushed).toEqual(expected)
      await live.expectNoPush('/items', QUIET)
      // One change, and not a frame more, to anyone.
      expect(live.states('/items').map((state) => state.meta.kind)).toEqual(['snapshot', 'change'])
      expect(sent()).toBe(1)
    })

    /** Listens to /items, runs `write`, then expects no state of /items and no frame sent at all. */
    async function expectNoPushAfter(write: () => Promise<void>): Promise<void> {
      const live = await liveTest()
      await live.listen('/items')
      const sent = framesSent()
      await write()
      await live.expectNoPush('/items', QUIET)
      expect(live.states('/items')).toHaveLength(1)
      expect(sent()).toBe(0)
    }

    it.each([['400'], ['404'], ['500'], ['302']])(
      'pushes nothing when a mutation answers %s',
      async (status) => {
        await expectNoPushAfter(async () => {
          const response = await request(app, 'POST', `/items/1/silently/${status}`)
          expect(response.status).toBe(Number(status))
        })
      },
    )

    it('pushes nothing when a mutation handler throws', async () => {
      await expectNoPushAfter(async () => {
        expect((await request(app, 'POST', '/items/1/throw')).status).toBe(500)
      })
    })

    it('pushes nothing after GET, HEAD or OPTIONS', async () => {
      await expectNoPushAfter(async () => {
        await request(app, 'GET', '/items')
        await request(app, 'HEAD', '/items')
        await request(app, 'OPTIONS', '/items')
      })
    })

    it('notifies the ancestors of a changed path', async () => {
      const live = await liveTest()
      await live.listen('/items')
      await live.listen('/items/1')
      const item = live.expectPush('/items/1', undefined, PUSH)
      const items = live.expectPush('/items', undefined, PUSH)
      await request(app, 'PATCH', '/items/1', { title: 'patched' })
      expect(await item).toEqual({ id: '1', title: 'patched' })
      expect(await items).toEqual([{ id: '1', title: 'patched' }])
    })

    it('re-replays a query-string subscription when its path changes', async () => {
      const live = await liveTest()
      expect(await live.listen('/items?title=second')).toEqual([])
      const pushed = live.expectPush('/items?title=second', undefined, PUSH)
      await request(app, 'POST', '/items', { title: 'second' })
      expect(await pushed).toEqual([{ id: '2', title: 'second' }])
    })

    it('sends gone after a delete and data again after re-creation', async () => {
      const [client] = await subscribed('/items/1')
      await request(app, 'DELETE', '/items/1')
      expect(await client.next()).toMatchObject({ type: 'gone', path: '/items/1', status: 404 })
      await request(app, 'PUT', '/items/1', { title: 'first' })
      expect(await client.next()).toMatchObject({
        type: 'data',
        path: '/items/1',
        json: { id: '1', title: 'first' },
      })
    })

    it("keeps a subscription that waits (missing: 'wait') for a missing resource: gone, data once created, gone again", async () => {
      const client = await connect()
      client.send({ type: 'subscribe', path: '/items/9', missing: 'wait' })
      expect(await client.next()).toEqual({ type: 'gone', path: '/items/9', status: 404 })
      expect(app.hub.stats().subscriptions).toBe(1)
      await request(app, 'PUT', '/items/9', { title: 'ninth' })
      expect(await client.next()).toMatchObject({
        type: 'data',
        path: '/items/9',
        json: { id: '9', title: 'ninth' },
      })
      await request(app, 'DELETE', '/items/9')
      expect(await client.next()).toEqual({ type: 'gone', path: '/items/9', status: 404 })
      // A refusal is still a refusal.
      client.send({ type: 'subscribe', path: '/private', missing: 'wait' })
      expect(await client.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 401 })
      expect(app.hub.stats().subscriptions).toBe(1)
    })

    it('honours route options: notify false, and extra changed paths', async () => {
      const [client] = await subscribed('/items')
      await request(app, 'POST', '/items/quiet')
      expect(await client.quiet()).toBe(true)
      await request(app, 'POST', '/elsewhere')
      const pushed = await client.next()
      expect((pushed.json as unknown[]).length).toBe(3)
    })

    it('coalesces a burst of changes in one turn into one replay and one push', async () => {
      const [client] = await subscribed('/items')
      const before = app.hub.stats().replays
      await request(app, 'POST', '/items/burst')
      expect((await client.next()).json as unknown[]).toHaveLength(11)
      expect(await client.quiet()).toBe(true)
      expect(app.hub.stats().replays - before).toBe(1)
    })

    it('ends the subscriptions of a group whose push replay answers 403, telling them why', async () => {
      const [client] = await subscribed('/private', { cookie: 'session=alice' })
      await request(app, 'POST', '/private/revoke')
      expect(await client.next()).toMatchObject({
        type: 'error',
        code: 'unauthorized',
        status: 403,
        path: '/private',
      })
      await until(() => app.hub.stats().subscriptions === 0)
    })

    it('keeps the views of a GET route free of replays (isReplay)', async () => {
      await subscribed('/items')
      await request(app, 'POST', '/items', { title: 'x' })
      await until(() => app.hub.stats().replays >= 2)
      const views = (await (await request(app, 'GET', '/views')).json()) as { views: number }
      expect(views.views).toBe(0)
    })

    it('ignores a notify raised while serving a replay (no loops)', async () => {
      const [client, snapshot] = await subscribed('/loop')
      expect(snapshot.json).toEqual({ n: 1 })
      expect(await client.quiet()).toBe(true)
      // A real request's notify is honoured once; the replay it causes notifies again and is ignored.
      await request(app, 'GET', '/loop')
      expect(await client.next()).toMatchObject({ json: { n: 3 } })
      expect(await client.quiet()).toBe(true)
    })

    it('does not leak the async context of the mutating request into the replays it causes', async () => {
      const [client, snapshot] = await subscribed('/als')
      expect(snapshot.json).toEqual({ value: null })
      // POST /als runs inside AsyncLocalStorage { user: 'secret' }; it changes /als.
      await request(app, 'POST', '/als')
      // Same body as before, so nothing is pushed; a leaked context would push { value: 'secret' }.
      expect(await client.quiet()).toBe(true)
      expect(app.hub.stats().replays).toBe(2)
    })

    it('shares one replay per change among everyone when the route declares itself public', async () => {
      await subscribed('/public', { cookie: 'session=alice' })
      await subscribed('/public', { cookie: 'session=bob' })
      await subscribed('/public')
      const before = app.hub.stats().replays
      app.state.create('x')
      app.hub.notify('/public')
      await Promise.all(clients.map((c) => c.next()))
      expect(app.hub.stats().replays - before).toBe(1)
    })

    it('replays once per identity group: equal credentials share, different ones do not', async () => {
      await subscribed('/items', { cookie: 'session=alice' })
      await subscribed('/items', { cookie: 'session=alice' })
      await subscribed('/items', { cookie: 'session=bob' })
      const before = app.hub.stats().replays
      await request(app, 'POST', '/items', { title: 'x' })
      await Promise.all(clients.map((c) => c.next()))
      expect(app.hub.stats().replays - before).toBe(2)
    })
  })

  describe('notify', () => {
    it('notify(path) replays and pushes like a mutation', async () => {
      const [client] = await subscribed('/items')
      app.state.create('outside http')
      app.hub.notify('/items')
      expect(((await client.next()).json as unknown[]).length).toBe(2)
    })

    it('notify(path, payload) pushes the payload as-is to subscribers of exactly that path', async () => {
      const live = await liveTest()
      await live.listen('/items')
      await live.listen('/items?title=first')
      const sent = framesSent()
      const pushed = live.expectPush('/items', undefined, PUSH)
      app.hub.notify('/items', { custom: true })
      expect(await pushed).toEqual({ custom: true })
      await live.expectNoPush('/items?title=first', QUIET)
      expect(live.states('/items?title=first')).toHaveLength(1)
      expect(sent()).toBe(1)
    })

    it('refuses an invalid path with a ListenjsError', () => {
      expect(() => app.hub.notify('/a/../b')).toThrow(expect.objectContaining({ code: 'bad_path' }))
    })
  })

  describe('client', () => {
    it('two listeners of one path share one subscription; unlisten stops delivery', async () => {
      const c = client()
      const a = recorder()
      const b = recorder()
      const offA = c.listen('/items', a.onData)
      const offB = c.listen('/items', b.onData)
      await until(() => a.data.length === 1 && b.data.length === 1)
      expect(a.data[0]?.meta.snapshot).toBe(true)
      expect(app.hub.stats().subscriptions).toBe(1)
      offA()
      await request(app, 'POST', '/items', { title: 'second' })
      await until(() => b.data.length === 2)
      expect(a.data).toHaveLength(1)
      offB()
      await until(() => app.hub.stats().connections === 0)
      expect(c.status()).toBe('closed')
    })

    it('reports a refused subscription with its status through onError', async () => {
      const c = client()
      const r = recorder()
      c.listen('/private', r.onData, r.options)
      await until(() => r.errors.length === 1)
      expect(r.errors[0]).toMatchObject({ code: 'unauthorized', status: 401, path: '/private' })
      expect(r.data).toHaveLength(0)
    })

    it('reports gone through onGone', async () => {
      const c = client()
      const r = recorder()
      c.listen('/items/1', r.onData, r.options)
      await until(() => r.data.length === 1)
      await request(app, 'DELETE', '/items/1')
      await until(() => r.gone.length === 1)
      expect(r.gone).toEqual([404])
    })

    it('sends the auth token, forwarded to replays as a bearer token', async () => {
      const c = client({ auth: async () => 'alice-token' })
      const r = recorder()
      c.listen('/private', r.onData, r.options)
      await until(() => r.data.length === 1)
      expect(r.last()).toEqual({ secret: 'alice' })
    })

    it('reconnects after the server drops the socket, resubscribes and converges', async () => {
      const c = client()
      const r = recorder<Array<{ title: string }>>()
      const statuses: string[] = []
      c.onStatus((s) => statuses.push(s))
      c.listen('/items', r.onData)
      await until(() => r.data.length === 1)
      const connectionsBefore = app.hub.stats().connections
      expect(connectionsBefore).toBe(1)
      // Drop every socket from the server side, and change the state while the client is away.
      await app.close()
      app.state.create('while away')
      const state = app.state
      app = await startFixture(framework, { port: Number(new URL(app.url).port) })
      for (const item of state.items.values()) app.state.items.set(item.id, item)
      await until(() => r.data.length >= 2, 5000)
      expect(r.last()?.map((i) => i.title)).toEqual(['first', 'while away'])
      expect(statuses).toEqual(expect.arrayContaining(['reconnecting', 'open']))
    })

    /** Replaces the server by a brand-new process-like one on the same port, with the same data. */
    async function restart(options: { graceful?: boolean; whileAway?: () => void } = {}): Promise<void> {
      const { port, state } = app
      if (options.graceful) await app.hub.close({ restart: true })
      await app.close()
      options.whileAway?.()
      app = await startFixture(framework, { port })
      for (const item of state.items.values()) app.state.items.set(item.id, item)
      app.state.nextId = state.nextId
    }

    it('resolves unlisten.ready once the snapshot is delivered, and rejects it with the refusal', async () => {
      const c = client()
      const r = recorder()
      const off = c.listen('/items', r.onData)
      await off.ready
      expect(r.data).toHaveLength(1)
      await expect(c.listen('/private', () => {}).ready).rejects.toMatchObject({
        code: 'unauthorized',
        status: 401,
      })
    })

    it('recovers from state after a server restart: a changed path is resynced, an unchanged one gets no callback', async () => {
      const c = client()
      const items = recorder<Array<{ title: string }>>()
      const one = recorder()
      const resyncs: Array<{ recovered: boolean; changed: string[] }> = []
      c.onResync((info) => resyncs.push(info))
      await c.listen('/items', items.onData).ready
      await c.listen('/items/1', one.onData).ready
      await restart({ whileAway: () => app.state.create('while away') })
      await until(() => resyncs.length === 1, 5000)
      expect(resyncs[0]).toEqual({ recovered: false, changed: ['/items'] })
      expect(items.data.map((d) => d.meta.kind)).toEqual(['snapshot', 'resync'])
      expect(items.last()?.map((i) => i.title)).toEqual(['first', 'while away'])
      expect(one.data).toHaveLength(1)
      expect(c.recovered()).toBe(false)
    })

    it('reports recovered, and calls nobody, when nothing changed while the server was away', async () => {
      const c = client()
      const r = recorder()
      const resyncs: Array<{ recovered: boolean; changed: string[] }> = []
      c.onResync((info) => resyncs.push(info))
      await c.listen('/items', r.onData).ready
      await restart()
      await until(() => resyncs.length === 1, 5000)
      expect(resyncs[0]).toEqual({ recovered: true, changed: [] })
      expect(c.recovered()).toBe(true)
      expect(r.data).toHaveLength(1)
    })

    it('treats a graceful restart (1012) as reconnect-soon, not as an error', async () => {
      const c = client()
      const r = recorder()
      const statuses: string[] = []
      c.onStatus((status) => statuses.push(status))
      await c.listen('/items', r.onData, r.options).ready
      await restart({ graceful: true })
      await until(() => c.status() === 'open' && c.recovered(), 5000)
      expect(r.errors).toEqual([])
      expect(statuses).toEqual(['connecting', 'open', 'reconnecting', 'open'])
    })

    it("listens to a path that does not exist yet (missing: 'wait'), and keeps waiting across a restart", async () => {
      const c = client()
      const r = recorder<Item>()
      const resyncs: Array<{ recovered: boolean; changed: string[] }> = []
      c.onResync((info) => resyncs.push(info))
      await c.listen('/items/9', r.onData, { ...r.options, missing: 'wait' }).ready
      expect(r.gone).toEqual([404])
      // Without the option, the same path is refused as before.
      await expect(client().listen('/items/9', () => {}).ready).rejects.toMatchObject({
        code: 'not_found',
        status: 404,
      })
      await request(app, 'PUT', '/items/9', { title: 'ninth' })
      await until(() => r.data.length === 1)
      expect(r.last()).toEqual({ id: '9', title: 'ninth' })
      await request(app, 'DELETE', '/items/9')
      await until(() => r.gone.length === 2)
      // A restart (1012, then a new hub on the same port): resubscribed waiting, and gone again.
      await restart({ graceful: true })
      await until(() => resyncs.length === 1, 5000)
      expect(resyncs[0]).toEqual({ recovered: true, changed: [] })
      expect(r.gone).toEqual([404, 404, 404])
      expect(app.hub.stats().subscriptions).toBe(1)
      await request(app, 'PUT', '/items/9', { title: 'back' })
      await until(() => r.data.length === 2)
      expect(r.last()).toEqual({ id: '9', title: 'back' })
      expect(r.errors).toEqual([])
    })

    it('marks a push caused by the client’s own write as own, and others as not', async () => {
      const c = client()
      const r = recorder()
      await c.listen('/items', r.onData).ready
      await fetch(`${app.url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...c.headers() },
        body: JSON.stringify({ title: 'mine' }),
      })
      await until(() => r.data.length === 2)
      expect(r.data[1]?.meta).toMatchObject({ kind: 'change', own: true })
      await request(app, 'POST', '/items', { title: 'theirs' })
      await until(() => r.data.length === 3)
      expect(r.data[2]?.meta).toMatchObject({ kind: 'change', own: false })
    })
  })

  describe('protocol', () => {
    it.each([
      ['not JSON', 'hello'],
      ['an unknown type', JSON.stringify({ type: 'launch' })],
      ['a non-string path', JSON.stringify({ type: 'subscribe', path: 42 })],
      ['an array', '[]'],
    ])('closes a socket that sends %s with 4400, after an error message', async (_name, frame) => {
      const bad = await connect()
      const good = await connect()
      good.subscribe('/items')
      await good.next()
      bad.send(frame)
      expect(await bad.next()).toMatchObject({ type: 'error', code: 'bad_message' })
      expect((await bad.closed).code).toBe(4400)
      // Nothing of the bad socket is left, and the server and the other socket are unaffected.
      await until(() => app.hub.stats().connections === 1)
      expect(app.hub.stats().subscriptions).toBe(1)
      await request(app, 'POST', '/items', { title: 'x' })
      expect(await good.next()).toMatchObject({ type: 'data' })
    })

    it('closes a socket that sends a binary frame with 4400', async () => {
      const bad = await connect()
      bad.ws.send(Buffer.from([1, 2, 3]), { binary: true })
      expect((await bad.closed).code).toBe(4400)
    })

    it('closes a socket that sends an oversized message with 1009', async () => {
      const bad = await connect()
      bad.subscribe(`/${'a'.repeat(20_000)}`)
      expect((await bad.closed).code).toBe(1009)
      await until(() => app.hub.stats().connections === 0)
    })

    it('closes a client that offers no subprotocol with 4406', async () => {
      // (A client that offers another subprotocol fails the handshake on its own side.)
      const client = await TestClient.connect(app.wsUrl, { protocols: [], welcome: false })
      expect((await client.closed).code).toBe(4406)
    })

    it('refuses a foreign Origin at the upgrade with HTTP 403', async () => {
      await expect(
        TestClient.connect(app.wsUrl, { headers: { origin: 'https://evil.example' } }),
      ).rejects.toThrow('403')
      const sameOrigin = await TestClient.connect(app.wsUrl, {
        headers: { origin: `http://127.0.0.1:${app.port}` },
      })
      clients.push(sameOrigin)
    })

    it('leaves upgrades on other paths alone', async () => {
      await expect(TestClient.connect(app.wsUrl.replace('/listen', '/elsewhere'))).rejects.toThrow('404')
    })

    it('closes every socket with 1001 on hub.close() and frees its subscriptions', async () => {
      const [client] = await subscribed('/items')
      await app.hub.close()
      expect((await client.closed).code).toBe(1001)
      expect(app.hub.stats()).toMatchObject({ connections: 0, subscriptions: 0, resources: 0 })
    })

    it('reports connect, subscribe, push, unsubscribe and disconnect events', async () => {
      const events: string[] = []
      for (const name of ['connect', 'subscribe', 'push', 'unsubscribe', 'disconnect'] as const) {
        app.hub.on(name, () => events.push(name))
      }
      const [client] = await subscribed('/items')
      await request(app, 'POST', '/items', { title: 'x' })
      await client.next()
      client.unsubscribe('/items')
      await until(() => events.includes('unsubscribe'))
      await client.close()
      await until(() => events.includes('disconnect'))
      expect(events).toEqual(['connect', 'subscribe', 'push', 'unsubscribe', 'disconnect'])
    })
  })
})

describe.each(FRAMEWORKS)('%s adapter, with options', (framework) => {
  it('announces the heartbeat and terminates a client that stops answering pings, keeping one that answers', async () => {
    const app = await startFixture(framework, { hub: { heartbeat: { intervalMs: 500, timeoutMs: 500 } } })
    try {
      const raw = new WebSocket(app.wsUrl, ['listenjs.v1'])
      const welcome = await new Promise<Frame>((resolve) =>
        raw.once('message', (d) => resolve(JSON.parse(String(d)))),
      )
      expect(welcome).toEqual({
        type: 'welcome',
        id: expect.any(String),
        heartbeat: { intervalMs: 500, timeoutMs: 500 },
      })
      // Half a second to answer a ping: enough on a busy machine (the rule itself is unit-tested
      // with a fake clock in seam.test.ts).
      raw.close()
      await new Promise((resolve) => raw.once('close', resolve))
      const silent = await TestClient.connect(app.wsUrl)
      const alive = await TestClient.connect(app.wsUrl)
      silent.silence()
      const closed = await silent.closed
      expect(closed.code).toBe(1006)
      expect(alive.ws.readyState).toBe(WebSocket.OPEN)
      await until(() => app.hub.stats().connections === 1, 10_000)
      await alive.close()
    } finally {
      await app.close()
    }
  })

  it('serves an https server: client over wss://, replays see the TLS state', async () => {
    const app = await startFixture(framework, { tls: true })
    const { cert } = tlsMaterial()
    // The `ws` class with the test CA, in the shape the client expects of a WebSocket constructor.
    class TlsWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { ca: cert })
      }
    }
    const c = createClient({ url: app.wsUrl, WebSocket: TlsWebSocket })
    try {
      expect(app.wsUrl.startsWith('wss://')).toBe(true)
      const r = recorder<{ secure: boolean; replay: boolean }>()
      c.listen('/whoami', r.onData)
      await until(() => r.data.length === 1)
      expect(r.last()).toMatchObject({ secure: true, replay: true })
    } finally {
      c.close()
      await app.close()
    }
  })
})
