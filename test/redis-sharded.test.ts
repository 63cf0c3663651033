/**
 * The Redis backplane's experimental `sharded` option on a real Redis Cluster: three masters on
 * loopback ports, started and torn down by this file (`redis-server --cluster-enabled yes` and
 * `redis-cli --cluster create`). Skipped loudly without redis-server ≥ 7 (a failure with CI=true).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Redis } from 'ioredis'
import { redisBackplane, type RedisBackplane } from '../src/redis'
import { bucketOf, bucketOfMessage, shardChannels } from '../src/redis/sharding'
import { closeAll, connect, json, plain, until } from './helpers/plain'

afterEach(closeAll)

function clusterTools(): boolean {
  const server = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 3000 })
  const cli = spawnSync('redis-cli', ['--version'], { encoding: 'utf8', timeout: 3000 })
  const major = Number(/v=(\d+)/.exec(server.stdout ?? '')?.[1] ?? 0)
  const ok = server.status === 0 && cli.status === 0 && major >= 7
  if (!ok) {
    const message = 'redis-server ≥ 7 and redis-cli are needed for the Redis Cluster tests'
    if (process.env.CI === 'true') throw new Error(`${message}; with CI=true they must run, not skip`)
    process.stderr.write(`\n!!! SKIPPING REDIS CLUSTER TESTS: ${message}. !!!\n\n`)
  }
  return ok
}

const describeWithCluster: jest.Describe = (clusterTools() ? describe : describe.skip) as jest.Describe

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Three ports p with p and p + 10000 (its cluster bus) free. */
async function clusterPorts(count: number): Promise<number[]> {
  const ports: number[] = []
  for (let attempt = 0; attempt < 200 && ports.length < count; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000)
    if (ports.includes(port)) continue
    if ((await portFree(port)) && (await portFree(port + 10000))) ports.push(port)
  }
  if (ports.length < count) throw new Error('no free ports for the cluster')
  return ports
}

async function untilTrue(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describeWithCluster('redis backplane, sharded channels on a Redis Cluster', () => {
  let dir: string
  let ports: number[] = []
  const children: ChildProcess[] = []
  let nodes: Array<{ host: string; port: number }>

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'listenjs-cluster-'))
    ports = await clusterPorts(3)
    for (const port of ports) {
      children.push(
        spawn(
          'redis-server',
          [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            path.join(dir, `nodes-${port}.conf`),
            '--dir',
            dir,
            '--save',
            '',
            '--appendonly',
            'no',
          ],
          { stdio: 'ignore' },
        ),
      )
    }
    for (const port of ports) {
      await untilTrue(
        async () => {
          const r = new Redis(port, '127.0.0.1', {
            lazyConnect: true,
            maxRetriesPerRequest: 0,
            retryStrategy: () => null,
          })
          try {
            await r.connect()
            return (await r.ping()) === 'PONG'
          } finally {
            r.disconnect()
          }
        },
        10_000,
        `redis-server on ${port}`,
      )
    }
    const create = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    )
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    for (const port of ports) {
      await untilTrue(
        async () => {
          const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 })
          try {
            return /cluster_state:ok/.test(String(await r.cluster('INFO')))
          } finally {
            r.disconnect()
          }
        },
        20_000,
        `cluster_state:ok on ${port}`,
      )
    }
    nodes = ports.map((port) => ({ host: '127.0.0.1', port }))
  }, 60_000)

  afterAll(async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve()
            child.once('exit', () => resolve())
            child.kill('SIGKILL')
          }),
      ),
    )
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  /** How many subscribers each channel has, summed over every node (only its owner counts any). */
  async function shardSubscribers(channels: string[]): Promise<number[]> {
    const totals = channels.map(() => 0)
    for (const port of ports) {
      const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 })
      try {
        const reply = (await r.call('PUBSUB', 'SHARDNUMSUB', ...channels)) as Array<string | number>
        for (let i = 0; i < channels.length; i++) totals[i] = (totals[i] as number) + Number(reply[2 * i + 1])
      } finally {
        r.disconnect()
      }
    }
    return totals
  }

  /** The port of the master that owns each channel's slot. */
  async function owners(channels: string[]): Promise<number[]> {
    const r = new Redis(ports[0] as number, '127.0.0.1', { maxRetriesPerRequest: 0 })
    try {
      const slots = (await r.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>
      const result: number[] = []
      for (const channel of channels) {
        const slot = Number(await r.cluster('KEYSLOT', channel))
        const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi)
        result.push(range ? range[2][1] : -1)
      }
      return result
    } finally {
      r.disconnect()
    }
  }

  let prefixCount = 0
  const nextPrefix = (): string => `sharded-${process.pid}-${++prefixCount}`

  it('spreads its channels over the shards, and every process subscribes to each of them', async () => {
    const prefix = nextPrefix()
    const channels = shardChannels(`${prefix}:changes`, 16)
    expect(new Set(await owners(channels)).size).toBe(3)
    const a = redisBackplane({ prefix, sharded: { nodes } })
    const b = redisBackplane({ prefix, sharded: { nodes } })
    try {
      await until(() => a.status?.() === 'connected' && b.status?.() === 'connected', 15_000)
      expect(await shardSubscribers(channels)).toEqual(channels.map(() => 2))
    } finally {
      await a.close?.()
      await b.close?.()
    }
    expect(await shardSubscribers(channels)).toEqual(channels.map(() => 0))
  })

  it('a change or a payload made through process A reaches a subscriber of process B, on every shard', async () => {
    const prefix = nextPrefix()
    const channelCount = 8
    const channels = shardChannels(`${prefix}:changes`, channelCount)
    const owner = await owners(channels)
    // One path per shard: the first /s/<n> whose bucket lands on each master.
    const paths: string[] = []
    for (const port of ports) {
      for (let n = 0; n < 1000; n++) {
        const candidate = `/s/${n}`
        if (owner[bucketOf(candidate, channelCount)] === port) {
          paths.push(candidate)
          break
        }
      }
    }
    expect(paths).toHaveLength(3)
    const values = new Map(paths.map((p) => [p, 1]))
    const backplaneA = redisBackplane({ prefix, sharded: { nodes, channels: channelCount } })
    const backplaneB: RedisBackplane = redisBackplane({ prefix, sharded: { nodes, channels: channelCount } })
    const a = await plain((_req, res) => json(res, 200, {}), { backplane: backplaneA })
    const b = await plain((req, res) => json(res, 200, { value: values.get(req.url ?? '') }), {
      backplane: backplaneB,
    })
    await until(
      () => a.hub.stats().backplane === 'connected' && b.hub.stats().backplane === 'connected',
      15_000,
    )
    const client = await connect(b.wsUrl)
    for (const p of paths) {
      client.subscribe(p)
      expect(await client.next()).toMatchObject({ path: p, json: { value: 1 } })
    }
    for (const p of paths) {
      values.set(p, 2)
      a.hub.notify(p)
      expect(await client.next()).toMatchObject({ path: p, json: { value: 2 } })
    }
    a.hub.notify(paths[1] as string, { explicit: true })
    expect(await client.next()).toMatchObject({ path: paths[1], json: { explicit: true } })
    await until(() => backplaneB.stats().received >= 4)
    expect(backplaneB.stats()).toMatchObject({ malformed: 0, dropped: 0 })
    expect(backplaneA.stats()).toMatchObject({ published: 4, dropped: 0 })
  })

  it('refuses sharded with a URL or clients, and a bad channel count', () => {
    expect(() => redisBackplane({ url: 'redis://127.0.0.1:1', sharded: { nodes } })).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
    expect(() => redisBackplane({ sharded: { nodes, channels: 0 } })).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
    expect(() => redisBackplane({ sharded: { nodes: [] } })).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
  })
})

describe('sharded channel buckets', () => {
  it('puts a path always in the same bucket, and a change in the bucket of its changed path', () => {
    for (const p of ['/', '/a', '/appointments/42', '/users/7/items?x=1']) {
      const k = bucketOf(p, 16)
      expect(k).toBeGreaterThanOrEqual(0)
      expect(k).toBeLessThan(16)
      expect(bucketOf(p, 16)).toBe(k)
    }
    expect(bucketOfMessage({ kind: 'change', paths: ['/appointments/42', '/appointments', '/'] }, 16)).toBe(
      bucketOf('/appointments/42', 16),
    )
    expect(bucketOfMessage({ kind: 'payload', path: '/ticker', payload: 1 }, 16)).toBe(
      bucketOf('/ticker', 16),
    )
    // Spread: 1,000 paths over 16 buckets, none empty.
    const counts = new Array<number>(16).fill(0)
    for (let i = 0; i < 1000; i++) {
      const k = bucketOf(`/items/${i}`, 16)
      counts[k] = (counts[k] ?? 0) + 1
    }
    expect(Math.min(...counts)).toBeGreaterThan(20)
  })
})
