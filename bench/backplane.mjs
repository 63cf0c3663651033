// The backplane's ceiling: how many changes per second one Redis channel carries between hub
// processes before one falls behind, what each process pays per change it does not care about, and
// what Redis pays per published message and per subscriber.
//
//   node bench/backplane.mjs [--quick]      prints the markdown, writes .tmp/bench-backplane/*
//
// or, from another script: `backplanePhase({ quick, log })` → results (plain JSON), and
// `renderBackplane(results)` → { markdown, svgs }.
//
// Method. A private redis-server (its own port, so that its CPU counters are ours alone; falls back
// to REDIS_URL / 127.0.0.1:6379 when it cannot be started) and, for each process count P, P receiver
// hubs plus one driver hub, all `bench/backplane-server.mjs` (Fastify + listenjs/fastify on the Redis
// backplane). The driver calls `hub.notify('/n/<ms>')` at an offered rate, paced and bounded in count
// and time; nobody subscribes to `/n/…`, `/n` or `/`, so every receiver pays only for a change it
// does not care about. Each receiver counts what its backplane delivers and the lag from publish to
// receipt (the path carries the publish time; one host, one clock). A step ends when every receiver
// has everything or after a bounded drain. "Falls behind": a receiver's delivered rate < 95 % of the
// rate the publisher sent, or its lag p99 > 100 ms, or changes still missing after the drain (such a
// step is run once more and the second run kept). Then Redis alone: the same publisher and N plain
// subscriber connections (N up to 400), for Redis's CPU per message and per subscriber.
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { esc, niceMax, table } from './chart.mjs'
import { Child, killChildren, now, sleep, SERVER_HOST } from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const SERVER = path.join(here, 'backplane-server.mjs')

const BEHIND_RATIO = 0.95
const BEHIND_LAG_MS = 100

const PLANS = {
  quick: {
    hardMs: 38_000,
    ladderPs: [2, 4],
    costOnlyPs: [],
    costs: { light: { rate: 1000, durationMs: 800 }, loaded: { rate: 10_000, durationMs: 800 } },
    care: { rate: 1000, durationMs: 800, sockets: 4 },
    rates: [5000, 20_000, 40_000, 60_000],
    stepMs: 700,
    sweep: { subscribers: [50, 200], rates: [2000, 10_000], stepMs: 600 },
    drainMs: 1500,
  },
  full: {
    hardMs: 235_000,
    ladderPs: [2, 3, 4],
    costOnlyPs: [8],
    costs: { light: { rate: 1000, durationMs: 2000 }, loaded: { rate: 10_000, durationMs: 2000 } },
    care: { rate: 1000, durationMs: 1500, sockets: 4 },
    rates: [1000, 2000, 5000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000],
    sweep: {
      subscribers: [10, 50, 100, 200, 400],
      rates: [1000, 2000, 5000, 10_000, 20_000, 40_000],
      stepMs: 1000,
    },
    stepMs: 1500,
    drainMs: 2500,
  },
}

// ---------------------------------------------------------------------------------------------
// Redis: a private server, and a minimal RESP client for INFO (no dependency beyond node:net).

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, SERVER_HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Sends one inline command and returns the reply's text (bulk strings only), with a timeout. */
function redisCommand(port, host, command, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host)
    let buf = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`redis ${command}: timed out`))
    }, timeoutMs)
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(`${command}\r\n`))
    socket.on('data', (d) => {
      buf += d
      if (buf[0] === '+' || buf[0] === '-') {
        if (!buf.includes('\r\n')) return
      } else if (buf[0] === '$') {
        const nl = buf.indexOf('\r\n')
        if (nl === -1) return
        const len = Number(buf.slice(1, nl))
        if (buf.length < nl + 2 + len + 2) return
        buf = buf.slice(nl + 2, nl + 2 + len)
      } else return
      clearTimeout(timer)
      socket.end()
      resolve(buf)
    })
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

const infoField = (text, name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN)

async function redisCpuUs(redis) {
  const info = await redisCommand(redis.port, redis.host, 'INFO cpu')
  return (infoField(info, 'used_cpu_user') + infoField(info, 'used_cpu_sys')) * 1e6
}

async function startRedis(log) {
  const port = await freePort()
  let proc
  try {
    proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        SERVER_HOST,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
      ],
      { stdio: 'ignore' },
    )
    await new Promise((resolve, reject) => {
      proc.once('error', reject)
      proc.once('spawn', resolve)
    })
    for (let i = 0; i < 100; i++) {
      try {
        if ((await redisCommand(port, SERVER_HOST, 'PING', 500)) === '+PONG\r\n') break
      } catch {
        await sleep(50)
      }
    }
    const info = await redisCommand(port, SERVER_HOST, 'INFO server')
    const version = /^redis_version:(\S+)/m.exec(info)?.[1]
    return { port, host: SERVER_HOST, url: `redis://${SERVER_HOST}:${port}`, proc, private: true, version }
  } catch (error) {
    proc?.kill('SIGKILL')
    const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
    log(`backplane: no private redis-server (${error.message}); using the shared one at ${url.host}`)
    const host = url.hostname
    const p = Number(url.port || 6379)
    const info = await redisCommand(p, host, 'INFO server')
    const version = /^redis_version:(\S+)/m.exec(info)?.[1]
    return { port: p, host, url: url.href, proc: undefined, private: false, version }
  }
}

// ---------------------------------------------------------------------------------------------
// Sockets for the "cares" step: a few subscribers of /hot on every receiver.

async function openSubscribers(ports, perProcess, timeoutMs = 10_000) {
  const { WebSocket } = await import('ws')
  const sockets = []
  const counts = { data: 0 }
  const opening = []
  for (const port of ports) {
    for (let k = 0; k < perProcess; k++) {
      opening.push(
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://${SERVER_HOST}:${port}/listen`, 'listenjs.v1', {
            perMessageDeflate: false,
          })
          sockets.push(ws)
          const timer = setTimeout(() => reject(new Error('subscriber not ready')), timeoutMs)
          ws.on('error', (error) => {
            clearTimeout(timer)
            reject(error)
          })
          ws.on('message', (data) => {
            const text = data.toString()
            if (text.startsWith('{"type":"welcome"'))
              ws.send(JSON.stringify({ type: 'subscribe', path: '/hot' }))
            else if (text.startsWith('{"type":"ping"')) ws.send('{"type":"pong"}')
            else if (text.startsWith('{"type":"data"')) {
              if (text.includes('"snapshot":true')) {
                clearTimeout(timer)
                resolve()
              } else counts.data++
            }
          })
        }),
      )
    }
  }
  try {
    await Promise.all(opening)
  } catch (error) {
    for (const ws of sockets) ws.terminate()
    throw error
  }
  return {
    counts,
    close: () => {
      for (const ws of sockets) ws.terminate()
    },
  }
}

// ---------------------------------------------------------------------------------------------
// One step: offered rate → what every receiver got, at what lag and CPU; Redis's CPU.

async function step({ driver, receivers, redis, rate, durationMs, kind = 'n', drainMs, idleUsPerMs }) {
  const load1 = os.loadavg()[0]
  await Promise.all(receivers.map((r) => r.call('window')))
  const redis0 = await redisCpuUs(redis)
  const d = await driver.call('publish', { rate, durationMs, kind }, durationMs + 8000)
  // Drain: until every receiver has every change, or drainMs after the last send.
  const drainEnd = now() + drainMs
  while (now() < drainEnd) {
    const counts = await Promise.all(receivers.map((r) => r.call('count', {}, 2000)))
    if (counts.every((c) => c.received >= d.sent)) break
    await sleep(25)
  }
  const redis1 = await redisCpuUs(redis)
  const reads = await Promise.all(receivers.map((r) => r.call('read')))
  const rows = reads.map((r, i) => {
    const spanMs = r.received > 0 ? Math.max(r.last - d.t0, d.sendMs) : r.t1 - d.t0
    const deliveredRate = r.received / (spanMs / 1000)
    const cpuUs = Math.max(0, r.cpuUs - (idleUsPerMs[i] ?? 0) * (r.t1 - r.t0))
    return {
      received: r.received,
      deliveredRate,
      lagP50: r.lag.p50,
      lagP99: r.lag.p99,
      lagMax: r.lag.max,
      cpuUs,
      cpuPerChangeUs: r.received ? cpuUs / r.received : null,
      pushes: r.pushes,
      malformed: r.stats.malformed,
      outages: r.stats.outages,
      status: r.status,
      rssMB: r.rssMB,
    }
  })
  const sentRate = d.sent / (d.sendMs / 1000)
  const minDelivered = Math.min(...rows.map((r) => r.deliveredRate))
  const worstP99 = Math.max(...rows.map((r) => r.lagP99 ?? Infinity))
  const missing = Math.max(...rows.map((r) => d.sent - r.received))
  // Behind: relative to what the publisher managed to send (it may fall short of the offered rate).
  const behind = minDelivered < BEHIND_RATIO * sentRate || worstP99 > BEHIND_LAG_MS || missing > 0
  const driverShort = sentRate < BEHIND_RATIO * rate
  // The window's CPU over its busy span (first send to last receipt), not the idle drain after it.
  const wallMs = Math.max(d.sendMs, ...reads.map((r) => r.last - d.t0))
  const redisUs = redis1 - redis0
  const totalCpuUs = redisUs + d.cpuUs + rows.reduce((a, r) => a + r.cpuUs, 0)
  return {
    rate,
    kind,
    durationMs,
    load1,
    sent: d.sent,
    sentRate,
    driverCpuPerChangeUs: d.cpuUs / d.sent,
    driverShort,
    minDelivered,
    worstP99,
    worstP50: Math.max(...rows.map((r) => r.lagP50 ?? Infinity)),
    missing,
    behind,
    recvCpuPerChangeUs: mean(rows.map((r) => r.cpuPerChangeUs)),
    redisUsPerMessage: redisUs / d.sent,
    coresBusy: totalCpuUs / (wallMs * 1000),
    receivers: rows,
  }
}

const mean = (values) => {
  const v = values.filter((x) => Number.isFinite(x))
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null
}

/** Least squares y = a + b·x. */
function fit(points) {
  const n = points.length
  if (n < 2) return null
  const mx = points.reduce((s, p) => s + p.x, 0) / n
  const my = points.reduce((s, p) => s + p.y, 0) / n
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0)
  if (sxx === 0) return null
  const b = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / sxx
  return { a: my - b * mx, b }
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Redis alone: its CPU per message as the number of subscribers grows, with plain subscriber
// connections that read and discard (one "sink" process), so that 400 subscribers fit on the host.

async function redisSweep({ plan, redis, log, left }) {
  const out = []
  for (const n of plan.sweep.subscribers) {
    if (left() < 10_000) break
    const prefix = `bpsweep-${process.pid}-${n}`
    const env = { ...process.env, REDIS_URL: redis.url, BACKPLANE_PREFIX: prefix }
    const driver = new Child(SERVER, [], { name: 'bp-sweep-driver', env })
    const sink = new Child(SERVER, ['sink'], { name: 'bp-sink', env })
    const entry = { sinkSubscribers: n, subscribers: n + 1, steps: [] }
    out.push(entry)
    log(`backplane: Redis with ${n} plain subscribers + 1 publisher hub`)
    try {
      const [started] = await Promise.all([
        driver.call('start', {}, 20_000),
        sink.call('sink', { n, port: redis.port, host: redis.host, channel: `${prefix}:changes` }, 20_000),
      ])
      // One pub/sub frame as Redis writes it to each subscriber (its size does not vary: the publish
      // time always has 13 + 1 + 3 characters).
      const json = JSON.stringify({
        v: 1,
        from: started.id,
        kind: 'change',
        paths: [`/n/${now().toFixed(3)}`, '/n', '/'],
      })
      const channel = `${prefix}:changes`
      const frameBytes =
        `*3\r\n$7\r\nmessage\r\n$${channel.length}\r\n${channel}\r\n$${json.length}\r\n${json}\r\n`.length
      let warm = true
      for (const rate of [plan.sweep.rates[0], ...plan.sweep.rates]) {
        if (left() < plan.sweep.stepMs + plan.drainMs + 6000) break
        const s0 = await sink.call('sinkRead')
        const redis0 = await redisCpuUs(redis)
        const d = await driver.call(
          'publish',
          { rate, durationMs: warm ? 300 : plan.sweep.stepMs },
          plan.sweep.stepMs + 8000,
        )
        const expected = d.sent * n * frameBytes
        let s1 = await sink.call('sinkRead')
        const drainEnd = now() + plan.drainMs
        while (s1.bytes - s0.bytes < expected && now() < drainEnd) {
          await sleep(20)
          s1 = await sink.call('sinkRead')
        }
        const redis1 = await redisCpuUs(redis)
        if (warm) {
          warm = false
          continue
        }
        const delivered = (s1.bytes - s0.bytes) / (n * frameBytes)
        const spanMs = Math.max(d.sendMs, s1.t - d.t0)
        const redisUs = redis1 - redis0
        const row = {
          rate,
          sent: d.sent,
          sentRate: d.sent / (d.sendMs / 1000),
          deliveredRate: delivered / (spanMs / 1000),
          delivered,
          redisUsPerMessage: redisUs / d.sent,
          redisUsPerDelivery: redisUs / (d.sent * (n + 1)),
          redisCoreShare: redisUs / (spanMs * 1000),
          closed: s1.closed,
        }
        row.behind =
          delivered < d.sent * 0.999 || row.deliveredRate < BEHIND_RATIO * row.sentRate || s1.closed > 0
        entry.steps.push(row)
        log(
          `  ${rate}/s: sent ${int(row.sentRate)}/s, each subscriber got ${int(row.deliveredRate)}/s, ` +
            `Redis ${fmt(row.redisUsPerMessage, 1)} µs/msg, ${fmt(row.redisCoreShare * 100, 0)} % of a core${row.behind ? ' BEHIND' : ''}`,
        )
        if (row.behind || row.sentRate < 0.8 * rate) break
        await sleep(200)
      }
    } catch (error) {
      entry.error = String(error?.message ?? error)
      log(`backplane: sweep with ${n} subscribers failed: ${entry.error}`)
    } finally {
      await Promise.all([driver.stop(2000), sink.stop(2000)])
    }
  }
  return out
}

export async function backplanePhase({ quick = false, log = (m) => process.stderr.write(`${m}\n`) } = {}) {
  const plan = quick ? PLANS.quick : PLANS.full
  const started = now()
  const results = {
    quick,
    machine: {
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      node: process.version,
      platform: `${os.type()} ${os.release()}`,
      loadBefore: os.loadavg(),
      loadAfter: null,
    },
    redis: undefined,
    plan: { ...plan },
    processCounts: [],
    sweep: [],
    aborted: null,
    elapsedMs: 0,
  }
  const redis = await startRedis(log)
  results.redis = { version: redis.version, private: redis.private }
  let hardHit = false
  const hard = setTimeout(() => {
    hardHit = true
    log(`backplane: hard time limit (${plan.hardMs} ms) reached; killing every child`)
    killChildren()
    redis.proc?.kill('SIGKILL')
  }, plan.hardMs)
  const left = () => plan.hardMs - 4000 - (now() - started)
  try {
    const Ps = [
      ...plan.ladderPs.map((p) => ({ p, ladder: true })),
      ...plan.costOnlyPs.map((p) => ({ p, ladder: false })),
    ]
    for (const { p, ladder } of Ps) {
      if (left() < 8000) {
        results.aborted ??= `time budget: stopped before P = ${p}`
        break
      }
      log(`backplane: P = ${p} receivers + 1 driver`)
      const entry = {
        receivers: p,
        subscribers: p + 1,
        ladder,
        idleUsPerS: null,
        costs: null,
        care: null,
        steps: [],
      }
      results.processCounts.push(entry)
      const env = { ...process.env, REDIS_URL: redis.url, BACKPLANE_PREFIX: `bpbench-${process.pid}-${p}` }
      const all = Array.from(
        { length: p + 1 },
        (_, i) => new Child(SERVER, [], { name: i === 0 ? 'bp-driver' : `bp-recv-${i}`, env }),
      )
      const [driver, ...receivers] = all
      try {
        const starts = await Promise.all(all.map((c) => c.call('start', {}, 20_000)))
        if (starts.some((s) => s.status !== 'connected')) throw new Error('a hub did not connect to Redis')
        const ports = starts.slice(1).map((s) => s.port)
        // Idle CPU of each receiver (timers, Redis connection): subtracted from each window.
        await Promise.all(receivers.map((r) => r.call('window')))
        await sleep(500)
        const idle = await Promise.all(receivers.map((r) => r.call('read')))
        const idleUsPerMs = idle.map((r) => r.cpuUs / (r.t1 - r.t0))
        entry.idleUsPerS = mean(idleUsPerMs) * 1000
        const base = { driver, receivers, redis, drainMs: plan.drainMs, idleUsPerMs }
        // Warm-up (JIT, connections, buffers), not recorded.
        await step({ ...base, rate: plan.costs.loaded.rate, durationMs: 1000 })
        entry.costs = {}
        for (const [name, c] of Object.entries(plan.costs)) {
          entry.costs[name] = await step({ ...base, ...c })
          log(
            `  ${name} @${c.rate}/s: receiver ${fmt(entry.costs[name].recvCpuPerChangeUs)} µs/change, ` +
              `redis ${fmt(entry.costs[name].redisUsPerMessage)} µs/msg, driver ${fmt(entry.costs[name].driverCpuPerChangeUs)} µs/change`,
          )
          await sleep(200)
        }
        if (ladder) {
          for (const rate of plan.rates) {
            if (left() < plan.stepMs + plan.drainMs + 6000) {
              results.aborted ??= `time budget: ladder of P = ${p} stopped before ${rate}/s`
              break
            }
            let s = await step({ ...base, rate, durationMs: plan.stepMs })
            if (s.behind && left() > plan.stepMs + plan.drainMs + 6000) {
              // Once more, after a pause: other processes on the host can stall a receiver for a moment.
              log(
                `  ${rate}/s: behind (lag p99 ${fmt(s.worstP99)} ms, slowest ${Math.round(s.minDelivered)}/s); once more`,
              )
              await sleep(500)
              const again = await step({ ...base, rate, durationMs: plan.stepMs })
              again.firstAttempt = {
                minDelivered: s.minDelivered,
                worstP99: s.worstP99,
                sentRate: s.sentRate,
              }
              s = again
            }
            entry.steps.push(s)
            log(
              `  ${rate}/s: sent ${Math.round(s.sentRate)}/s, slowest receiver ${Math.round(s.minDelivered)}/s, ` +
                `lag p99 ${fmt(s.worstP99)} ms, ${fmt(s.coresBusy)} cores busy${s.behind ? ' BEHIND' : ''}${s.driverShort ? ' (driver short)' : ''}`,
            )
            if (s.behind || s.sentRate < 0.8 * rate) break // receivers behind, or the machine cannot offer more
            // Let any backlog in Redis's output buffers clear before the next step.
            await sleep(200)
          }
        }
        if (left() > plan.care.durationMs + plan.drainMs + 8000) {
          const subs = await openSubscribers(ports, plan.care.sockets)
          try {
            await step({ ...base, rate: plan.care.rate, durationMs: 300, kind: 'hot' })
            const before = subs.counts.data
            entry.care = await step({
              ...base,
              rate: plan.care.rate,
              durationMs: plan.care.durationMs,
              kind: 'hot',
            })
            entry.care.framesToSockets = subs.counts.data - before
            entry.care.socketsPerProcess = plan.care.sockets
            log(`  cares @${plan.care.rate}/s: receiver ${fmt(entry.care.recvCpuPerChangeUs)} µs/change`)
          } finally {
            subs.close()
          }
        }
      } catch (error) {
        if (hardHit) {
          results.aborted = `hard time limit (${plan.hardMs} ms)`
          break
        }
        entry.error = String(error?.message ?? error)
        log(`backplane: P = ${p} failed: ${entry.error}`)
      } finally {
        await Promise.all(all.map((c) => c.stop(2000)))
      }
      if (hardHit) break
    }
    if (!hardHit) results.sweep = await redisSweep({ plan, redis, log, left })
  } catch (error) {
    if (!hardHit) throw error
    results.aborted = `hard time limit (${plan.hardMs} ms)`
  } finally {
    clearTimeout(hard)
    killChildren()
    if (redis.proc && redis.proc.exitCode === null) {
      redis.proc.kill('SIGTERM')
      const t = setTimeout(() => redis.proc.kill('SIGKILL'), 2000)
      await new Promise((resolve) =>
        redis.proc.exitCode !== null ? resolve() : redis.proc.once('exit', resolve),
      )
      clearTimeout(t)
    }
  }
  results.machine.loadAfter = os.loadavg()
  results.model = model(results)
  results.elapsedMs = now() - started
  return results
}

const fmt = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '–')

/** The per-change costs the scaling model is built on, from the `costs` steps (all measured). */
function model(results) {
  const with_ = results.processCounts.filter((e) => e.costs)
  const perLoad = {}
  for (const name of Object.keys(results.plan.costs)) {
    const rows = with_.map((e) => e.costs[name]).filter(Boolean)
    perLoad[name] = {
      rate: results.plan.costs[name].rate,
      recvUsPerChange: mean(rows.map((c) => c.recvCpuPerChangeUs)),
      driverUsPerChange: mean(rows.map((c) => c.driverCpuPerChangeUs)),
      redisFit:
        with_.length >= 3
          ? fit(
              with_
                .filter((e) => e.costs[name])
                .map((e) => ({ x: e.subscribers, y: e.costs[name].redisUsPerMessage })),
            )
          : null,
    }
  }
  const care = mean(results.processCounts.map((e) => e.care?.recvCpuPerChangeUs))
  const ceilings = results.processCounts
    .filter((e) => e.steps.length)
    .map((e) => {
      const ok = e.steps.filter((s) => !s.behind && !s.driverShort)
      const okAny = e.steps.filter((s) => !s.behind)
      const first = e.steps.find((s) => s.behind || s.driverShort)
      return {
        receivers: e.receivers,
        highestKept: ok.length ? Math.max(...ok.map((s) => s.rate)) : null,
        highestSentKept: okAny.length ? Math.max(...okAny.map((s) => s.sentRate)) : null,
        firstFailing: first
          ? {
              rate: first.rate,
              sentRate: first.sentRate,
              minDelivered: first.minDelivered,
              worstP99: first.worstP99,
              coresBusy: first.coresBusy,
              behind: first.behind,
              driverShort: first.driverShort,
            }
          : null,
      }
    })
  const sweepFits = {}
  for (const rate of results.plan.sweep.rates) {
    const pts = results.sweep.flatMap((e) =>
      e.steps
        .filter((x) => x.rate === rate && !x.behind)
        .map((x) => ({ x: e.subscribers, y: x.redisUsPerMessage })),
    )
    const f = fit(pts)
    if (f && pts.length >= 3) sweepFits[rate] = { ...f, points: pts.length }
  }
  const sweepCeilings = results.sweep.map((e) => {
    const ok = e.steps.filter((x) => !x.behind)
    const bad = e.steps.find((x) => x.behind)
    return {
      subscribers: e.subscribers,
      highestKept: ok.length ? Math.max(...ok.map((x) => x.sentRate)) : null,
      firstBehind: bad
        ? {
            rate: bad.rate,
            sentRate: bad.sentRate,
            deliveredRate: bad.deliveredRate,
            redisCoreShare: bad.redisCoreShare,
          }
        : null,
    }
  })
  return { perLoad, careUsPerChange: care, ceilings, sweepFits, sweepCeilings }
}

// ---------------------------------------------------------------------------------------------
// Rendering

const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–')

export function renderBackplane(results) {
  const m = results.model ?? model(results)
  const out = []
  out.push("## The backplane's ceiling", '')
  out.push(
    `Measured on ${results.machine.cpus} CPUs (${esc(results.machine.cpuModel)}), Node ${results.machine.node}, ` +
      `Redis ${results.redis?.version ?? '?'} (${results.redis?.private ? 'a private redis-server on loopback' : 'the shared Redis'}), ` +
      `${results.quick ? 'quick run' : 'full run'}, load average ${fmt(results.machine.loadBefore?.[0], 1)} before and ${fmt(results.machine.loadAfter?.[0], 1)} after ` +
      "(other work on the host counts in it). Every process, Redis included, shares these CPUs: the ceilings below are this machine's, " +
      'and the per-change costs are what the model scales.',
    '',
  )
  out.push(
    '**Method.** For P receivers, P + 1 hubs (Fastify + `listenjs/fastify` + `redisBackplane`) share one channel: ' +
      'a driver hub calls `hub.notify("/n/<publish time>")` at a paced, offered rate (bounded in count and time); ' +
      'nobody subscribes to `/n/…`, `/n` or `/`, so each receiver only pays for changes it does not care about. ' +
      'Every receiver counts what its backplane delivers (a handler on `backplane.subscribe`) and the lag from publish to receipt. ' +
      `A receiver *falls behind* when it delivers < ${BEHIND_RATIO * 100} % of the rate the publisher sent, its lag p99 exceeds ${BEHIND_LAG_MS} ms, ` +
      'or changes are still missing after the drain; a step that falls behind is run once more after a pause, and the second run is kept. CPU is `process.cpuUsage()` per receiver (idle CPU subtracted) and ' +
      "`INFO cpu` for Redis; Redis's CPU per message covers the PUBLISH and its delivery to all P + 1 subscribers.",
    '',
  )
  // Ladder
  const ladderRows = []
  for (const e of results.processCounts) {
    for (const s of e.steps) {
      ladderRows.push([
        String(e.receivers),
        int(s.rate),
        int(s.sentRate),
        int(s.minDelivered),
        `${fmt(s.worstP50, 2)} / ${fmt(s.worstP99, 1)}`,
        fmt(s.recvCpuPerChangeUs),
        fmt(s.redisUsPerMessage),
        fmt(s.driverCpuPerChangeUs),
        fmt(s.coresBusy, 2),
        fmt(s.load1, 1),
        s.behind ? '**behind**' : s.driverShort ? 'kept up; publisher short of the offered rate' : 'kept up',
      ])
    }
  }
  out.push('### Offered rate vs what the slowest receiver got (measured)', '')
  out.push(
    table(
      [
        'receivers',
        'offered /s',
        'sent /s',
        'slowest receiver /s',
        'lag p50 / p99 (ms, worst receiver)',
        'receiver CPU µs/change',
        'Redis CPU µs/msg',
        'publisher CPU µs/change',
        'cores busy (all processes)',
        'host load (1 min)',
        'verdict',
      ],
      ladderRows,
    ),
    '',
  )
  out.push('### Per-change costs (measured, at rates every process keeps up with)', '')
  const costRows = []
  for (const e of results.processCounts.filter((x) => x.costs)) {
    for (const [name, c] of Object.entries(e.costs)) {
      costRows.push([
        String(e.receivers),
        String(e.subscribers),
        `${int(c.rate)} (${name})`,
        fmt(c.recvCpuPerChangeUs, 1),
        name === 'light' && e.care ? fmt(e.care.recvCpuPerChangeUs, 1) : '',
        fmt(c.driverCpuPerChangeUs, 1),
        fmt(c.redisUsPerMessage, 2),
        fmt(c.redisUsPerMessage / e.subscribers, 2),
        c.behind ? 'behind' : 'kept up',
      ])
    }
  }
  out.push(
    table(
      [
        'receivers',
        'channel subscribers',
        'changes/s',
        "receiver µs per change it doesn't care about",
        `receiver µs per change to a path ${results.plan.care.sockets} local sockets hold (${int(results.plan.care.rate)}/s)`,
        'publisher µs per change',
        'Redis µs per message',
        'Redis µs per message per subscriber',
        'verdict',
      ],
      costRows,
    ),
    '',
  )
  for (const [name, l] of Object.entries(m.perLoad ?? {})) {
    out.push(
      `- At ${int(l.rate)} changes/s (${name}): a receiver pays **${fmt(l.recvUsPerChange, 1)} µs** per change it does not care about, ` +
        `the publisher ${fmt(l.driverUsPerChange, 1)} µs per change` +
        (l.redisFit
          ? `; Redis, fitted over the subscriber counts measured, **${fmt(l.redisFit.a, 2)} µs + ${fmt(l.redisFit.b, 2)} µs × subscribers** per message.`
          : '.'),
    )
  }
  out.push(
    '',
    'Costs per change fall as the rate rises: at a low rate every message wakes each process (one socket read, one ' +
      'coalescing turn, one `write` by Redis per subscriber); at a high rate one wake-up serves many messages.',
    '',
  )
  const ceilingLines = m.ceilings.map((c) => {
    const f = c.firstFailing
    return (
      `- ${c.receivers} receivers: every process kept up to **${int(c.highestKept)} changes/s** offered` +
      (c.highestSentKept > (c.highestKept ?? 0) * 1.01
        ? ` (and with ${int(c.highestSentKept)}/s, the most the publisher sent)`
        : '') +
      (f
        ? `; at ${int(f.rate)}/s offered ${f.behind ? `the slowest receiver got ${int(f.minDelivered)}/s (lag p99 ${fmt(f.worstP99)} ms)` : `the publisher reached only ${int(f.sentRate)}/s`}, with ${fmt(f.coresBusy, 2)} of ${results.machine.cpus} cores busy.`
        : ' (the highest rate tried).')
    )
  })
  if (ceilingLines.length) out.push(...ceilingLines, '')
  if (results.sweep?.length) {
    out.push('### Redis alone: CPU per message as subscribers grow (measured)', '')
    out.push(
      'The same publisher hub, and N plain subscriber connections (one process that reads and discards), so that ' +
        "hundreds of subscribers fit on this host: what Redis's single thread pays per message and per subscriber. " +
        "A row *behind* while Redis used well under one core means the subscribers' process, not Redis, ran out of CPU.",
      '',
    )
    const rows = results.sweep.flatMap((e) =>
      e.steps.map((x) => [
        String(e.subscribers),
        int(x.rate),
        int(x.sentRate),
        int(x.deliveredRate),
        fmt(x.redisUsPerMessage, 1),
        fmt(x.redisUsPerDelivery, 2),
        `${fmt(x.redisCoreShare * 100, 0)} %`,
        x.behind ? '**behind**' : 'kept up',
      ]),
    )
    out.push(
      table(
        [
          'subscribers',
          'offered /s',
          'sent /s',
          'each subscriber got /s',
          'Redis µs per message',
          'Redis µs per message per subscriber',
          'Redis CPU (share of one core)',
          'verdict',
        ],
        rows,
      ),
      '',
    )
    for (const [rate, f] of Object.entries(m.sweepFits ?? {})) {
      out.push(
        `- At ${int(Number(rate))} messages/s: Redis pays **${fmt(f.a, 1)} µs + ${fmt(f.b, 2)} µs × subscribers** per message (least squares over ${f.points} points).`,
      )
    }
    for (const c of m.sweepCeilings ?? []) {
      if (c.firstBehind) {
        out.push(
          `- ${c.subscribers} subscribers: ${c.highestKept === null ? 'fell behind from the first step' : `delivered everything up to ${int(c.highestKept)} messages/s`}; at ${int(c.firstBehind.sentRate)}/s sent each subscriber got ${int(c.firstBehind.deliveredRate)}/s (Redis at ${fmt(c.firstBehind.redisCoreShare * 100, 0)} % of a core).`,
        )
      }
    }
    out.push('')
  }
  if (results.aborted) out.push(`_Incomplete: ${results.aborted}._`, '')
  out.push('![Delivered rate vs offered rate](backplane.svg)', '')
  return { markdown: out.join('\n'), svgs: { 'backplane.svg': backplaneSvg(results) } }
}

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12"'
const COLORS = ['#00798c', '#d1495b', '#edae49', '#66a182', '#2e4057']

function backplaneSvg(results) {
  const W = 760
  const H = 420
  const L = 70
  const R = 190
  const T = 40
  const B = 50
  const series = results.processCounts.filter((e) => e.steps.length)
  const all = series.flatMap((e) => e.steps)
  const vmax = niceMax(Math.max(1, ...all.map((s) => Math.max(s.rate, s.minDelivered))))
  const x = (v) => L + (v / vmax) * (W - L - R)
  const y = (v) => H - B - (v / vmax) * (H - T - B)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT}>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${L}" y="22" font-size="14" font-weight="bold">One Redis channel: changes/s the slowest receiver got vs offered</text>`,
  ]
  for (let i = 0; i <= 5; i++) {
    const v = (vmax * i) / 5
    parts.push(`<line x1="${x(v)}" y1="${T}" x2="${x(v)}" y2="${H - B}" stroke="#eee"/>`)
    parts.push(`<text x="${x(v)}" y="${H - B + 16}" text-anchor="middle">${int(v)}</text>`)
    parts.push(`<line x1="${L}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#eee"/>`)
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${int(v)}</text>`)
  }
  parts.push(
    `<line x1="${x(0)}" y1="${y(0)}" x2="${x(vmax)}" y2="${y(vmax)}" stroke="#999" stroke-dasharray="4 4"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">offered changes/s</text>`,
    `<text x="16" y="${(T + H - B) / 2}" transform="rotate(-90 16 ${(T + H - B) / 2})" text-anchor="middle">delivered changes/s (slowest receiver)</text>`,
  )
  series.forEach((e, i) => {
    const color = COLORS[i % COLORS.length]
    const pts = e.steps.map((s) => `${x(s.rate).toFixed(1)},${y(s.minDelivered).toFixed(1)}`).join(' ')
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`)
    for (const s of e.steps) {
      parts.push(
        `<circle cx="${x(s.rate).toFixed(1)}" cy="${y(s.minDelivered).toFixed(1)}" r="3.5" fill="${s.behind ? '#fff' : color}" stroke="${color}" stroke-width="2"/>`,
      )
    }
    const ly = T + 10 + i * 20
    parts.push(
      `<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 32}" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
    )
    parts.push(`<text x="${W - R + 38}" y="${ly + 4}">${e.receivers} receivers + 1 publisher</text>`)
  })
  const ly = T + 10 + series.length * 20
  parts.push(
    `<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 32}" y2="${ly}" stroke="#999" stroke-dasharray="4 4"/>`,
  )
  parts.push(`<text x="${W - R + 38}" y="${ly + 4}">delivered = offered</text>`)
  parts.push(`<text x="${W - R + 12}" y="${ly + 24}">hollow: fell behind</text>`)
  parts.push('</svg>')
  return parts.join('\n')
}

// ---------------------------------------------------------------------------------------------
// Standalone

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick')
  const outDir = path.resolve(here, '..', '.tmp', 'bench-backplane')
  const onSignal = () => {
    killChildren()
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const results = await backplanePhase({ quick })
    const { markdown, svgs } = renderBackplane(results)
    mkdirSync(outDir, { recursive: true })
    writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 2))
    writeFileSync(path.join(outDir, 'backplane.md'), markdown)
    for (const [name, svg] of Object.entries(svgs)) writeFileSync(path.join(outDir, name), svg)
    process.stdout.write(`${markdown}\n`)
    process.stderr.write(
      `backplane: wrote ${path.relative(process.cwd(), outDir)}/ in ${(results.elapsedMs / 1000).toFixed(1)} s\n`,
    )
  } finally {
    killChildren()
  }
}
