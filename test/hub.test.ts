/**
 * The hub on a plain `http` server (no framework): options, paths, replay bounds, retries, the
 * replay queue, coalescing windows, identity groups and rechecks.
 */
import { createHub, PUBLIC, type HubOptions } from '../src'
import { checkPath, withAncestors } from '../src/core/paths'
import { closeAll, connect, json, plain, sleep, until } from './helpers/plain'

afterEach(closeAll)

describe('options', () => {
  it.each<[string, HubOptions, string]>([
    ['path', { path: 'listen' }, 'option "path"'],
    [
      'heartbeat.intervalMs',
      { heartbeat: { intervalMs: 0 } },
      'option "heartbeat.intervalMs" must be an integer ≥ 1',
    ],
    [
      'limits.subscriptionsPerSocket',
      { limits: { subscriptionsPerSocket: 1.5 } },
      'limits.subscriptionsPerSocket',
    ],
    ['replayConcurrency', { replayConcurrency: -1 }, 'option "replayConcurrency"'],
    [
      'allowedOrigins',
      { allowedOrigins: 'https://a.example' as unknown as string[] },
      'option "allowedOrigins"',
    ],
    [
      'identify',
      { identify: 'user' as unknown as HubOptions['identify'] },
      'option "identify" must be a function',
    ],
  ])('refuses a wrong %s at construction, naming it', (_name, options, message) => {
    expect(() => createHub(options)).toThrow(
      expect.objectContaining({ code: 'invalid_option', message: expect.stringContaining(message) }),
    )
  })

  it('accepts 0 where 0 means off', () => {
    const hub = createHub({ coalesceWindowMs: 0, recheckAfterMs: 0 })
    expect(hub.options.coalesceWindowMs).toBe(0)
    void hub.close()
  })
})

describe('paths', () => {
  it.each(
    [
      ['/appointments', true],
      ['/appointments/42', true],
      ['/Appointments/', true],
      ['/a?week=48&x=%20y', true],
      ['/caf%C3%A9', true],
      ['', false],
      ['appointments', false],
      ['/a/../b', false],
      ['/a/./b', false],
      ['/a/%2e%2e/b', false],
      ['/a/%2E/b', false],
      ['/a/.%2e/b', false],
      ['/a%2fb', false],
      ['/a%5Cb', false],
      ['/a\\b', false],
      ['//a', false],
      ['/a//b', false],
      ['/a\u0000', false],
      ['/a%00', false],
      ['/a%0a', false],
      ['/a%c0%ae%c0%ae/b', false],
      ['/a%', false],
      ['/a#frag', false],
      ['/café', false],
      ['/a b', false],
      ['/a?x=%00', false],
      [`/${'a'.repeat(3000)}`, false],
    ].map(([path, ok]) => {
      const shown =
        (path as string).length > 60
          ? `${(path as string).slice(0, 12)}… (${(path as string).length} chars)`
          : JSON.stringify(path)
      return [shown, ok as boolean, path as string] as const
    }),
  )('checkPath(%s) is valid: %s', (_shown, ok, path) => {
    expect(checkPath(path, 2048) === undefined).toBe(ok)
  })

  it('lists a path and its ancestors, nearest first', () => {
    expect(withAncestors('/a/b/42')).toEqual(['/a/b/42', '/a/b', '/a', '/'])
    expect(withAncestors('/a/')).toEqual(['/a/', '/a', '/'])
    expect(withAncestors('/')).toEqual(['/'])
  })
})

describe('replay bounds', () => {
  it('refuses a subscription whose snapshot replay times out, with status 504', async () => {
    const app = await plain(
      async (_req, res) => {
        await sleep(500)
        json(res, 200, {})
      },
      { replayTimeoutMs: 50 },
    )
    const client = await connect(app.wsUrl)
    client.subscribe('/slow')
    expect(await client.next()).toMatchObject({ type: 'error', code: 'failed', status: 504, path: '/slow' })
  })

  it('refuses a subscription whose replay body is over maxBodyBytes, with status 502', async () => {
    const app = await plain((_req, res) => json(res, 200, { big: 'x'.repeat(5000) }), { maxBodyBytes: 1000 })
    const client = await connect(app.wsUrl)
    client.subscribe('/big')
    expect(await client.next()).toMatchObject({ type: 'error', code: 'failed', status: 502 })
  })

  it('retries a push replay that answers 5xx, sends nothing meanwhile, and delivers once it recovers', async () => {
    let status = 200
    let value = 1
    const app = await plain((req, res) => {
      if (req.method === 'GET') json(res, status, status === 200 ? { value } : { error: 'down' })
      else json(res, 200, {})
    })
    const client = await connect(app.wsUrl)
    client.subscribe('/flaky')
    expect(await client.next()).toMatchObject({ json: { value: 1 } })
    status = 503
    value = 2
    app.hub.notify('/flaky')
    expect(await client.quiet(400)).toBe(true)
    const failedReplays = app.hub.stats().replays
    expect(failedReplays).toBeGreaterThanOrEqual(2)
    status = 200
    expect(await client.next(5000)).toMatchObject({ json: { value: 2 } })
  })
})

describe('replay queue', () => {
  it('never runs more than replayConcurrency replays at once, and serves everyone', async () => {
    let running = 0
    let most = 0
    const app = await plain(
      async (_req, res) => {
        running++
        most = Math.max(most, running)
        await sleep(20)
        running--
        json(res, 200, { ok: true })
      },
      { replayConcurrency: 2 },
    )
    const clients = await Promise.all(
      Array.from({ length: 10 }, (_, i) => connect(app.wsUrl, { cookie: `u=${i}` })),
    )
    for (const client of clients) client.subscribe('/x')
    await Promise.all(clients.map((c) => c.next()))
    expect(most).toBe(2)
  })

  it('gives a subscriber the state after a change made while its snapshot replay was running', async () => {
    let value = 1
    const app = await plain(async (req, res) => {
      if (req.method === 'GET') {
        const seen = value
        await sleep(100)
        json(res, 200, { value: seen })
      } else json(res, 200, {})
    })
    const client = await connect(app.wsUrl)
    client.subscribe('/x')
    await sleep(20)
    value = 2
    app.hub.notify('/x')
    expect(await client.next()).toMatchObject({ json: { value: 1 }, snapshot: true })
    expect(await client.next()).toMatchObject({ json: { value: 2 } })
  })

  it('coalesces changes within coalesceWindowMs into one replay', async () => {
    let value = 0
    const app = await plain((_req, res) => json(res, 200, { value }), { coalesceWindowMs: 150 })
    const client = await connect(app.wsUrl)
    client.subscribe('/x')
    await client.next()
    const before = app.hub.stats().replays
    for (let i = 0; i < 5; i++) {
      value++
      app.hub.notify('/x')
      await sleep(10)
    }
    expect(await client.next()).toMatchObject({ json: { value: 5 } })
    expect(app.hub.stats().replays - before).toBe(1)
  })
})

describe('identity groups', () => {
  it('identify(path, request) widens groups: one replay per user, not per session', async () => {
    const app = await plain((_req, res) => json(res, 200, { n: 1 }), {
      identify: (_path, req) => /user=(\w+)/.exec(req.headers.cookie ?? '')?.[1],
    })
    for (const cookie of ['user=a; s=1', 'user=a; s=2', 'user=b; s=3']) {
      const client = await connect(app.wsUrl, { cookie })
      client.subscribe('/inbox')
      await client.next()
    }
    const before = app.hub.stats().replays
    app.hub.notify('/inbox')
    await until(() => app.hub.stats().replays - before === 2)
    await sleep(100)
    expect(app.hub.stats().replays - before).toBe(2)
  })

  it('identify returning PUBLIC makes one replay serve everyone', async () => {
    const app = await plain((_req, res) => json(res, 200, { ok: true }), { identify: () => PUBLIC })
    for (const cookie of ['s=1', 's=2', 's=3']) {
      const client = await connect(app.wsUrl, { cookie })
      client.subscribe('/news')
      await client.next()
    }
    const before = app.hub.stats().replays
    app.hub.notify('/news')
    await until(() => app.hub.stats().replays - before === 1)
    await sleep(100)
    expect(app.hub.stats().replays - before).toBe(1)
  })
})

describe('recheckAfterMs', () => {
  it('replays once more after a change, for apps that read from a lagging replica', async () => {
    let primary = 1
    let replica = 1
    const app = await plain(
      (req, res) => {
        if (req.method === 'GET') json(res, 200, { value: replica })
        else {
          primary++
          json(res, 200, {})
          // The replica catches up after the first replay has read it.
          setTimeout(() => (replica = primary), 50)
        }
      },
      { recheckAfterMs: 150 },
    )
    const client = await connect(app.wsUrl)
    client.subscribe('/x')
    await client.next()
    await fetch(app.wsUrl.replace('ws://', 'http://').replace('/listen', '/x'), { method: 'POST' })
    expect(await client.next()).toMatchObject({ json: { value: 2 } })
  })
})
