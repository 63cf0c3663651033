/**
 * The Redis backplane with a real Redis: hubs in one process each with their own backplane (as
 * separate processes would be), every adapter, the hub-less publisher, malformed messages, and an
 * outage of a test-owned redis-server. The multi-process test is in cluster.test.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import Redis from 'ioredis'
import { createHub, type Hub } from '../src'
import { redisBackplane, redisPublisher, type RedisBackplane } from '../src/redis'
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { closeAll, connect, json, plain, sleep, until } from './helpers/plain'
import { describeWithRedis, freePort, OwnedRedis, REDIS_URL, uniquePrefix } from './helpers/redis'

afterEach(closeAll)

describeWithRedis('redis backplane', () => {
  describe.each(FRAMEWORKS)('%s adapter', (framework) => {
    let a: Fixture
    let b: Fixture
    afterEach(async () => {
      await a?.close()
      await b?.close()
    })

    it('a change made through process A reaches a subscriber of process B, with B’s own replay', async () => {
      const prefix = uniquePrefix()
      a = await startFixture(framework, { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
      b = await startFixture(framework, { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
      await until(() => a.hub.stats().backplane === 'connected' && b.hub.stats().backplane === 'connected')
      // The two fixtures keep their data apart; B's replay shows B's data, caused by A's change.
      b.state.create('on b')
      const client = await connect(b.wsUrl)
      client.subscribe('/items')
      expect(await client.next()).toMatchObject({ json: [{ title: 'on b' }] })
      b.state.create('also on b')
      const response = await fetch(`${a.url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'on a' }),
      })
      expect(response.status).toBe(201)
      expect(await client.next()).toMatchObject({ json: [{ title: 'on b' }, { title: 'also on b' }] })
    })
  })

  it('ignores its own echo: a local change costs one replay, not two', async () => {
    const prefix = uniquePrefix()
    let replays = 0
    const server = await plain(
      (req, res) => {
        if (req.method === 'GET') replays++
        json(res, 200, { replays })
      },
      { backplane: redisBackplane({ url: REDIS_URL, prefix }) },
    )
    await until(() => server.hub.stats().backplane === 'connected')
    const client = await connect(server.wsUrl)
    client.subscribe('/x')
    await client.next()
    await fetch(`${server.url}/x`, { method: 'POST' })
    await client.next()
    await sleep(200)
    expect(replays).toBe(2)
  })

  it('lets a process without a hub announce a change in one call', async () => {
    const prefix = uniquePrefix()
    let value = 1
    const server = await plain((_req, res) => json(res, 200, { value }), {
      backplane: redisBackplane({ url: REDIS_URL, prefix }),
    })
    await until(() => server.hub.stats().backplane === 'connected')
    const client = await connect(server.wsUrl)
    client.subscribe('/jobs/7')
    await client.next()
    // A worker process: no hub, no HTTP server.
    const publisher = redisPublisher({ url: REDIS_URL, prefix })
    try {
      value = 2
      await publisher.notify('/jobs/7')
      expect(await client.next()).toMatchObject({ json: { value: 2 } })
      await publisher.notify('/jobs/7', { explicit: true })
      expect(await client.next()).toMatchObject({ json: { explicit: true } })
      await expect(publisher.notify('/a/../b')).rejects.toMatchObject({ code: 'bad_path' })
    } finally {
      await publisher.close()
    }
  })

  it('drops and counts malformed messages on the channel, and keeps working', async () => {
    const prefix = uniquePrefix()
    let value = 1
    const backplane = redisBackplane({ url: REDIS_URL, prefix })
    const server = await plain((_req, res) => json(res, 200, { value }), { backplane })
    await until(() => server.hub.stats().backplane === 'connected')
    const client = await connect(server.wsUrl)
    client.subscribe('/m')
    await client.next()
    const raw = new Redis(REDIS_URL)
    try {
      const garbage = [
        'not json',
        '[]',
        '{"v":2,"from":"x","kind":"change","paths":["/m"]}',
        '{"v":1,"kind":"change","paths":["/m"]}',
        '{"v":1,"from":"x","kind":"change","paths":[]}',
        '{"v":1,"from":"x","kind":"change","paths":["/a/../m"]}',
        '{"v":1,"from":"x","kind":"change","paths":[42]}',
        '{"v":1,"from":"x","kind":"payload","path":"/m"}',
        '{"v":1,"from":"x","kind":"launch"}',
        '{"v":1,"from":"x","kind":"change","paths":["/m"],"origin":"me"}',
        '{"__proto__":{"polluted":true},"v":1,"from":"x","kind":"change","paths":["/nobody"]}',
      ]
      for (const text of garbage) await raw.publish(`${prefix}:changes`, text)
      await until(() => backplane.stats().malformed === garbage.length - 1)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      // Still working: a valid message from elsewhere is applied.
      value = 2
      await raw.publish(
        `${prefix}:changes`,
        JSON.stringify({ v: 1, from: 'other', kind: 'change', paths: ['/m'] }),
      )
      expect(await client.next()).toMatchObject({ json: { value: 2 } })
    } finally {
      raw.disconnect()
    }
  })

  it('says connected only once it can both publish and receive: a change right after is never dropped', async () => {
    for (let i = 0; i < 30; i++) {
      const backplane = redisBackplane({ url: REDIS_URL, prefix: uniquePrefix() })
      try {
        await until(() => backplane.status?.() === 'connected')
        backplane.publish({ kind: 'change', paths: ['/x'] })
        expect(backplane.stats().dropped).toBe(0)
      } finally {
        await backplane.close?.()
      }
    }
  })

  it('re-checks every subscribed path when another process says it could not publish', async () => {
    const prefix = uniquePrefix()
    let value = 1
    const server = await plain((_req, res) => json(res, 200, { value }), {
      backplane: redisBackplane({ url: REDIS_URL, prefix, resyncSpreadMs: 50 }),
    })
    await until(() => server.hub.stats().backplane === 'connected')
    const client = await connect(server.wsUrl)
    client.subscribe('/missed')
    await client.next()
    value = 2
    const raw = new Redis(REDIS_URL)
    try {
      await raw.publish(`${prefix}:changes`, JSON.stringify({ v: 1, from: 'other', kind: 'resync' }))
      expect(await client.next()).toMatchObject({ json: { value: 2 } })
    } finally {
      raw.disconnect()
    }
  })

  it('leaves no Redis connection open after hub.close()', async () => {
    const admin = new Redis(REDIS_URL)
    const prefix = uniquePrefix()
    try {
      // Only this hub's connections: other suites use Redis at the same time.
      const count = async (): Promise<number> =>
        ((await admin.client('LIST')) as string)
          .split('\n')
          .filter((line) => line.includes(`name=listenjs-`) && line.includes(`-${prefix}:changes `)).length
      const before = await count()
      const hub = createHub({ backplane: redisBackplane({ url: REDIS_URL, prefix }) })
      await until(() => hub.stats().backplane === 'connected')
      expect(await count()).toBe(before + 2)
      await hub.close()
      let after = await count()
      for (let i = 0; i < 50 && after !== before; i++) {
        await sleep(20)
        after = await count()
      }
      expect(after).toBe(before)
    } finally {
      admin.disconnect()
    }
  })

  describe('outage', () => {
    it('keeps local delivery and HTTP going while Redis is down, logs once, and converges when it is back', async () => {
      const redis = new OwnedRedis(await freePort())
      await redis.start()
      const rejections: unknown[] = []
      const onRejection = (reason: unknown): void => {
        rejections.push(reason)
      }
      process.on('unhandledRejection', onRejection)
      const errors: string[] = []
      const logger = {
        debug: () => {},
        info: () => {},
        warn: () => {},
        error: (_o: object | string, m?: string) => errors.push(m ?? ''),
      }
      // One shared store, two processes-worth of hubs.
      const store = new Map<string, number>()
      const app = (req: IncomingMessage, res: ServerResponse): void => {
        const path = (req.url ?? '/').split('?')[0] as string
        if (req.method === 'POST') store.set(path, (store.get(path) ?? 0) + 1)
        json(res, 200, { n: store.get(path) ?? 0 })
      }
      const backplaneA = redisBackplane({ url: redis.url, prefix: 'outage', resyncSpreadMs: 200, logger })
      const backplaneB: RedisBackplane = redisBackplane({
        url: redis.url,
        prefix: 'outage',
        resyncSpreadMs: 200,
      })
      const a = await plain(app, { backplane: backplaneA })
      const b = await plain(app, { backplane: backplaneB })
      try {
        const hubs: Hub[] = [a.hub, b.hub]
        await until(() => hubs.every((h) => h.stats().backplane === 'connected'))
        const onA = await connect(a.wsUrl)
        const onB = await connect(b.wsUrl)
        onA.subscribe('/p')
        onB.subscribe('/p')
        await onA.next()
        await onB.next()

        await redis.kill()
        await until(() => hubs.every((h) => h.stats().backplane === 'disconnected'), 5000)
        // During the outage: every HTTP request completes, and A's local subscriber sees A's changes.
        const statuses: number[] = []
        for (let i = 0; i < 20; i++) statuses.push((await fetch(`${a.url}/p`, { method: 'POST' })).status)
        expect(statuses.every((s) => s === 200)).toBe(true)
        await until(() => onA.messages.some((f) => (f.json as { n: number }).n === 20), 5000)
        expect(backplaneA.stats().dropped).toBeGreaterThan(0)

        // Redis comes back: B re-checks what its subscribers hold and catches up.
        await redis.start()
        await until(() => hubs.every((h) => h.stats().backplane === 'connected'), 10_000)
        const lastOnB = async (): Promise<number> => {
          for (;;) {
            const frame = await onB.next(5000)
            if ((frame.json as { n: number }).n === 20) return 20
          }
        }
        expect(await lastOnB()).toBe(20)
        // Logged once for the outage, not per message or per reconnect attempt.
        expect(errors.filter((m) => m.includes('backplane disconnected'))).toHaveLength(1)
        expect(rejections).toEqual([])
      } finally {
        process.off('unhandledRejection', onRejection)
        await a.close()
        await b.close()
        await redis.kill()
      }
    }, 30_000)
  })
})
