/**
 * Trustworthy by construction: each test is an attack that once worked. Shared replays never carry
 * one member's identity to another; credentials that change leave their groups at once; the writer's
 * id reaches nobody else; no connection can monopolize replays; outside input to the hub is bounded;
 * work started inside a replay is not a replay; the `paths` option closes what a front proxy closes.
 */
import net from 'node:net'
import { PUBLIC } from '../src/core/options'
import { CLIENT_HEADER } from '../src/core/protocol'
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { until } from './helpers/wait'
import { TestClient, type Frame } from './helpers/tclient'

describe.each(FRAMEWORKS)('%s', (framework) => {
  let app: Fixture
  const clients: TestClient[] = []

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await app?.close()
  })

  async function client(headers: Record<string, string> = {}): Promise<TestClient> {
    const c = await TestClient.connect(app.wsUrl, { headers })
    clients.push(c)
    return c
  }

  /** A client and the connection id its `welcome` gave it. */
  async function clientWithId(headers: Record<string, string>): Promise<[TestClient, string]> {
    const c = await TestClient.connect(app.wsUrl, { headers, welcome: false })
    clients.push(c)
    const welcome = await c.next()
    return [c, welcome.id as string]
  }

  /** Subscribes and returns the first answer (data or error). */
  async function subscribed(c: TestClient, path: string): Promise<Frame> {
    c.subscribe(path)
    return c.next()
  }

  const write = (method: string, path: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${app.url}${path}`, { method, headers })

  describe('shared replays', () => {
    beforeEach(async () => {
      app = await startFixture(framework)
    })

    it('never pushes a draft to a public subscriber once the route stops declaring it public', async () => {
      const owner = await client({ cookie: 'session=alice' })
      const anonymous = await client()
      expect(await subscribed(owner, '/t/doc')).toMatchObject({ json: { published: true } })
      expect(await subscribed(anonymous, '/t/doc')).toMatchObject({ json: { published: true } })
      const seen: string[] = []
      anonymous.ws.on('message', (data) => seen.push(String(data)))
      expect((await write('PUT', '/t/doc?published=0&body=SECRET%20DRAFT')).status).toBe(200)
      // The owner sees the draft (its own GET answers it), the anonymous subscriber `gone` (its own 404).
      expect(await owner.next()).toMatchObject({
        type: 'data',
        json: { published: false, body: 'SECRET DRAFT' },
      })
      expect(await anonymous.next()).toMatchObject({ type: 'gone', status: 404 })
      expect(seen.some((frame) => frame.includes('SECRET DRAFT'))).toBe(false)
      // Published again: both are served again (and share one replay).
      await write('PUT', '/t/doc?published=1&body=out')
      expect(await owner.next()).toMatchObject({ json: { published: true, body: 'out' } })
      expect(await anonymous.next()).toMatchObject({ json: { published: true, body: 'out' } })
    })

    it('replays a public group with no member’s credentials or address', async () => {
      const member = await client({ cookie: 'session=alice', authorization: 'Bearer alice-token' })
      // The snapshot is the member's own: made with its own request.
      expect(await subscribed(member, '/t/whoami')).toMatchObject({
        type: 'data',
        json: { cookie: 'session=alice', authorization: 'Bearer alice-token', remoteAddress: '127.0.0.1' },
      })
      // A push is the group's: made with nobody's.
      await write('POST', '/t/whoami')
      expect(await member.next()).toMatchObject({
        type: 'data',
        json: { cookie: null, authorization: null, remoteAddress: '0.0.0.0', n: 1 },
      })
    })

    it('keys a public group by Host: a member with a forged Host cannot poison the others', async () => {
      const evil = await TestClient.connect(app.wsUrl, { headers: { host: 'evil.example' } })
      clients.push(evil)
      const honest = await client()
      expect(await subscribed(evil, '/t/links')).toMatchObject({
        json: { self: 'http://evil.example/t/links' },
      })
      const own = `http://127.0.0.1:${app.port}/t/links`
      expect(await subscribed(honest, '/t/links')).toMatchObject({ json: { self: own } })
      await write('POST', '/t/links')
      expect(await honest.next()).toMatchObject({ type: 'data', json: { self: own, n: 1 } })
      expect(await evil.next()).toMatchObject({ type: 'data', json: { self: 'http://evil.example/t/links' } })
    })
  })

  describe('identify groups', () => {
    beforeEach(async () => {
      // Every signed-in user reads the same team page: the app declares them one group.
      app = await startFixture(framework, { hub: { identify: () => 'team' } })
    })

    it('applies a refusal seen with one member’s credentials to that member only', async () => {
      const users = ['alice', 'bob', 'carol', 'dave']
      const members = await Promise.all(users.map((u) => client({ cookie: `session=${u}` })))
      for (const m of members) expect(await subscribed(m, '/t/team')).toMatchObject({ json: { team: 0 } })
      const before = app.hub.stats().replays
      // alice (the group's first member, whose credentials its replays use) is revoked.
      app.state.revoked.add('alice')
      await write('POST', '/t/team')
      expect(await members[0]!.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
      for (const m of members.slice(1))
        expect(await m.next()).toMatchObject({ type: 'data', json: { team: 1 } })
      // One shared replay, then one per member with its own credentials.
      expect(app.hub.stats().replays - before).toBe(1 + users.length)
      // The others still share: the next change costs one replay.
      const next = app.hub.stats().replays
      await write('POST', '/t/team')
      for (const m of members.slice(1)) expect(await m.next()).toMatchObject({ json: { team: 2 } })
      expect(app.hub.stats().replays - next).toBe(1)
      expect(await members[0]!.quiet(100)).toBe(true)
    })

    it('a garbage token on one socket ends that socket’s subscription only, with no reconnect storm', async () => {
      const members = await Promise.all(Array.from({ length: 20 }, () => client()))
      members.forEach((m, i) => m.send({ type: 'auth', token: `user${i}-token` }))
      for (const m of members) expect(await subscribed(m, '/t/team')).toMatchObject({ json: { team: 0 } })
      const before = app.hub.stats().replays
      members[0]!.send({ type: 'auth', token: 'garbage' })
      expect(await members[0]!.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 401 })
      await write('POST', '/t/team')
      for (const m of members.slice(1))
        expect(await m.next()).toMatchObject({ type: 'data', json: { team: 1 } })
      // The re-check of the one socket, and one shared replay for the change.
      expect(app.hub.stats().replays - before).toBe(2)
      expect(app.hub.stats().connections).toBe(20)
    })
  })

  describe('credentials that change', () => {
    it('leave the group at once: a token sent in the same turn as a write never reaches a group peer', async () => {
      // Anonymous sockets share one group: the app says so.
      app = await startFixture(framework, {
        hub: { identify: (_path, request) => (request.headers.authorization ? undefined : 'anonymous') },
      })
      for (let trial = 0; trial < 10; trial++) {
        const switcher = await client()
        const peer = await client()
        expect(await subscribed(switcher, '/t/view')).toMatchObject({ json: { user: null } })
        expect(await subscribed(peer, '/t/view')).toMatchObject({ json: { user: null } })
        const seen: string[] = []
        peer.ws.on('message', (data) => seen.push(String(data)))
        // The auth message and the write race; whichever lands first, the peer sees only its own view.
        switcher.send({ type: 'auth', token: 'alice-token' })
        await write('POST', '/t/view')
        await until(() => seen.some((f) => f.includes(`"n":${trial + 1}`)), 3000)
        expect(seen.some((f) => f.includes('alice-secret'))).toBe(false)
        await Promise.all([switcher.close(), peer.close()])
      }
    })

    it('sends the writer’s id to the writer only', async () => {
      app = await startFixture(framework, { hub: { identify: () => PUBLIC } })
      const [writer, id] = await clientWithId({ cookie: 'session=alice' })
      const other = await client({ cookie: 'session=bob' })
      await subscribed(writer, '/t/fast')
      await subscribed(other, '/t/fast')
      await write('POST', '/t/fast', { cookie: 'session=alice', [CLIENT_HEADER]: id })
      expect(await writer.next()).toMatchObject({ type: 'data', origin: id })
      const pushed = await other.next()
      expect(pushed).toMatchObject({ type: 'data', json: { fast: 1 } })
      expect(pushed).not.toHaveProperty('origin')
    })
  })

  describe('fair replays', () => {
    it('serves a legitimate snapshot and push within 250 ms while one connection holds hung, slow and many replays', async () => {
      app = await startFixture(framework)
      const attacker = await client()
      // 200 query variants of a 20 ms route and 30 of a 0 ms one, all live...
      for (let i = 0; i < 200; i++) attacker.subscribe(`/t/slow?v=${i}`)
      for (let i = 0; i < 30; i++) attacker.subscribe(`/t/fast?v=${i}`)
      for (let i = 0; i < 230; i++) await attacker.nextOf('data', 10_000)
      // ...and 16 that never answer: they hold the attacker's replay slots until they time out.
      for (let i = 0; i < 16; i++) attacker.subscribe(`/t/hang/${i}`)
      await until(() => app.hub.stats().replaysQueued >= 12)
      const legit = await client()
      let started = Date.now()
      expect(await subscribed(legit, '/t/slow')).toMatchObject({ type: 'data', json: { slow: 0 } })
      const snapshotMs = Date.now() - started
      // One write changes all 201 variants of /t/slow: 200 replays are the attacker's, one is ours.
      // The first one warms the write path up; the second is measured.
      await write('POST', '/t/slow')
      expect(await legit.next()).toMatchObject({ type: 'data', json: { slow: 1 } })
      started = Date.now()
      await write('POST', '/t/slow')
      expect(await legit.next()).toMatchObject({ type: 'data', json: { slow: 2 } })
      const pushMs = Date.now() - started
      const stats = app.hub.stats()
      // The attacker's work is still pending when the legitimate push has arrived.
      expect(stats.replaysQueued).toBeGreaterThan(0)
      expect(stats.replaysQueuedPerConnectionMax).toBe(stats.replaysQueued)
      expect(stats.replaysInFlight).toBeLessThanOrEqual(8)
      expect(snapshotMs).toBeLessThan(250)
      expect(pushMs).toBeLessThan(250)
    }, 30_000)

    it('drops replays nobody needs: the queue stays bounded under churn and returns to zero', async () => {
      app = await startFixture(framework, {
        hub: { limits: { messagesPerSecond: 100_000, messageBurst: 100_000 } },
      })
      const churner = await client()
      for (let i = 0; i < 8; i++) churner.subscribe(`/t/hang/live-${i}`)
      for (let i = 0; i < 2000; i++) {
        churner.subscribe(`/t/hang/churn?i=${i}`)
        churner.unsubscribe(`/t/hang/churn?i=${i}`)
      }
      // Messages are handled in order: once this refusal is answered, the churn was handled.
      churner.subscribe('no-slash')
      expect(await churner.nextOf('error')).toMatchObject({ code: 'bad_path' })
      const stats = app.hub.stats()
      expect(stats.subscriptions).toBe(8)
      // At most the live hung subscriptions wait (4 of 8 run, the rest queue); no churned one.
      expect(stats.replaysQueued + stats.replaysInFlight).toBeLessThanOrEqual(8)
      await churner.close()
      await until(() => app.hub.stats().connections === 0)
      expect(app.hub.stats().replaysQueued).toBe(0)
    }, 20_000)
  })

  describe('the rest of the attack surface', () => {
    beforeEach(async () => {
      app = await startFixture(framework, { hub: { paths: ['/items', '/t'] } })
    })

    it('refuses an upgrade without Host with HTTP 400 and never replays with an invented one', async () => {
      const answer = await rawUpgrade(app.port, null)
      expect(answer).toMatch(/^HTTP\/1\.1 400/)
      expect(app.hub.stats().connections).toBe(0)
    })

    it('treats work a replay started, once the replay is over, as ordinary work', async () => {
      const c = await client()
      expect(await subscribed(c, '/t/lazy')).toMatchObject({ json: { lazy: 0 } })
      // The timer the replayed GET started notifies after the replay ended.
      expect(await c.next()).toMatchObject({ type: 'data', json: { lazy: 1 } })
    })

    it('never takes a write that waited on a lock a replay held for a replay', async () => {
      const t = app.state.trustState
      t.gate = new Promise((resolve) => (t.openGate = resolve))
      const c = await client()
      c.subscribe('/t/locked')
      await until(() => t.lock.held)
      const written = write('POST', '/t/locked')
      await until(() => t.lock.waiters.length === 1)
      t.openGate()
      expect(await c.next()).toMatchObject({ type: 'data', json: { locked: 0 } })
      expect((await written).status).toBe(200)
      expect(await c.next()).toMatchObject({ type: 'data', json: { locked: 1 } })
    })

    it('refuses paths outside the `paths` option before any replay', async () => {
      const c = await client()
      const before = app.hub.stats().replays
      for (const path of ['/internal/config', '/itemsx', '/', '/views']) {
        expect(await subscribed(c, path)).toMatchObject({
          type: 'error',
          code: 'unauthorized',
          status: 403,
          path,
        })
      }
      expect(app.hub.stats().replays).toBe(before)
      expect(await subscribed(c, '/items')).toMatchObject({ type: 'data' })
      expect(await subscribed(c, '/t/fast?x=1')).toMatchObject({ type: 'data' })
    })
  })
})

describe.each(FRAMEWORKS)('%s: a write to a path that cannot be a key', (framework) => {
  it('notifies the nearest acceptable ancestor and warns once per route', async () => {
    const warnings: unknown[] = []
    const logger = { debug() {}, info() {}, error() {}, warn: (o: unknown) => warnings.push(o) }
    const app = await startFixture(framework, { hub: { logger } })
    try {
      const c = await TestClient.connect(app.wsUrl)
      c.subscribe('/things')
      expect(await c.next()).toMatchObject({ type: 'data', json: [] })
      for (const title of ['one', 'two']) {
        // `..` in the path: no subscription can be keyed by it, so `/things` is notified.
        const res = await fetch(`${app.url}/things/7%2F..%2F8`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ title }),
        })
        expect(res.status).toBe(200)
        expect(await c.next()).toMatchObject({ type: 'data', json: [{ title }] })
      }
      const unkeyable = warnings.filter((w) => (w as { route?: string }).route?.startsWith('PUT '))
      expect(unkeyable).toHaveLength(1)
      await c.close()
    } finally {
      await app.close()
    }
  })
})

describe('backplane input', () => {
  it('a payload nested 20,000 deep is dropped and logged; the hub goes on', async () => {
    let deliver: (message: unknown) => void = () => {}
    const errors: unknown[] = []
    const app = await startFixture('fastify', {
      hub: {
        backplane: {
          publish: (message) => deliver(message),
          subscribe: (handler) => {
            deliver = handler as (message: unknown) => void
            return () => {}
          },
        },
        logger: { debug() {}, info() {}, warn() {}, error: (o) => errors.push(o) },
      },
    })
    try {
      const c = await TestClient.connect(app.wsUrl)
      expect(await subscribed(c, '/items')).toMatchObject({ type: 'data' })
      let deep: unknown = 1
      for (let i = 0; i < 20_000; i++) deep = [deep]
      expect(() => deliver({ kind: 'payload', path: '/items', payload: deep })).not.toThrow()
      expect(() =>
        deliver({ kind: 'change', paths: Array.from({ length: 2000 }, () => '/items') }),
      ).not.toThrow()
      expect(errors.length).toBeGreaterThan(0)
      await fetch(`${app.url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'still works' }),
      })
      expect(await c.next()).toMatchObject({ type: 'data', json: [{ title: 'still works' }] })
      await c.close()
    } finally {
      await app.close()
    }
  })

  it('a change of more than 1024 paths travels in parts: no hub drops its own large change', async () => {
    const app = await startFixture('koa', { hub: { limits: { pathLength: 4096 } } })
    try {
      const c = await TestClient.connect(app.wsUrl)
      expect(await subscribed(c, '/t/fast')).toMatchObject({ json: { fast: 0 } })
      app.state.trustState.fast++
      // 1,100 segments below /t/fast: with its ancestors, 1,103 paths.
      app.hub.notify(`/t/fast${'/x'.repeat(1100)}`)
      expect(await c.next()).toMatchObject({ type: 'data', json: { fast: 1 } })
      await c.close()
    } finally {
      await app.close()
    }
  })

  async function subscribed(c: TestClient, path: string): Promise<Frame> {
    c.subscribe(path)
    return c.next()
  }
})

/** Sends an upgrade request by hand (`host` null: no Host header) and returns the status line. */
function rawUpgrade(port: number, host: string | null): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(
        [
          'GET /listen HTTP/1.1',
          ...(host === null ? [] : [`Host: ${host}`]),
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Protocol: listenjs.v1',
          '',
          '',
        ].join('\r\n'),
      )
    })
    let data = ''
    socket.on('data', (chunk) => (data += String(chunk)))
    socket.on('close', () => resolve(data))
    socket.on('error', reject)
  })
}
