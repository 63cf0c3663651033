/**
 * Secure by default: origin checks at the upgrade, authorization that is the GET route's (cookie and
 * bearer), revocation, token refresh, the `authorize` hook, `hub.disconnect`, the real remote
 * address and Host in replays, and replays that cannot be forged or multiplied.
 */
import WebSocket from 'ws'
import { createClient } from '../src/client'
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { closeAll, connect, json, plain, sleep, until } from './helpers/plain'
import { TestClient, type Frame } from './helpers/tclient'

afterEach(closeAll)

/** Every raw frame a test client receives, as text (to prove that some bytes never arrive). */
function rawFrames(client: TestClient): string[] {
  const frames: string[] = []
  client.ws.on('message', (data) => frames.push(String(data)))
  return frames
}

describe.each(FRAMEWORKS)('%s: authorization is the GET route’s', (framework) => {
  let app: Fixture
  const clients: TestClient[] = []

  beforeEach(async () => {
    app = await startFixture(framework)
  })
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await app.close()
  })

  async function as(credentials: { cookie?: string; token?: string }): Promise<TestClient> {
    const client = await TestClient.connect(app.wsUrl, {
      headers: credentials.cookie ? { cookie: credentials.cookie } : {},
    })
    if (credentials.token) client.send({ type: 'auth', token: credentials.token })
    clients.push(client)
    return client
  }

  const post = (user: string, text: string): Promise<Response> =>
    fetch(`${app.url}/users/${user}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text }),
    })

  it.each([
    ['cookie session', { cookie: 'session=alice' }, { cookie: 'session=bob' }],
    ['bearer token', { token: 'alice-token' }, { token: 'bob-token' }],
  ])(
    'with a %s, B is refused A’s inbox with 403 and never receives a byte of A’s data over 1,000 random writes',
    async (_variant, alice, bob) => {
      const a = await as(alice)
      const b = await as(bob)
      const bFrames = rawFrames(b)
      const aFrames = rawFrames(a)
      a.subscribe('/users/alice/inbox')
      expect(await a.next()).toMatchObject({ type: 'data', json: { user: 'alice', messages: [] } })
      b.subscribe('/users/alice/inbox')
      expect(await b.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
      b.subscribe('/users/bob/inbox')
      expect(await b.next()).toMatchObject({ type: 'data', json: { user: 'bob' } })
      // 1,000 random (user, path, mutation) triples, 20 at a time.
      const users = ['alice', 'bob', 'carol']
      let seed = 7
      const random = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31
        return seed % n
      }
      const counts = new Map<string, number>()
      for (let i = 0; i < 1000; i += 20) {
        await Promise.all(
          Array.from({ length: 20 }, (_, k) => {
            const user = users[random(3)] as string
            counts.set(user, (counts.get(user) ?? 0) + 1)
            return post(user, `${user}-secret-${i + k}`)
          }),
        )
      }
      const lastMessages = (frames: string[], user: string): number => {
        const states = frames
          .map((f) => JSON.parse(f) as Frame)
          .filter((f) => f.type === 'data' && f.path === `/users/${user}/inbox`)
        return ((states.at(-1)?.json as { messages: string[] } | undefined)?.messages ?? []).length
      }
      await until(() => lastMessages(aFrames, 'alice') === counts.get('alice'), 10_000)
      await until(() => lastMessages(bFrames, 'bob') === counts.get('bob'), 10_000)
      expect(bFrames.some((f) => f.includes('alice-secret') || f.includes('carol-secret'))).toBe(false)
      expect(aFrames.some((f) => f.includes('bob-secret') || f.includes('carol-secret'))).toBe(false)
    },
    30_000,
  )

  it('stops A’s pushes when A’s access is revoked mid-stream, telling A why; B is not affected', async () => {
    const a = await as({ cookie: 'session=alice' })
    const b = await as({ cookie: 'session=bob' })
    a.subscribe('/users/alice/inbox')
    b.subscribe('/users/bob/inbox')
    await a.next()
    await b.next()
    await post('alice', 'one')
    expect(await a.next()).toMatchObject({ json: { messages: ['one'] } })
    await fetch(`${app.url}/users/alice/revoke`, { method: 'POST' })
    await post('alice', 'two')
    expect(await a.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
    await post('alice', 'three')
    expect(await a.quiet()).toBe(true)
    await post('bob', 'still here')
    expect(await b.next()).toMatchObject({ json: { messages: ['still here'] } })
  })

  it('keeps subscriptions when the token is refreshed over the open socket, re-checking each path', async () => {
    const a = await as({ token: 'alice-token' })
    a.subscribe('/users/alice/inbox')
    await a.next()
    a.send({ type: 'auth', token: 'alice-token' })
    expect(await a.next()).toMatchObject({ type: 'subscribed', path: '/users/alice/inbox' })
    await post('alice', 'after refresh')
    expect(await a.next()).toMatchObject({ json: { messages: ['after refresh'] } })
    // A token for someone else: the path is checked again and refused.
    a.send({ type: 'auth', token: 'bob-token' })
    expect(await a.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
    await until(() => app.hub.stats().subscriptions === 0)
  })

  it('never lets a loopback-trusting route answer a subscriber from another address', async () => {
    const remote = await TestClient.connect(app.wsUrl, { localAddress: '127.0.0.2' })
    clients.push(remote)
    remote.subscribe('/local-only')
    expect(await remote.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
    const local = await as({})
    local.subscribe('/local-only')
    expect(await local.next()).toMatchObject({ type: 'data', json: { local: true } })
  })

  it('shows a host-based route the subscriber’s own Host', async () => {
    const tenant = await TestClient.connect(app.wsUrl, { headers: { host: 'tenant-a.example' } })
    clients.push(tenant)
    tenant.subscribe('/whoami')
    expect(await tenant.next()).toMatchObject({ json: { host: 'tenant-a.example' } })
  })

  it('refuses a foreign Origin with 403 before any connection exists; allows its own and none', async () => {
    let connects = 0
    app.hub.on('connect', () => connects++)
    for (const origin of [
      'https://evil.example',
      'null',
      `https://127.0.0.1:${app.port}`,
      `http://127.0.0.1.evil.example`,
    ]) {
      await expect(TestClient.connect(app.wsUrl, { headers: { origin } })).rejects.toThrow('403')
    }
    expect(connects).toBe(0)
    clients.push(await TestClient.connect(app.wsUrl, { headers: { origin: `http://127.0.0.1:${app.port}` } }))
    clients.push(await TestClient.connect(app.wsUrl))
    expect(connects).toBe(2)
  })
})

describe('origin options', () => {
  const tryOrigin = async (
    url: string,
    origin: string,
    headers: Record<string, string> = {},
  ): Promise<boolean> => {
    try {
      const client = await TestClient.connect(url, { headers: { origin, ...headers } })
      await client.close()
      return true
    } catch {
      return false
    }
  }

  it('allows exactly the listed origins, and null only when listed', async () => {
    const server = await plain((_req, res) => json(res, 200, {}), {
      allowedOrigins: ['https://app.example', 'null'],
    })
    expect(await tryOrigin(server.wsUrl, 'https://app.example')).toBe(true)
    expect(await tryOrigin(server.wsUrl, 'null')).toBe(true)
    expect(await tryOrigin(server.wsUrl, 'https://app.example.evil.example')).toBe(false)
    expect(await tryOrigin(server.wsUrl, 'https://evil-app.example')).toBe(false)
    expect(await tryOrigin(server.wsUrl, 'http://app.example')).toBe(false)
  })

  it('asks a function, and refuses when it throws', async () => {
    const server = await plain((_req, res) => json(res, 200, {}), {
      allowedOrigins: (origin) => {
        if (origin === 'https://boom.example') throw new Error('boom')
        return origin.endsWith('.trusted.example')
      },
    })
    expect(await tryOrigin(server.wsUrl, 'https://a.trusted.example')).toBe(true)
    expect(await tryOrigin(server.wsUrl, 'https://a.other.example')).toBe(false)
    expect(await tryOrigin(server.wsUrl, 'https://boom.example')).toBe(false)
  })

  it('takes the scheme from X-Forwarded-Proto only behind a trusted proxy', async () => {
    const direct = await plain((_req, res) => json(res, 200, {}))
    const host = new URL(direct.url).host
    // An https page served through a TLS-terminating proxy:
    expect(await tryOrigin(direct.wsUrl, `https://${host}`, { 'x-forwarded-proto': 'https' })).toBe(false)
    const proxied = await plain((_req, res) => json(res, 200, {}), { trustProxy: true })
    const proxiedHost = new URL(proxied.url).host
    expect(await tryOrigin(proxied.wsUrl, `https://${proxiedHost}`, { 'x-forwarded-proto': 'https' })).toBe(
      true,
    )
    expect(await tryOrigin(proxied.wsUrl, `http://${proxiedHost}`, { 'x-forwarded-proto': 'https' })).toBe(
      false,
    )
  })
})

describe('authorize and disconnect', () => {
  it('refuses a subscription in the authorize hook before any replay, with 403', async () => {
    let replays = 0
    const server = await plain(
      (_req, res) => {
        replays++
        json(res, 200, { ok: true })
      },
      { authorize: async (path) => !path.startsWith('/admin') },
    )
    const client = await connect(server.wsUrl)
    client.subscribe('/admin/users')
    expect(await client.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
    expect(replays).toBe(0)
    client.subscribe('/public')
    expect(await client.next()).toMatchObject({ type: 'data' })
    expect(replays).toBe(1)
  })

  it('refuses when authorize throws', async () => {
    const server = await plain((_req, res) => json(res, 200, {}), {
      authorize: () => {
        throw new Error('auth service down')
      },
    })
    const client = await connect(server.wsUrl)
    client.subscribe('/x')
    expect(await client.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
  })

  it('authorize and identify see the upgrade headers, with the token of the last auth message', async () => {
    const seen: Array<[string, string | undefined, string]> = []
    const server = await plain((_req, res) => json(res, 200, {}), {
      authorize: (path, request) => {
        seen.push([path, request.headers.authorization, request.url])
        return request.headers.authorization === 'Bearer good'
      },
      identify: (_path, request) => request.headers['x-team'] as string | undefined,
    })
    const client = await connect(server.wsUrl, { 'x-team': 'blue' })
    client.subscribe('/a')
    expect(await client.next()).toMatchObject({ type: 'error', code: 'unauthorized', status: 403 })
    client.send({ type: 'auth', token: 'good' })
    client.subscribe('/b')
    expect(await client.next()).toMatchObject({ type: 'data', path: '/b' })
    expect(seen).toEqual([
      ['/a', undefined, '/listen'],
      ['/b', 'Bearer good', '/listen'],
    ])
  })

  it('hub.disconnect closes exactly the sockets its predicate picks, with 4403', async () => {
    const server = await plain((_req, res) => json(res, 200, {}))
    const alice1 = await connect(server.wsUrl, { cookie: 'session=alice' })
    const alice2 = await connect(server.wsUrl, { cookie: 'session=alice' })
    const bob = await connect(server.wsUrl, { cookie: 'session=bob' })
    const closed = server.hub.disconnect((c) => c.request.headers.cookie === 'session=alice')
    expect(closed).toBe(2)
    expect((await alice1.closed).code).toBe(4403)
    expect((await alice2.closed).code).toBe(4403)
    bob.subscribe('/x')
    expect(await bob.next()).toMatchObject({ type: 'data' })
  })
})

describe('replays cannot be forged or multiplied', () => {
  it('no request header makes a real request look like a replay', async () => {
    const app = await startFixture('express')
    try {
      const forged = await fetch(`${app.url}/whoami`, {
        headers: {
          'x-listenjs-replay': '1',
          'x-listenjs-client': 'anything',
          'user-agent': 'lightMyRequest',
          'x-forwarded-for': '127.0.0.1',
        },
      })
      expect(((await forged.json()) as { replay: boolean }).replay).toBe(false)
    } finally {
      await app.close()
    }
  })

  it('costs one replay per (path, query, identity group) per change, never more than replayConcurrency at once', async () => {
    let running = 0
    let most = 0
    let replays = 0
    const server = await plain(
      async (req, res) => {
        if (req.method !== 'GET') return json(res, 200, {})
        replays++
        running++
        most = Math.max(most, running)
        await sleep(1)
        running--
        json(res, 200, { version: generation })
      },
      { replayConcurrency: 4 },
    )
    let generation = 0
    // 1,000 query-string variants (4 sockets × 250), one identity.
    const variants: TestClient[] = []
    for (let s = 0; s < 4; s++) {
      const client = await connect(server.wsUrl)
      for (let i = 0; i < 250; i++) client.subscribe(`/cost?v=${s * 250 + i}`)
      variants.push(client)
    }
    // 100 distinct cookie sets on the plain path.
    const cookies: TestClient[] = []
    for (let i = 0; i < 100; i++) {
      const client = await connect(server.wsUrl, { cookie: `session=u${i}` })
      client.subscribe('/cost')
      cookies.push(client)
    }
    for (const client of variants) for (let i = 0; i < 250; i++) await client.next(10_000)
    await Promise.all(cookies.map((c) => c.next(10_000)))
    for (let change = 1; change <= 2; change++) {
      replays = 0
      generation = change
      server.hub.notify('/cost')
      for (const client of variants) for (let i = 0; i < 250; i++) await client.next(10_000)
      await Promise.all(cookies.map((c) => c.next(10_000)))
      await sleep(50)
      expect(replays).toBe(1000 + 100)
    }
    expect(most).toBeLessThanOrEqual(4)
  }, 60_000)
})

describe('cookie sessions rotate', () => {
  it('a session cookie replaced by a re-login does not leave the user refused: one reconnect, then success', async () => {
    // Valid sessions; a re-login replaces the old one.
    const sessions = new Set(['s1'])
    const server = await plain((req, res) => {
      const sid = /session=(\w+)/.exec(req.headers.cookie ?? '')?.[1]
      if (req.method === 'POST') {
        json(res, 200, { ok: true })
        return
      }
      if (!sid || !sessions.has(sid)) json(res, 401, { error: 'log in again' })
      else json(res, 200, { sid, at: Date.now() })
    })
    // A browser sends its current cookies on every upgrade: the jar is read at each connection.
    const jar = { cookie: 'session=s1' }
    class BrowserLikeWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { headers: { cookie: jar.cookie } })
      }
    }
    const client = createClient({
      url: server.wsUrl,
      WebSocket: BrowserLikeWebSocket,
      reconnect: { initialDelayMs: 10, maxDelayMs: 100 },
    })
    try {
      const errors: unknown[] = []
      const seen: string[] = []
      await client.listen<{ sid: string }>('/me', (me) => seen.push(me.sid), {
        onError: (e) => errors.push(e),
      }).ready
      let connects = 0
      server.hub.on('connect', () => connects++)
      // Re-login: the old session dies, the browser holds the new cookie.
      sessions.delete('s1')
      sessions.add('s2')
      jar.cookie = 'session=s2'
      await fetch(`${server.url}/me`, { method: 'POST' })
      await until(() => seen.at(-1) === 's2', 5000)
      expect(errors).toEqual([])
      expect(connects).toBe(1)
    } finally {
      client.close()
    }
  })
})
