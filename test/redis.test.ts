/**
 * The Redis backplane with a real Redis: hubs in one process each with their own backplane (as
 * separate processes would be), every adapter, the hub-less publisher, malformed messages, and an
 * outage of a test-owned redis-server. The multi-process test is in cluster.test.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import Redis from 'ioredis'
import { createHub, type BackplaneMessage, type Hub } from '../src'
import { redisBackplane, redisPublisher, type RedisBackplane } from '../src/redis'
import { MAX_CHANGE_PATHS, MAX_DEPTH } from '../src/redis/bounds'
import { SUBPROTOCOL, SUBPROTOCOL_PATCHES } from '../src/core/protocol'
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

    it('a subscriber of B that takes patches gets one computed by B’s replay of A’s write', async () => {
      const prefix = uniquePrefix()
      a = await startFixture(framework, { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
      b = await startFixture(framework, { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
      await until(() => a.hub.stats().backplane === 'connected' && b.hub.stats().backplane === 'connected')
      for (let i = 1; i <= 40; i++) b.state.create(`item ${i}`)
      const client = await connect(b.wsUrl, undefined, [SUBPROTOCOL_PATCHES, SUBPROTOCOL])
      client.subscribe('/items')
      const snapshot = await client.next()
      // B's store changes; A's write announces it on the channel.
      b.state.items.set('9', { id: '9', title: 'edited on a' })
      const response = await fetch(`${a.url}/items/9`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'edited on a' }),
      })
      expect(response.ok).toBe(true)
      expect(await client.next()).toMatchObject({
        type: 'patch',
        from: snapshot.version,
        ops: [{ op: 'replace', path: '/8/title', value: 'edited on a' }],
      })
      expect(b.hub.stats().patches.computed).toBe(1)
      expect(a.hub.stats().patches.computed).toBe(0)
    })

    it("a subscriber of B waiting for a missing resource (missing: 'wait') gets it when A's write creates it", async () => {
      const prefix = uniquePrefix()
      a = await startFixture(framework, { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
      b = await startFixture(framework, { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
      await until(() => a.hub.stats().backplane === 'connected' && b.hub.stats().backplane === 'connected')
      const client = await connect(b.wsUrl)
      client.send({ type: 'subscribe', path: '/things/77', missing: 'wait' })
      expect(await client.next()).toEqual({ type: 'gone', path: '/things/77', status: 404 })
      // The fixtures keep their data apart: B's store gets the thing, A's write announces it.
      b.state.putThing('77', { title: 'made on a' })
      const response = await fetch(`${a.url}/things/77`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'made on a' }),
      })
      expect(response.ok).toBe(true)
      expect(await client.next()).toMatchObject({
        type: 'data',
        path: '/things/77',
        json: { id: '77', title: 'made on a' },
      })
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

  describe('bounded input: whatever is on the channel, a message costs bounded work', () => {
    // Publishes raw texts straight onto the channel, as anyone with access to Redis could.
    let raw: Redis
    beforeEach(() => {
      raw = new Redis(REDIS_URL)
    })
    afterEach(() => raw.disconnect())

    /** `[[[…]]]`, `depth` levels deep, as text and as a value (built without recursion). */
    const nestedText = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
    const nestedValue = (depth: number): unknown => {
      let value: unknown = []
      for (let i = 1; i < depth; i++) value = [value]
      return value
    }
    const counter = (): { value: number; app: (req: IncomingMessage, res: ServerResponse) => void } => {
      const state = {
        value: 1,
        app: (_req: IncomingMessage, res: ServerResponse) => json(res, 200, { value: state.value }),
      }
      return state
    }

    it('survives a payload nested 20,000 deep: every hub drops it as malformed and keeps working', async () => {
      const prefix = uniquePrefix()
      const channel = `${prefix}:changes`
      const state = counter()
      const backplanes = [
        redisBackplane({ url: REDIS_URL, prefix }),
        redisBackplane({ url: REDIS_URL, prefix }),
      ]
      const servers = await Promise.all(backplanes.map((backplane) => plain(state.app, { backplane })))
      await until(() => servers.every((s) => s.hub.stats().backplane === 'connected'))
      const clients = await Promise.all(servers.map((s) => connect(s.wsUrl)))
      // Subscribed to the payload's path: an accepted payload reaches the hub's serializer.
      for (const client of clients) {
        client.subscribe('/deep')
        expect(await client.next()).toMatchObject({ json: { value: 1 } })
      }
      const payload = (text: string): string =>
        `{"v":1,"from":"attacker","kind":"payload","path":"/deep","payload":${text}}`
      await raw.publish(channel, payload(nestedText(20_000)))
      // One level less than the bound (the envelope is the first level) still goes through.
      await raw.publish(channel, payload(nestedText(MAX_DEPTH - 1)))
      for (const client of clients) {
        const frame = await client.next()
        expect(JSON.stringify(frame.json)).toBe(nestedText(MAX_DEPTH - 1))
      }
      expect(backplanes.map((b) => b.stats().malformed)).toEqual([1, 1])
      // A normal change afterwards reaches every subscriber.
      state.value = 2
      await raw.publish(channel, JSON.stringify({ v: 1, from: 'other', kind: 'change', paths: ['/deep'] }))
      for (const client of clients) expect(await client.next()).toMatchObject({ json: { value: 2 } })
      for (const server of servers) expect(server.hub.stats().backplane).toBe('connected')
    })

    it(`drops a change of ${MAX_CHANGE_PATHS + 1} paths as malformed, and accepts one of ${MAX_CHANGE_PATHS}`, async () => {
      const prefix = uniquePrefix()
      const channel = `${prefix}:changes`
      const state = counter()
      const backplane = redisBackplane({ url: REDIS_URL, prefix })
      const server = await plain(state.app, { backplane })
      await until(() => server.hub.stats().backplane === 'connected')
      const client = await connect(server.wsUrl)
      client.subscribe('/p/7')
      await client.next()
      const change = (n: number): string =>
        JSON.stringify({
          v: 1,
          from: 'other',
          kind: 'change',
          paths: Array.from({ length: n }, (_, i) => `/p/${i}`),
        })
      state.value = 2
      await raw.publish(channel, change(MAX_CHANGE_PATHS + 1))
      await until(() => backplane.stats().malformed === 1)
      expect(backplane.stats().received).toBe(0)
      await raw.publish(channel, change(MAX_CHANGE_PATHS))
      expect(await client.next()).toMatchObject({ json: { value: 2 } })
      expect(backplane.stats()).toMatchObject({ received: 1, malformed: 1 })
    })

    // A small bound keeps these messages small: multi-chunk replies make ioredis's parser keep a
    // timer for a few seconds, which jest reports as an open handle.
    const SMALL = 16_384

    it('splits a change too large for one message into messages hubs accept', async () => {
      const prefix = uniquePrefix()
      const sender = redisBackplane({ url: REDIS_URL, prefix, maxMessageBytes: SMALL })
      const receiver = redisBackplane({ url: REDIS_URL, prefix, maxMessageBytes: SMALL })
      const got: string[][] = []
      receiver.subscribe((message: BackplaneMessage) => {
        if (message.kind === 'change') got.push([...message.paths])
      })
      const received = (): string[] => got.flat()
      const size = (paths: string[]): number =>
        Buffer.byteLength(JSON.stringify({ v: 1, from: sender.id, kind: 'change', paths }))
      try {
        await until(() => sender.status?.() === 'connected' && receiver.status?.() === 'connected')
        // Too many paths.
        const many = Array.from({ length: 2500 }, (_, i) => `/many/${i}`)
        sender.publish({ kind: 'change', paths: many })
        await until(() => received().length === many.length)
        expect(received()).toEqual(many)
        expect(got.map((paths) => paths.length)).toEqual([MAX_CHANGE_PATHS, MAX_CHANGE_PATHS, 452])
        // Too many bytes: 100 paths of 1,000 characters.
        got.length = 0
        const long = Array.from({ length: 100 }, (_, i) => `/${'l'.repeat(1000)}/${i}`)
        sender.publish({ kind: 'change', paths: long })
        await until(() => received().length === long.length)
        expect(received()).toEqual(long)
        expect(got.length).toBeGreaterThan(1)
        for (const paths of got) expect(size(paths)).toBeLessThanOrEqual(SMALL)
        // Full messages: none could have taken the next one's first path.
        for (let i = 0; i + 1 < got.length; i++) {
          expect(size([...(got[i] as string[]), (got[i + 1] as string[])[0] as string])).toBeGreaterThan(
            SMALL,
          )
        }
        expect(receiver.stats().malformed).toBe(0)
        expect(sender.stats().dropped).toBe(0)
      } finally {
        await sender.close?.()
        await receiver.close?.()
      }
    })

    it('drops an oversize message on arrival, and never sends one', async () => {
      const prefix = uniquePrefix()
      const channel = `${prefix}:changes`
      const warnings: string[] = []
      const logger = {
        debug: () => {},
        info: () => {},
        warn: (_o: object | string, m?: string) => warnings.push(m ?? ''),
        error: () => {},
      }
      const backplane = redisBackplane({ url: REDIS_URL, prefix, logger, maxMessageBytes: SMALL })
      const other = redisBackplane({ url: REDIS_URL, prefix, maxMessageBytes: SMALL })
      const server = await plain((_req, res) => json(res, 200, { value: 1 }), { backplane })
      const publisher = redisPublisher({ url: REDIS_URL, prefix, maxMessageBytes: SMALL })
      // What the other process received, in short.
      const seenByOther: string[] = []
      other.subscribe((message) => {
        if (message.kind !== 'payload') return
        const { payload } = message
        seenByOther.push(
          typeof payload === 'string' ? `${payload.length} characters` : JSON.stringify(payload),
        )
      })
      try {
        await until(() => server.hub.stats().backplane === 'connected' && other.status?.() === 'connected')
        const client = await connect(server.wsUrl)
        client.subscribe('/big')
        await client.next()
        // Arriving: one byte over the bound is dropped before parsing; a message of exactly the
        // bound is accepted.
        const message = (payload: string): string =>
          JSON.stringify({ v: 1, from: 'attacker', kind: 'payload', path: '/big', payload })
        const fits = SMALL - message('').length
        await raw.publish(channel, message('x'.repeat(fits + 1)))
        await raw.publish(channel, message('é'.repeat(Math.floor(fits / 2) + 1)))
        await raw.publish(channel, message('x'.repeat(fits)))
        expect(((await client.next()).json as string).length).toBe(fits)
        expect(backplane.stats()).toMatchObject({ malformed: 2, received: 1 })
        await until(() => seenByOther.length === 1)
        expect(other.stats().malformed).toBe(2)
        seenByOther.length = 0

        // Sending from a hub: local subscribers get it, other processes do not, nothing throws.
        const before = backplane.stats()
        expect(() => server.hub.notify('/big', 'y'.repeat(SMALL))).not.toThrow()
        expect(((await client.next()).json as string).length).toBe(SMALL)
        expect(() => server.hub.notify('/big', nestedValue(MAX_DEPTH))).not.toThrow()
        expect(JSON.stringify((await client.next()).json)).toBe(nestedText(MAX_DEPTH))
        expect(backplane.stats().dropped).toBe(before.dropped + 2)
        expect(backplane.stats().published).toBe(before.published)
        expect(warnings.filter((w) => w.includes('not published'))).toHaveLength(1)
        // The next message that fits goes through, and is the first the other process sees.
        server.hub.notify('/big', 'small')
        await until(() => seenByOther.length > 0)
        expect(seenByOther).toEqual(['5 characters'])
        // A payload the serializer cannot even handle does not throw out of publish.
        const lone = redisBackplane({ url: REDIS_URL, prefix: uniquePrefix() })
        try {
          await until(() => lone.status?.() === 'connected')
          expect(() =>
            lone.publish({ kind: 'payload', path: '/x', payload: nestedValue(20_000) }),
          ).not.toThrow()
          expect(lone.stats()).toMatchObject({ dropped: 1, published: 0 })
        } finally {
          await lone.close?.()
        }

        // Sending from the publisher: it rejects with `limit`.
        await expect(publisher.notify('/big', 'z'.repeat(SMALL))).rejects.toMatchObject({ code: 'limit' })
        await expect(publisher.notify('/big', nestedValue(MAX_DEPTH))).rejects.toMatchObject({
          code: 'limit',
        })
        await publisher.notify('/big', 'fits')
        await until(() => seenByOther.length === 2)
        expect(seenByOther).toEqual(['5 characters', '4 characters'])
        // Nothing a sender sent was refused by the other process: only the attacker's two.
        expect(other.stats().malformed).toBe(2)
      } finally {
        await publisher.close()
        await other.close?.()
      }
    })

    it('100 resync messages back to back cost at most one replay per subscribed path', async () => {
      // Depends on the hub coalescing resyncs (src/core/hub.ts).
      const prefix = uniquePrefix()
      const channel = `${prefix}:changes`
      const spreadMs = 50
      const backplane = redisBackplane({ url: REDIS_URL, prefix, resyncSpreadMs: spreadMs })
      const server = await plain((req, res) => json(res, 200, { path: req.url }), { backplane })
      await until(() => server.hub.stats().backplane === 'connected')
      const client = await connect(server.wsUrl)
      const PATHS = 200
      for (let i = 0; i < PATHS; i++) client.subscribe(`/r/${i}`)
      for (let i = 0; i < PATHS; i++) await client.next()
      const before = server.hub.stats().replays
      expect(before).toBe(PATHS)
      const pipeline = raw.pipeline()
      for (let i = 0; i < 100; i++) pipeline.publish(channel, '{"v":1,"from":"someone-else","kind":"resync"}')
      await pipeline.exec()
      await until(() => backplane.stats().received === 100)
      const received = Date.now()
      // Every resync timer was set by now: wait for the spread to pass and the replays to finish.
      await until(() => {
        const stats = server.hub.stats()
        return (
          Date.now() - received > spreadMs * 2 &&
          stats.replays - before >= PATHS &&
          stats.replaysInFlight === 0 &&
          stats.replaysQueued === 0
        )
      }, 10_000)
      expect(server.hub.stats().replays - before).toBeLessThanOrEqual(PATHS)
    })
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
