// One hub process of the backplane benchmark (bench/backplane.mjs): `node bench/backplane-server.mjs`.
// A Fastify app with listenjs/fastify on the Redis backplane (REDIS_URL, BACKPLANE_PREFIX). It serves
// GET /hot (public, for the sockets that subscribe to it) and answers IPC commands:
//   start                 listen on a loopback port; returns { port, id }
//   window                starts a measurement window: CPU (process.cpuUsage), changes received from
//                         the backplane, lag samples
//   read                  ends it: CPU µs, changes received, lag percentiles, receipt times, counters
//   publish               (the driver) calls hub.notify at a paced rate, bounded in count and time
// `node bench/backplane-server.mjs sink` is no hub: it opens n plain subscriber connections to the
// channel that read and discard (`sink`, `sinkRead`), to measure Redis's cost per subscriber.
// Changes are counted with a handler of our own on the backplane (`backplane.subscribe`, the public
// contract the hub uses too): it sees exactly what the hub sees, after the wire message was parsed
// and validated. A change's first path carries the moment it was published (`/n/<ms>` or
// `/hot/<ms>`), so each process measures the lag from publish to receipt on the host's shared clock.
import { setImmediate, setTimeout as sleepTimer } from 'node:timers'
import { now, serveCommands, SERVER_HOST } from './lib.mjs'

if (process.argv[2] === 'sink') await sinkMode()

async function sinkMode() {
  // Plain subscriber connections that read and discard: what Redis pays per subscriber, with
  // subscribers that cost almost nothing themselves. Serves `sink` and `sinkRead`, nothing else.
  const net = await import('node:net')
  const sockets = []
  let bytes = 0
  serveCommands({
    sink: async ({ n, port, host, channel }) => {
      const ready = []
      for (let i = 0; i < n; i++) {
        const socket = net.connect(port, host)
        sockets.push(socket)
        ready.push(
          new Promise((resolve, reject) => {
            let confirmed = false
            socket.once('error', reject)
            socket.on('connect', () => socket.write(`SUBSCRIBE ${channel}\r\n`))
            socket.on('data', (chunk) => {
              if (!confirmed) {
                confirmed = true
                resolve()
                return
              }
              bytes += chunk.length
            })
          }),
        )
      }
      await Promise.all(ready)
      return { n: sockets.length }
    },
    sinkRead: async () => ({ bytes, t: now(), closed: sockets.filter((x) => x.destroyed).length }),
  })
  await new Promise(() => {}) // serve until the parent goes away
}

const { default: Fastify } = await import('fastify')
const { default: listenjs } = await import('listenjs/fastify')
const { redisBackplane } = await import('listenjs/redis')

const backplane = redisBackplane({
  url: process.env.REDIS_URL,
  prefix: process.env.BACKPLANE_PREFIX ?? 'bpbench',
})

const app = Fastify({ logger: false })
await app.register(listenjs, {
  backplane,
  limits: { connectionsPerAddress: 1_000_000 },
  heartbeat: { intervalMs: 900_000, timeoutMs: 60_000 },
})
let hotVersion = 0
app.get('/hot', { config: { listenjs: { public: true } } }, async () => ({
  v: ++hotVersion,
  items: [1, 2, 3],
}))
const hub = app.listenjs

// ---------------------------------------------------------------------------------------------
// The measurement window: bounded lag samples, counts, receipt times.

const MAX_SAMPLES = 400_000
const lags = new Float64Array(MAX_SAMPLES)
let w = newWindow()
function newWindow() {
  return { cpu: process.cpuUsage(), t0: now(), received: 0, samples: 0, first: 0, last: 0, pushes: 0 }
}

backplane.subscribe((message) => {
  if (message.kind !== 'change') return
  const p = message.paths[0]
  // The driver's own hub also delivers its changes locally: only the ones from Redis count.
  if (driving || typeof p !== 'string') return
  const slash = p.lastIndexOf('/')
  if (slash <= 0) return
  const t = now()
  w.received++
  if (w.first === 0) w.first = t
  w.last = t
  const ts = Number(p.slice(slash + 1))
  if (w.samples < MAX_SAMPLES && Number.isFinite(ts)) lags[w.samples++] = t - ts
})
hub.on('push', (event) => {
  w.pushes += event?.recipients ?? 1
})

function pct(sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

// ---------------------------------------------------------------------------------------------
// The driver: publishes through this process's hub at `rate` changes/s for `durationMs`.

let driving = false

async function publish({ rate, durationMs, kind = 'n', hardMs = durationMs + 3000 }) {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000))
  const prefix = kind === 'hot' ? '/hot/' : '/n/'
  const cpu0 = process.cpuUsage()
  const t0 = now()
  const deadline = t0 + hardMs
  let sent = 0
  driving = true
  try {
    // Each turn sends what is due by now (at most 1/100 of a second's worth more than due), then
    // yields to the event loop so that ioredis can read Redis's replies.
    while (sent < total) {
      const t = now()
      if (t > deadline) break
      const due = Math.min(total, Math.floor((rate * (t - t0)) / 1000) + 1)
      const burst = Math.min(due - sent, Math.max(1, Math.ceil(rate / 100)))
      for (let i = 0; i < burst; i++) {
        hub.notify(`${prefix}${now().toFixed(3)}`)
        sent++
      }
      if (sent >= due) await new Promise((resolve) => sleepTimer(resolve, 1))
      else await new Promise((resolve) => setImmediate(resolve))
    }
  } finally {
    driving = false
  }
  const t1 = now()
  const cpu = process.cpuUsage(cpu0)
  return { sent, total, t0, t1, sendMs: t1 - t0, cpuUs: cpu.user + cpu.system, stats: backplane.stats() }
}

serveCommands({
  start: async () => {
    await app.listen({ port: 0, host: SERVER_HOST })
    // Connected means both Redis connections are ready (bounded wait).
    for (let i = 0; i < 200 && backplane.status() !== 'connected'; i++) {
      await new Promise((resolve) => sleepTimer(resolve, 25))
    }
    return { port: app.server.address().port, id: backplane.id, status: backplane.status(), pid: process.pid }
  },
  window: async () => {
    w = newWindow()
    return { t0: w.t0 }
  },
  read: async () => {
    const cpu = process.cpuUsage(w.cpu)
    const sorted = Array.from(lags.subarray(0, w.samples)).sort((a, b) => a - b)
    return {
      t0: w.t0,
      t1: now(),
      cpuUs: cpu.user + cpu.system,
      received: w.received,
      first: w.first,
      last: w.last,
      pushes: w.pushes,
      lag: { n: sorted.length, p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted.at(-1) ?? null },
      stats: backplane.stats(),
      status: backplane.status(),
      hub: hub.stats(),
      rssMB: process.memoryUsage().rss / 2 ** 20,
    }
  },
  count: async () => ({ received: w.received, last: w.last }),
  publish,
})
