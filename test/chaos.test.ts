/**
 * Bounded chaos: real clients behind a TCP proxy that randomly cuts and stalls their connections
 * while the server's state changes. Whatever happens on the wire, every client ends at the current
 * state of every path it listens to, and never sees a state older than (or equal to) one it had.
 * The run is seeded: set CHAOS_SEED to replay a printed seed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import WebSocket from 'ws'
import { createClient, type Client, type WebSocketConstructor } from '../src/client'
import { closeAll, json, plain, sleep, until } from './helpers/plain'
import { mulberry32, startProxy, type Proxy } from './helpers/proxy'

const CLIENTS = 20
const PATHS = Array.from({ length: 5 }, (_, i) => `/c/${i}`)
const MUTATIONS = 1000
const CHAOS_EVENTS = 120

let proxy: Proxy | undefined
const clients: Client[] = []

afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
  await proxy?.close()
  proxy = undefined
  await closeAll()
})

/** A `ws` class that sends `cookie` on the upgrade, so that clients fall into several identity groups. */
function withCookie(cookie: string): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string, protocols: string | string[]) {
      super(url, protocols, { headers: { cookie } })
    }
  }
}

it('brings every client to the current state of every path, never backwards, while the proxy cuts and stalls connections', async () => {
  const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : Date.now() % 2 ** 31
  process.stdout.write(`chaos: seed ${seed} (CHAOS_SEED=${seed} to replay)\n`)
  const rng = mulberry32(seed)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T
  const between = (min: number, max: number): number => min + Math.floor(rng() * (max - min + 1))

  // `GET /c/k` answers `{ n }`, after a short random delay so that replays overlap; `POST` increments.
  const values = new Map<string, number>()
  const server = await plain(
    async (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '/').split('?')[0] as string
      if (req.method === 'GET') {
        const n = values.get(path) ?? 0
        const delay = between(0, 3)
        if (delay > 0) await sleep(delay)
        json(res, 200, { n })
      } else {
        values.set(path, (values.get(path) ?? 0) + 1)
        json(res, 200, { n: values.get(path) })
      }
    },
    { replayConcurrency: 8 },
  )
  proxy = await startProxy(Number(new URL(server.url).port))
  const url = `ws://127.0.0.1:${proxy.port}/listen`

  // What each client last held per path, and every value it was given, in order.
  const seen: Array<Map<string, number[]>> = []
  let reconnects = 0
  for (let i = 0; i < CLIENTS; i++) {
    const client = createClient({
      url,
      WebSocket: withCookie(`u=${i % 4}`),
      reconnect: { initialDelayMs: 10, maxDelayMs: 200 },
    })
    clients.push(client)
    client.onStatus((status) => {
      if (status === 'reconnecting') reconnects++
    })
    const history = new Map<string, number[]>(PATHS.map((path) => [path, []]))
    seen.push(history)
    for (const path of PATHS) {
      client.listen<{ n: number }>(path, (data) => history.get(path)?.push(data.n))
    }
  }
  await until(() => seen.every((history) => [...history.values()].every((ns) => ns.length > 0)), 5000)

  // The chaos loop: a fixed number of events, 20–50 ms apart; each cuts or stalls (50–300 ms) a
  // random connection.
  let stopChaos = false
  const chaos = (async () => {
    for (let event = 0; event < CHAOS_EVENTS && !stopChaos; event++) {
      await sleep(between(20, 50))
      if (rng() < 0.4) proxy?.cutRandom(rng)
      else proxy?.stallRandom(between(50, 300), rng)
    }
  })()

  // 1,000 mutations straight to the server, in batches of 1–8 concurrent requests.
  let sent = 0
  try {
    while (sent < MUTATIONS) {
      const batch = Math.min(between(1, 8), MUTATIONS - sent)
      const writes: Array<Promise<Response>> = []
      for (let i = 0; i < batch; i++) writes.push(fetch(server.url + pick(PATHS), { method: 'POST' }))
      sent += batch
      for (const response of await Promise.all(writes)) expect(response.status).toBe(200)
      await sleep(between(0, 20))
    }
  } finally {
    stopChaos = true
    await chaos
  }
  proxy.setMode('pass')
  const stoppedAt = Date.now()

  // A fresh GET of each path is the truth every client must reach.
  const truth = new Map<string, number>()
  for (const path of PATHS) {
    const response = await fetch(server.url + path)
    truth.set(path, ((await response.json()) as { n: number }).n)
  }
  expect([...truth.values()].reduce((a, b) => a + b, 0)).toBe(MUTATIONS)

  const converged = (): number =>
    seen.reduce(
      (count, history) =>
        count + PATHS.filter((path) => history.get(path)?.at(-1) === truth.get(path)).length,
      0,
    )
  try {
    await until(() => converged() === CLIENTS * PATHS.length, 20_000)
  } catch {
    const stuck = seen.flatMap((history, i) =>
      PATHS.filter((path) => history.get(path)?.at(-1) !== truth.get(path)).map(
        (path) =>
          `client ${i} (${clients[i]?.status()}) ${path}: holds ${history.get(path)?.at(-1)}, GET says ${truth.get(path)}`,
      ),
    )
    throw new Error(
      `seed ${seed}: ${converged()}/${CLIENTS * PATHS.length} converged in 20 s:\n${stuck.join('\n')}`,
    )
  }
  const elapsed = Date.now() - stoppedAt

  // Never an older state, never the same state twice in a row.
  const regressions = seen.flatMap((history, i) =>
    PATHS.flatMap((path) => {
      const ns = history.get(path) ?? []
      return ns.flatMap((n, k) =>
        k > 0 && n <= (ns[k - 1] as number)
          ? [
              `client ${i} ${path}: ${ns[k - 1]} then ${n} (…${ns.slice(Math.max(0, k - 3), k + 2).join(', ')}…)`,
            ]
          : [],
      )
    }),
  )
  expect({ seed, regressions }).toEqual({ seed, regressions: [] })

  expect(proxy.stats.cuts).toBeGreaterThan(0)
  expect(proxy.stats.stalls).toBeGreaterThan(0)
  expect(reconnects).toBeGreaterThan(0)
  const percent = (100 * converged()) / (CLIENTS * PATHS.length)
  expect(percent).toBe(100)
  process.stdout.write(
    `chaos: ${proxy.stats.cuts} cuts (${proxy.stats.resets} resets), ${proxy.stats.stalls} stalls, ` +
      `${CLIENTS} clients × ${PATHS.length} paths, ${MUTATIONS} mutations, convergence ${percent}% in ${elapsed} ms (${reconnects} reconnects)\n`,
  )
}, 60_000)
