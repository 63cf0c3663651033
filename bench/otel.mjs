// What `listenjs/otel` costs on the push path, in one run. `npm run bench:otel` (builds first), or
// `node bench/otel.mjs [--quick]` after `npm run build`.
//
// Five hub processes (this file with `--serve <mode>`, Fastify + listenjs, all pinned to CPU 0 where
// taskset exists; only one works at a time) serve the same public resource `GET /items` (~330 bytes)
// and change it on `POST /items`. They differ only in OpenTelemetry:
//   none         no `instrument()` call;
//   noop         `instrument(hub)` with `@opentelemetry/api` loaded and no SDK: the API's no-op meter
//                and tracer;
//   sdk-metrics  a `MeterProvider` from `@opentelemetry/sdk-metrics`, with a
//                `PeriodicExportingMetricReader` (every 1000 ms) over an `InMemoryMetricExporter`,
//                registered with `metrics.setGlobalMeterProvider`; then `instrument(hub)`;
//   sdk-traces   the same, plus a `TracerProvider` from `@opentelemetry/sdk-trace` with a
//                `BatchSpanProcessor` (defaults) over an exporter that counts spans and drops them,
//                registered with `trace.setGlobalTracerProvider`, and an
//                `AsyncLocalStorageContextManager` (`@opentelemetry/context-async-hooks`) set with
//                `context.setGlobalContextManager`; then `instrument(hub)` (nothing passed: the global
//                providers are used). The spans exported per round show whether tracing was on;
//   sdk-untraced the SDKs and the context manager of `sdk-traces`, but `instrument(hub, { traces:
//                false })`: what the tracing SDK costs the app by itself, so that `sdk-traces` minus
//                this is what listenjs's own spans cost.
// One client process (this file with `--clients`, pinned to CPU 1) holds N `ws` subscribers of
// `/items` on each hub (spread over the source addresses 127.0.0.2–9) and makes the writes itself:
// W sequential `POST /items` over a keep-alive connection, each awaited until every one of that
// hub's N subscribers got its push. Loopback only. Two sizes, one after the other: N = 10 (the write
// path, where the instrumentation works, is most of a write's cost) and N = 500 (the fan-out is).
//
// Rounds are interleaved (one round = W writes on each hub in turn, the order rotated each round;
// the first round a warm-up, not counted, of 1000 writes at N = 10 for the JIT). Per round and mode:
// writes/s (W ÷ the time from the first POST to the last push of the last write, in the client), the
// hub's `process.cpuUsage()` (user + system, and user alone) over the round ÷ W, and p50/p99 of the
// time from just before a write's POST to its last subscriber's receipt. Each figure is the median
// over rounds (latencies: pooled over them), and each "vs none" the median over rounds of the ratio
// to `none` in the same round. Short rounds, many of them: a burst of other work on the host hits a
// round or two of one mode, which the medians leave out.
// At the end, in each hub (the last size's N sockets still open): `heapUsed` after a full GC, and the
// CPU of one metric collection (the SDK modes). Prints markdown and writes it with the raw results
// to .tmp/bench-otel/.
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setTimeout, clearTimeout } from 'node:timers'
import WebSocket from 'ws'
import { table } from './chart.mjs'
import {
  Child,
  killChildren,
  median,
  now,
  percentile,
  pin,
  post,
  serveCommands,
  sleep,
  stateBody,
  waitSubscriptions,
  SERVER_HOST,
  SOURCE_ADDRESSES,
} from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)
const HUB_PATH = '/listen'
const MODES = ['none', 'noop', 'sdk-metrics', 'sdk-untraced', 'sdk-traces']
const METRIC_INTERVAL_MS = 1000

// ---------------------------------------------------------------------------------------------
// The hub process (`node --expose-gc bench/otel.mjs --serve <mode>`)

/** Registers the mode's OpenTelemetry globals (before the hub exists); returns its counters. */
async function setUpOtel(mode) {
  const otel = {
    spans: 0,
    spanNames: {},
    metricExports: 0,
    flush: async () => {},
    reset: () => {},
    collect: undefined,
  }
  if (mode === 'none' || mode === 'noop') return otel
  const api = await import('@opentelemetry/api')
  const { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } =
    await import('@opentelemetry/sdk-metrics')
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({
    exporter: metricExporter,
    exportIntervalMillis: METRIC_INTERVAL_MS,
  })
  api.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
  // For the cost of one collection, measured at the end (the reader's own `collect()`).
  otel.collect = () => reader.collect()
  // The in-memory exporter keeps what it got: counted, then dropped at each round's start (as an
  // exporter that ships them would), so its memory does not grow over the run.
  otel.reset = () => {
    otel.metricExports += metricExporter.getMetrics().length
    metricExporter.reset()
  }
  if (mode === 'sdk-metrics') return otel
  const { BatchSpanProcessor, TracerProvider } = await import('@opentelemetry/sdk-trace')
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks')
  const spanExporter = {
    export(spans, done) {
      otel.spans += spans.length
      for (const span of spans) otel.spanNames[span.name] = (otel.spanNames[span.name] ?? 0) + 1
      done({ code: 0 }) // ExportResultCode.SUCCESS (@opentelemetry/core)
    },
    shutdown: async () => {},
    forceFlush: async () => {},
  }
  const tracerProvider = new TracerProvider({
    spanProcessors: [new BatchSpanProcessor({ exporter: spanExporter })],
  })
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  api.trace.setGlobalTracerProvider(tracerProvider)
  otel.flush = () => tracerProvider.forceFlush()
  return otel
}

async function serve(mode) {
  const gc = globalThis.gc
  if (typeof gc !== 'function') throw new Error('run the hub with --expose-gc')
  if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`)
  const otel = await setUpOtel(mode)
  const { default: Fastify } = await import('fastify')
  const { default: listenjs } = await import('listenjs/fastify')
  const app = Fastify({ logger: false })
  await app.register(listenjs, {
    path: HUB_PATH,
    // No ping round inside a measurement (as in bench/server.mjs).
    heartbeat: { intervalMs: 900_000, timeoutMs: 60_000 },
  })
  let state = { it: 0, ts: 0 }
  app.get('/items', { config: { listenjs: { public: true } } }, async () =>
    stateBody('/items', state.it, state.ts),
  )
  app.post('/items', async (request, reply) => {
    state = { it: request.body.it, ts: now() }
    reply.code(201)
    return { ok: true }
  })
  await app.listen({ port: 0, host: SERVER_HOST })
  const hub = app.listenjs
  if (mode !== 'none') {
    const { instrument } = await import('listenjs/otel')
    instrument(hub, { traces: mode !== 'sdk-untraced' })
  }
  let cpuAt
  let spansAt = 0
  serveCommands({
    info: () => ({ port: app.server.address().port, pid: process.pid }),
    stats: () => ({ subscriptions: hub.stats().subscriptions }),
    // A round's window: a full GC and a short settle outside it; inside it, at its end, the spans
    // still queued are exported and the young generation is scavenged, so the round pays for both.
    cpuStart: async () => {
      otel.reset()
      gc()
      await sleep(20)
      spansAt = otel.spans
      cpuAt = process.cpuUsage()
      return true
    },
    cpuStop: async () => {
      await otel.flush()
      gc({ type: 'minor' })
      const d = process.cpuUsage(cpuAt)
      return { user: d.user, system: d.system, total: d.user + d.system, spans: otel.spans - spansAt }
    },
    heap: async () => {
      otel.reset()
      await otel.flush()
      gc()
      await sleep(50)
      gc()
      const m = process.memoryUsage()
      // CPU of one metric collection (the mean of 20 in a row, N sockets open).
      let collectUs
      if (otel.collect) {
        const c0 = process.cpuUsage()
        for (let k = 0; k < 20; k++) await otel.collect()
        const c = process.cpuUsage(c0)
        collectUs = (c.user + c.system) / 20
      }
      return {
        collectUs,
        heapUsed: m.heapUsed,
        rss: m.rss,
        spans: otel.spans,
        spanNames: otel.spanNames,
        metricExports: otel.metricExports,
      }
    },
  })
}

// ---------------------------------------------------------------------------------------------
// The client process (`node bench/otel.mjs --clients`)

async function clients() {
  // Loopback source addresses other than 127.0.0.1 exist on Linux; elsewhere, fall back to 127.0.0.1.
  const sources = await new Promise((resolve) => {
    const probe = net.createServer()
    probe.once('error', () => resolve([SERVER_HOST]))
    probe.listen(0, SOURCE_ADDRESSES[0], () => probe.close(() => resolve(SOURCE_ADDRESSES)))
  })
  const groups = new Map() // port → { clients, agent, armed }
  let unexpected = 0

  /** Every message of a subscriber, with its receipt time. Cheap: only the change number is read. */
  const onMessage = (group, client, t, text) => {
    if (text.startsWith('{"type":"data"')) {
      if (text.includes('"snapshot":true')) {
        client.ready?.()
        return
      }
      const armed = group.armed
      const match = /"it":(\d+)/.exec(text)
      if (!armed || !match || Number(match[1]) !== armed.it || client.lastIt === armed.it) return
      client.lastIt = armed.it
      armed.last = t
      if (++armed.count === armed.expected) armed.done?.()
    } else if (text.startsWith('{"type":"welcome"')) client.welcome?.()
    else if (text.startsWith('{"type":"ping"')) client.pong?.()
    else if (!text.startsWith('{"type":"subscribed"') && unexpected++ < 5) {
      console.error(`otel clients: unexpected ${text.slice(0, 200)}`)
    }
  }

  const connect = (port, group, localAddress) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${SERVER_HOST}:${port}${HUB_PATH}`, 'listenjs.v1', {
        localAddress,
        perMessageDeflate: false,
        handshakeTimeout: 10_000,
      })
      const client = { close: () => ws.terminate(), lastIt: undefined }
      const timer = setTimeout(() => reject(new Error('WebSocket: no snapshot in 15 s')), 15_000)
      client.welcome = () => ws.send('{"type":"subscribe","path":"/items"}')
      client.pong = () => ws.send('{"type":"pong"}')
      client.ready = () => {
        clearTimeout(timer)
        client.ready = undefined
        resolve(client)
      }
      ws.on('error', reject)
      ws.on('message', (data) => onMessage(group, client, now(), data.toString('utf8')))
    })

  serveCommands({
    /** Opens `n` subscribers of the hub at `port` (50 at once), each waited for until its snapshot. */
    connect: async ({ port, n }) => {
      const group = {
        clients: [],
        agent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
        armed: undefined,
      }
      groups.set(port, group)
      for (let i = 0; i < n; i += 50) {
        const batch = []
        for (let k = i; k < Math.min(n, i + 50); k++)
          batch.push(connect(port, group, sources[k % sources.length]))
        group.clients.push(...(await Promise.all(batch)))
      }
      return { connected: group.clients.length }
    },
    /**
     * `writes` sequential writes on the hub at `port`, numbered from `firstIt`, each awaited until
     * every subscriber got it (a write not delivered in `timeoutMs` ends the round).
     */
    run: async ({ port, writes, firstIt, timeoutMs }) => {
      const group = groups.get(port)
      const server = { port, agent: group.agent }
      const expected = group.clients.length
      const lat = []
      let delivered = 0
      let statusErrors = 0
      let timedOut = false
      const cpu0 = process.cpuUsage()
      const t0 = now()
      for (let w = 0; w < writes; w++) {
        const armed = { it: firstIt + w, expected, count: 0, last: NaN, done: undefined }
        const all = new Promise((resolve) => {
          const timer = setTimeout(resolve, timeoutMs)
          armed.done = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        group.armed = armed
        const start = now()
        const [status] = await Promise.all([post(server, '/items', armed.it), all])
        if (status !== 201) statusErrors++
        delivered += armed.count
        if (armed.count < expected) {
          timedOut = true
          break
        }
        lat.push(armed.last - start)
      }
      const elapsedMs = now() - t0
      group.armed = undefined
      const cpu = process.cpuUsage(cpu0)
      return {
        writes: lat.length,
        elapsedMs,
        lat,
        delivered,
        expected: expected * (lat.length + (timedOut ? 1 : 0)),
        statusErrors,
        timedOut,
        clientCpuUs: cpu.user + cpu.system,
      }
    },
    close: () => {
      for (const group of groups.values()) {
        for (const client of group.clients) client.close()
        group.agent.destroy()
      }
      groups.clear()
      return true
    },
  })
}

// ---------------------------------------------------------------------------------------------
// The orchestrator

/** One N: N subscribers on every hub, then interleaved rounds of W writes on each (warm-ups first). */
async function measureN(
  hubs,
  gen,
  { n, writes, warmupWrites, rounds: maxRounds, warmups, deadline, log, firstIt },
) {
  const t0 = now()
  for (const hub of hubs) {
    const { connected } = await gen.call('connect', { port: hub.port, n }, 120_000)
    if (connected !== n) throw new Error(`${hub.name}: ${connected} subscribers connected, expected ${n}`)
    await waitSubscriptions(hub, n, 30_000)
  }
  log(`  N=${n}: ${hubs.length} × ${n} subscribers in ${((now() - t0) / 1000).toFixed(1)} s`)
  const rounds = Object.fromEntries(MODES.map((mode) => [mode, []]))
  let it = firstIt
  let round = 0
  // Stop early past the deadline, but never with fewer than two counted rounds.
  for (; round < maxRounds && (round < warmups + 2 || now() < deadline); round++) {
    const order = MODES.map((_, k) => MODES[(k + round) % MODES.length])
    for (const mode of order) {
      const hub = hubs[MODES.indexOf(mode)]
      const count = round < warmups ? warmupWrites : writes
      await hub.call('cpuStart')
      const got = await gen.call(
        'run',
        { port: hub.port, writes: count, firstIt: it + 1, timeoutMs: 10_000 },
        count * 200 + 20_000,
      )
      const cpu = await hub.call('cpuStop', {}, 30_000)
      it += count
      const lat = [...got.lat].sort((a, b) => a - b)
      const r = {
        round,
        warmup: round < warmups,
        writes: got.writes,
        writesPerS: got.writes / (got.elapsedMs / 1000),
        cpuUs: cpu.total / Math.max(1, got.writes),
        userUs: cpu.user / Math.max(1, got.writes),
        p50: percentile(lat, 50),
        p99: percentile(lat, 99),
        lat,
        spans: cpu.spans,
        delivered: got.delivered,
        expected: got.expected,
        statusErrors: got.statusErrors,
        timedOut: got.timedOut,
        clientCpuUs: got.clientCpuUs / Math.max(1, got.writes),
      }
      rounds[mode].push(r)
      log(
        `  N=${n} round ${round}${r.warmup ? ' (warm-up)' : ''} ${mode}: ${r.writesPerS.toFixed(0)} writes/s, ${r.cpuUs.toFixed(0)} µs CPU/write, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.spans} spans, ${r.delivered}/${r.expected}`,
      )
      if (got.timedOut || got.statusErrors) throw new Error(`${mode}: a write was not delivered or failed`)
    }
  }
  return { n, writes, rounds: round, lastIt: it, byMode: rounds }
}

export async function otelBench({ quick = false, log = console.error } = {}) {
  // Per size: subscribers per hub, writes per round and mode (and in a warm-up round), rounds (warm-ups
  // included) and its share of the time budget. The small N first, with a long warm-up (the JIT), then
  // N = 500 on the warm hubs.
  const config = quick
    ? {
        sizes: [
          { n: 5, writes: 50, warmupWrites: 100, rounds: 3, warmups: 1, share: 0.3 },
          { n: 100, writes: 50, warmupWrites: 50, rounds: 3, warmups: 1, share: 0.7 },
        ],
        budgetS: 30,
      }
    : {
        sizes: [
          { n: 10, writes: 100, warmupWrites: 1000, rounds: 17, warmups: 1, share: 0.3 },
          { n: 500, writes: 50, warmupWrites: 100, rounds: 13, warmups: 1, share: 0.7 },
        ],
        budgetS: 80,
      }
  const results = {
    quick,
    config: { ...config, metricIntervalMs: METRIC_INTERVAL_MS },
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
    },
    date: new Date().toISOString(),
    loadBefore: os.loadavg(),
  }
  const t0 = now()
  const file = fileURLToPath(import.meta.url)
  const hubs = MODES.map(
    (mode) => new Child(file, ['--serve', mode], { execArgv: ['--expose-gc'], name: `hub ${mode}` }),
  )
  const gen = new Child(file, ['--clients'], { name: 'otel clients' })
  try {
    for (const hub of hubs) hub.port = (await hub.call('info', {}, 30_000)).port
    results.pinned = hubs.every((hub) => pin(hub, 0)) && pin(gen, 1)
    log(`otel: ${MODES.join(', ')}${results.pinned ? ' (hubs on CPU 0, clients on CPU 1)' : ''}`)
    results.sizes = []
    let lastIt = 0
    let heaps
    for (const [i, size] of config.sizes.entries()) {
      // This size's share of what is left of the budget (the last size gets all of it).
      const shares = config.sizes.slice(i).reduce((sum, s) => sum + s.share, 0)
      const deadline = now() + (size.share / shares) * (config.budgetS * 1000 - (now() - t0))
      const m = await measureN(hubs, gen, { ...size, deadline, log, firstIt: lastIt })
      lastIt = m.lastIt
      // The heap once the last size ran, its subscribers still connected.
      if (size === config.sizes.at(-1))
        heaps = await Promise.all(hubs.map((hub) => hub.call('heap', {}, 30_000)))
      await gen.call('close')
      results.sizes.push({
        n: m.n,
        writes: m.writes,
        rounds: m.rounds,
        modes: MODES.map((mode) => summarize(mode, m.byMode[mode], m.byMode.none)),
      })
    }
    results.heap = Object.fromEntries(MODES.map((mode, i) => [mode, heaps[i]]))
  } finally {
    await Promise.all([...hubs.map((hub) => hub.stop()), gen.stop()])
  }
  results.seconds = (now() - t0) / 1000
  results.loadAfter = os.loadavg()
  return results
}

/**
 * A mode's rounds, summed up: each figure the median over the counted rounds; against `none`, the
 * median of the per-round ratios (and differences) to `none`'s same round, which cancels drift.
 */
function summarize(mode, rounds, baseRounds) {
  const counted = rounds.filter((r) => !r.warmup)
  const base = new Map(baseRounds.map((r) => [r.round, r]))
  const pick = (key) => counted.map((r) => r[key])
  const ratio = (key) => median(counted.map((r) => r[key] / base.get(r.round)[key])) - 1
  const diff = (key) => median(counted.map((r) => r[key] - base.get(r.round)[key]))
  const latencies = counted.flatMap((r) => r.lat).sort((a, b) => a - b)
  const baseLatencies = baseRounds
    .filter((r) => !r.warmup)
    .flatMap((r) => r.lat)
    .sort((a, b) => a - b)
  return {
    mode,
    rounds: counted.length,
    writes: counted.reduce((s, r) => s + r.writes, 0),
    writesPerS: median(pick('writesPerS')),
    writesPerSRange: [Math.min(...pick('writesPerS')), Math.max(...pick('writesPerS'))],
    cpuUs: median(pick('cpuUs')),
    cpuUsRange: [Math.min(...pick('cpuUs')), Math.max(...pick('cpuUs'))],
    userUs: median(pick('userUs')),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    vsNone: {
      cpu: ratio('cpuUs'),
      cpuUs: diff('cpuUs'),
      cpuRange: [
        Math.min(...counted.map((r) => r.cpuUs - base.get(r.round).cpuUs)),
        Math.max(...counted.map((r) => r.cpuUs - base.get(r.round).cpuUs)),
      ],
      user: ratio('userUs'),
      userUs: diff('userUs'),
      writesPerS: ratio('writesPerS'),
      p50: percentile(latencies, 50) / percentile(baseLatencies, 50) - 1,
    },
    spansPerRound: median(pick('spans')),
    spansPerRoundAll: pick('spans'),
    delivered: counted.reduce((s, r) => s + r.delivered, 0),
    expected: counted.reduce((s, r) => s + r.expected, 0),
    clientCpuUs: median(pick('clientCpuUs')),
    perRound: rounds.map((r) => ({ ...r, lat: undefined })), // the latencies are pooled above
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '—')
const us = (v) => (Number.isFinite(v) ? v.toFixed(v < 100 ? 1 : 0) : '—')
const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 2 : 1)} ms` : '—')
const mib = (v) => `${(v / 2 ** 20).toFixed(1)} MiB`
const signed = (v, digits = 1) =>
  Number.isFinite(v) ? `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(digits)}` : '—'
const pct = (v) => (Number.isFinite(v) ? `${signed(v * 100)} %` : '—')
const load = (r) => `${r.loadBefore?.[0]?.toFixed(1) ?? '—'} / ${r.loadAfter?.[0]?.toFixed(1) ?? '—'}`

export function renderOtel(r) {
  const rows = []
  for (const size of r.sizes) {
    const base = size.modes.find((m) => m.mode === 'none')
    for (const m of size.modes) {
      const isBase = m === base
      rows.push([
        int(size.n),
        `\`${m.mode}\``,
        int(m.spansPerRound),
        `**${us(m.cpuUs)}**`,
        isBase ? '—' : `**${pct(m.vsNone.cpu)}** (${signed(m.vsNone.cpuUs, 0)} µs)`,
        isBase ? '—' : `${signed(m.vsNone.cpuRange[0], 0)} to ${signed(m.vsNone.cpuRange[1], 0)} µs`,
        us(m.userUs),
        isBase ? '—' : `${pct(m.vsNone.user)} (${signed(m.vsNone.userUs, 0)} µs)`,
        int(m.writesPerS),
        isBase ? '—' : pct(m.vsNone.writesPerS),
        ms(m.p50),
        isBase ? '—' : pct(m.vsNone.p50),
        ms(m.p99),
        us(m.clientCpuUs),
      ])
    }
  }
  const last = r.sizes.at(-1)
  const heapBase = r.heap.none.heapUsed
  const heapRows = MODES.map((mode) => {
    const h = r.heap[mode]
    return [
      `\`${mode}\``,
      mib(h.heapUsed),
      mode === 'none' ? '—' : `${signed((h.heapUsed - heapBase) / 2 ** 20)} MiB`,
      int(h.spans),
      int(h.metricExports),
      h.collectUs === undefined ? '—' : `${us(h.collectUs)} µs`,
    ]
  })
  const names = Object.entries(r.heap['sdk-traces'].spanNames)
    .map(([name, n]) => `\`${name}\` × ${int(n)}`)
    .join(', ')
  const out = []
  out.push(
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.os}, Node ${r.machine.node}; load average (1 min) ${load(r)} before / after. Date: ${r.date}. ${r.quick ? '**Quick run.** ' : ''}${r.seconds.toFixed(0)} s${r.pinned ? '; the five hubs pinned to CPU 0, the clients to CPU 1' : ''}.`,
  )
  out.push(
    table(
      [
        'N',
        'mode',
        'spans exported / round',
        'hub CPU µs / write',
        'vs none',
        'vs none, per round (min to max)',
        'of which user µs',
        'vs none',
        'writes/s',
        'vs none',
        'write → last push p50',
        'vs none',
        'p99',
        'client CPU µs / write',
      ],
      rows,
    ),
  )
  out.push(
    r.sizes
      .map((size) => {
        const all = size.modes.every((m) => m.delivered === m.expected)
        const pushes = size.modes.reduce((sum, m) => sum + m.delivered, 0)
        const expected = size.modes.reduce((sum, m) => sum + m.expected, 0)
        return `N = ${int(size.n)}: ${size.modes[0].rounds} counted rounds × ${int(size.writes)} writes per mode; ${all ? `every push delivered (${int(pushes)})` : `**${int(pushes)} of ${int(expected)} pushes delivered**`}.`
      })
      .join(' '),
  )
  out.push(
    `Each hub at the end of the run (full GC, its ${int(last.n)} subscribers still connected):\n\n` +
      table(
        [
          'mode',
          'heap used',
          'vs none',
          'spans exported (run)',
          'metric collections (run)',
          'CPU of one collection',
        ],
        heapRows,
      ),
  )
  out.push(
    `Spans \`sdk-traces\` exported over the whole run (snapshots included): ${names || '**none** (the hub made no spans: tracing was not active)'}.`,
  )
  return out.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Standalone

async function main() {
  const quick = process.argv.includes('--quick')
  const limitMs = quick ? 60_000 : 170_000
  const hardLimit = setTimeout(() => {
    console.error(`otel: hard time limit (${limitMs / 1000} s) reached; killing everything`)
    killChildren()
    process.exit(2)
  }, limitMs)
  process.on('exit', killChildren)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      killChildren()
      process.exit(130)
    })
  }
  const t0 = now()
  const log = (...args) => console.error(`[${((now() - t0) / 1000).toFixed(1).padStart(6)} s]`, ...args)
  let results
  try {
    results = await otelBench({ quick, log })
  } catch (error) {
    console.error('otel: failed:', error)
    killChildren()
    process.exit(1)
  }
  clearTimeout(hardLimit)
  const outDir = path.join(root, '.tmp', 'bench-otel')
  mkdirSync(outDir, { recursive: true })
  const markdown = renderOtel(results)
  writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 1))
  writeFileSync(path.join(outDir, 'otel.md'), markdown)
  console.log(markdown)
  console.error(`otel: otel.md and results.json in ${path.relative(process.cwd(), outDir) || '.'}`)
}

if (process.argv[2] === '--serve') await serve(process.argv[3])
else if (process.argv[2] === '--clients') await clients()
else if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href)
  await main()
