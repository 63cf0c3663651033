/**
 * Many processes, one truth: three server processes (Fastify + listenjs + the Redis backplane, each a
 * child process of its own, with their state in Redis), real clients spread across them, and mutations
 * sent to random processes. Every client ends at the final state of every path and never sees a state
 * older than (or equal to) one it had, whichever process made the change. Also measures the
 * cross-process delivery latency: from the response of a POST to process A to the new state reaching a
 * client of process B. The choice of processes and paths is seeded (set CLUSTER_SEED to replay a printed
 * seed); the timing of concurrent requests and of the servers' GET jitter is not.
 */
import { fork, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import Redis from 'ioredis'
import WebSocket from 'ws'
import { createClient, type Client } from '../src/client'
import { mulberry32 } from './helpers/proxy'
import { describeWithRedis, REDIS_URL, uniquePrefix } from './helpers/redis'

const PROCESSES = 3
const CLIENTS = 30
const PATHS = Array.from({ length: 5 }, (_, i) => `/c/${i}`)
const MUTATIONS = 1000
const CONCURRENCY = 16
const LATENCY_SAMPLES = 200
const LATENCY_WARMUP = 20

const SCRIPT = path.join(__dirname, 'fixtures', 'cluster-server.mjs')

interface ServerProcess {
  child: ChildProcess
  url: string
  wsUrl: string
  output: string
}

/** Everything started by a test, stopped by {@link stopAll} even when the test failed or timed out. */
const started = { processes: [] as ServerProcess[], clients: [] as Client[], prefixes: [] as string[] }
const results: { convergedMs?: number; p50?: number; p99?: number } = {}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until(predicate: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`not met in ${timeoutMs} ms: ${what()}`)
    await sleep(10)
  }
}

/** Forks one server process; resolves once it listens and its backplane is connected to Redis. */
async function startServer(prefix: string, jitterMs: number): Promise<ServerProcess> {
  const child = fork(SCRIPT, [], {
    env: { ...process.env, REDIS_URL, PREFIX: prefix, PORT: '0', GET_JITTER_MS: String(jitterMs) },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  const server: ServerProcess = { child, url: '', wsUrl: '', output: '' }
  started.processes.push(server)
  child.stdout?.on('data', (chunk: Buffer) => (server.output += String(chunk)))
  child.stderr?.on('data', (chunk: Buffer) => (server.output += String(chunk)))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${server.output}`)), 10_000)
    child.once('message', (message: { port: number }) => {
      clearTimeout(timer)
      resolve(message.port)
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${code}: ${server.output}`))
    })
  })
  server.url = `http://127.0.0.1:${port}`
  server.wsUrl = `ws://127.0.0.1:${port}/listen`
  const deadline = Date.now() + 5000
  for (;;) {
    const { backplane } = (await (await fetch(`${server.url}/ready`)).json()) as { backplane: string }
    if (backplane === 'connected') return server
    if (Date.now() > deadline) throw new Error(`backplane still ${backplane}: ${server.output}`)
    await sleep(20)
  }
}

/** SIGTERM (a graceful close), then SIGKILL if the process is still there after 3 s. */
async function stopServer({ child }: ServerProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}

async function stopAll(): Promise<void> {
  for (const client of started.clients.splice(0)) client.close()
  const processes = started.processes.splice(0)
  await Promise.all(processes.map(stopServer))
  // No orphans: every child has exited.
  for (const { child } of processes) expect(child.exitCode !== null || child.signalCode !== null).toBe(true)
  const prefixes = started.prefixes.splice(0)
  if (prefixes.length === 0) return
  const redis = new Redis(REDIS_URL)
  try {
    for (const prefix of prefixes) {
      const keys = await redis.keys(`${prefix}:*`)
      if (keys.length > 0) await redis.del(...keys)
    }
  } finally {
    redis.disconnect()
  }
}

/**
 * Three processes sharing a fresh prefix (keys and channel). With `jitterMs`, each GET answers a random
 * 0..jitterMs ms after reading Redis, so that replays of one path overlap and may answer out of order.
 */
async function startCluster(jitterMs = 0): Promise<{ prefix: string; servers: ServerProcess[] }> {
  const prefix = uniquePrefix()
  started.prefixes.push(prefix)
  const servers = await Promise.all(Array.from({ length: PROCESSES }, () => startServer(prefix, jitterMs)))
  return { prefix, servers }
}

function newClient(server: ServerProcess): Client {
  const client = createClient({
    url: server.wsUrl,
    WebSocket,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
  })
  started.clients.push(client)
  return client
}

async function post(server: ServerProcess, path: string): Promise<number> {
  const response = await fetch(`${server.url}${path}`, { method: 'POST' })
  if (response.status !== 200) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { n: number }).n
}

/** Nearest-rank percentile of sorted values. */
const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number

afterEach(stopAll)

afterAll(() => {
  if (results.convergedMs === undefined || results.p50 === undefined || results.p99 === undefined) return
  process.stdout.write(
    `cluster: ${PROCESSES} processes, ${CLIENTS} clients, ${MUTATIONS} mutations, converged in ` +
      `${Math.round(results.convergedMs)} ms; cross-process latency p50 ${results.p50.toFixed(1)} ms, ` +
      `p99 ${results.p99.toFixed(1)} ms\n`,
  )
})

describeWithRedis('three server processes, one Redis', () => {
  it('brings every client of every process to the final state of every path, never backwards', async () => {
    const seed = process.env.CLUSTER_SEED ? Number(process.env.CLUSTER_SEED) : Date.now() % 2 ** 31
    process.stdout.write(`cluster: seed ${seed} (CLUSTER_SEED=${seed} to replay)\n`)
    const rng = mulberry32(seed)
    const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T

    const { prefix, servers } = await startCluster(3)

    // 30 clients, 10 per process, each listening to every path: what each one saw, per path.
    const seen = Array.from({ length: CLIENTS }, () => new Map<string, number[]>())
    const errors: string[] = []
    const ready: Array<Promise<unknown>> = []
    for (let i = 0; i < CLIENTS; i++) {
      const client = newClient(servers[i % PROCESSES] as ServerProcess)
      for (const p of PATHS) {
        const values: number[] = []
        seen[i]?.set(p, values)
        const off = client.listen<{ n: number }>(p, (data) => values.push(data.n), {
          onError: (error) => errors.push(`client ${i} ${p}: ${String(error)}`),
        })
        ready.push(off.ready)
      }
    }
    await Promise.all(ready)

    // 1,000 POSTs to random processes and paths, at most CONCURRENCY in flight.
    const perProcess = servers.map(() => 0)
    let sent = 0
    const worker = async (): Promise<void> => {
      while (sent < MUTATIONS) {
        sent++
        const target = Math.floor(rng() * PROCESSES)
        perProcess[target]!++
        await post(servers[target] as ServerProcess, pick(PATHS))
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const mutatedAt = performance.now()

    const redis = new Redis(REDIS_URL)
    const final = new Map<string, number>()
    try {
      for (const p of PATHS) final.set(p, Number((await redis.get(`${prefix}:c:${p.slice(3)}`)) ?? 0))
    } finally {
      redis.disconnect()
    }
    expect([...final.values()].reduce((a, b) => a + b, 0)).toBe(MUTATIONS)
    expect(perProcess.every((count) => count > 0)).toBe(true)

    const behind = (): string[] => {
      const out: string[] = []
      seen.forEach((paths, i) => {
        for (const [p, values] of paths) {
          if (values.at(-1) !== final.get(p)) out.push(`client ${i} ${p} at ${values.at(-1)}/${final.get(p)}`)
        }
      })
      return out
    }
    await until(
      () => behind().length === 0,
      10_000,
      () => behind().slice(0, 10).join(', '),
    )
    results.convergedMs = performance.now() - mutatedAt

    expect(errors).toEqual([])
    // Per client and path: strictly increasing, from the snapshot 0 to the final value.
    const regressions: string[] = []
    seen.forEach((paths, i) => {
      for (const [p, values] of paths) {
        expect(values[0]).toBe(0)
        for (let j = 1; j < values.length; j++) {
          if (!((values[j] as number) > (values[j - 1] as number))) {
            regressions.push(`client ${i} ${p}: ${values.slice(Math.max(0, j - 3), j + 2).join(' → ')}`)
          }
        }
      }
    })
    expect(regressions).toEqual([])
  }, 25_000)

  it('measures the delivery latency from a POST answered by process A to a client of process B', async () => {
    const { servers } = await startCluster()
    const [a, b] = servers as [ServerProcess, ServerProcess]
    const client = newClient(b)
    const receivedAt = new Map<number, number>()
    const waiting = new Map<number, () => void>()
    const off = client.listen<{ n: number }>('/c/lat', ({ n }) => {
      receivedAt.set(n, performance.now())
      waiting.get(n)?.()
    })
    await off.ready

    const latencies: number[] = []
    for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
      const n = await post(a, '/c/lat')
      const answeredAt = performance.now()
      if (!receivedAt.has(n)) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`n=${n} did not reach process B`)), 2000)
          waiting.set(n, () => {
            clearTimeout(timer)
            resolve()
          })
        })
        waiting.delete(n)
      }
      // The push may even beat the response to the test (clamped at 0: it was delivered "at once").
      if (i >= LATENCY_WARMUP) latencies.push(Math.max(0, (receivedAt.get(n) as number) - answeredAt))
    }
    latencies.sort((x, y) => x - y)
    results.p50 = percentile(latencies, 0.5)
    results.p99 = percentile(latencies, 0.99)
    expect(latencies).toHaveLength(LATENCY_SAMPLES)
  }, 15_000)
})
