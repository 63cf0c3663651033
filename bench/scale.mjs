// Many sockets, many subscriptions (issue 14, scenario 3): `node bench/scale.mjs [--quick]`.
//
// One server process per system holds N sockets (N = 1,000, 5,000, 10,000, 19,000; quick: 500,
// 1,000), each subscribed to 5 paths /p/<k> drawn from 500 (per socket, deterministically: see
// `scalePathsOf` in bench/generator.mjs), and is measured at every N for
//   - memory: heap and RSS per socket with one subscription, and per additional subscription;
//   - the time (and server CPU) to subscribe all 5 N subscriptions of N open sockets;
//   - server CPU per delivered message: a few POSTs over several paths per window, each delivered
//     to that path's ~N·5/500 subscribers; latency and last delivery too.
// Systems: raw `ws` (pre-framed, `?mode=frame`), Socket.IO (rooms) and listenjs on Fastify (add
// Express and Koa with `--systems=raw,sio,fastify,express,koa`); every server is bench/server.mjs,
// every client is in bench/generator.mjs, spread over the source addresses 127.0.0.2–9.
//
// Exports `scalePhase({ quick, log })` (the measurement; JSON-serializable results) and
// `renderScale(results)` ({ markdown, svgs }). Standalone it prints the markdown and writes the
// SVGs, the markdown and the raw results to .tmp/bench-scale/ (`--from=<results.json>` only
// re-renders).
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setTimeout, clearTimeout } from 'node:timers'
import { esc, table } from './chart.mjs'
import { all, Child, killChildren, median, now, percentile, post, sleep, waitSubscriptions } from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)

const KIND = { raw: 'raw', sio: 'sio', fastify: 'listen', express: 'listen', koa: 'listen' }
const LABEL = {
  raw: 'raw ws, pre-framed buffer',
  sio: 'Socket.IO 4, rooms',
  fastify: 'listenjs (Fastify)',
  express: 'listenjs (Express)',
  koa: 'listenjs (Koa)',
}
const QUERY = { raw: '?mode=frame' }
const COLORS = { raw: '#555', sio: '#d98c00', fastify: '#1f6fd1', express: '#2a9d4b', koa: '#b03a9e' }

/** Subscriptions per socket, and the paths they are drawn from (/p/0 … /p/499). */
const PER_SOCKET = 5
const PATH_COUNT = 500
const SEED = 1

export const SCALE_CONFIG = {
  quick: {
    ns: [500, 1000],
    generators: 2,
    warm: 20,
    rounds: 4, // the first is a warm-up, not counted
    pathsPerWindow: 10,
    settleMs: 25,
    calibrations: 3,
    gapMs: 20,
    collectMs: 10_000,
  },
  full: {
    ns: [1000, 5000, 10_000, 19_000],
    generators: 6,
    warm: 20,
    rounds: 8,
    pathsPerWindow: 10,
    settleMs: 50,
    calibrations: 5,
    gapMs: 60,
    collectMs: 30_000,
  },
}

// ---------------------------------------------------------------------------------------------
// Processes and requests

async function startServer(name) {
  const child = new Child(path.join(here, 'server.mjs'), [name], {
    execArgv: ['--expose-gc'],
    name: `server ${name}`,
  })
  const info = await child.call('info', {}, 30_000)
  child.port = info.port
  child.system = name
  child.agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  return child
}

/** The paths a window changes in round `round`: `count` distinct paths, different in every round. */
function windowPaths(round, count) {
  // 37 is coprime with 500: k ↦ 37 k mod 500 runs over every path before it repeats one.
  return Array.from({ length: count }, (_, j) => `/p/${((round * count + j) * 37) % PATH_COUNT}`)
}

// ---------------------------------------------------------------------------------------------
// The measurement

/**
 * Measures every system at every N (see the module comment); returns the raw results. `systems`
 * defaults to raw, sio, fastify. Bounded: every IPC call has a timeout, and the children are
 * stopped at the end, or on failure.
 */
export async function scalePhase({ quick = false, log = console.error, systems, ns } = {}) {
  const config = { ...(quick ? SCALE_CONFIG.quick : SCALE_CONFIG.full) }
  if (ns) config.ns = ns
  const names = systems ?? ['raw', 'sio', 'fastify']
  const maxN = Math.max(...config.ns)
  const warm = config.warm
  // Subscriptions of the warm-up sockets: two cover every path, the others have their five.
  const warmSubs = PATH_COUNT + (warm - 2) * PER_SOCKET
  // Each client socket is a file descriptor in its generator: at most ~10,000 per generator.
  const totalSockets = names.length * (warm + maxN)
  const generatorCount = Math.max(config.generators, Math.ceil(totalSockets / 10_000))
  const started = now()
  const servers = {}
  const gens = []
  let changeNumber = 5000
  const results = {
    config: { ...config, generators: generatorCount, perSocket: PER_SOCKET, pathCount: PATH_COUNT },
    systems: names,
    machine: {
      cpus: `${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} cores`,
      memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
      node: process.version,
      platform: `${os.type()} ${os.release()} ${os.arch()}`,
    },
    date: new Date().toISOString(),
    baseline: {},
    steps: [], // one per N: { n, memory: {system: …}, subscribe: {system: …}, delivery: {system: …} }
  }
  try {
    for (const name of names) servers[name] = await startServer(name)
    for (let g = 0; g < generatorCount; g++) {
      gens.push(
        new Child(path.join(here, 'generator.mjs'), [String(g), String(generatorCount)], {
          name: `generator ${g}`,
        }),
      )
    }
    const base = (name) => ({ system: name, kind: KIND[name], port: servers[name].port })
    const scaleArgs = { perSocket: PER_SOCKET, pathCount: PATH_COUNT, seed: SEED }

    // Warm-up: two sockets subscribed to 250 paths each (every path then exists on the server
    // before N grows: what is measured per subscription is not the first subscriber's share of a
    // path), a few sockets with their five paths, and one change on every system, so that
    // one-time allocations (code, the resources of the paths) are in the baseline.
    const all500 = Array.from({ length: PATH_COUNT }, (_, k) => `/p/${k}`)
    for (const name of names) {
      for (const [lo, paths] of [
        [0, all500.slice(0, PATH_COUNT / 2)],
        [1, all500.slice(PATH_COUNT / 2)],
      ]) {
        await all(gens, 'scaleConnect', { ...base(name), ...scaleArgs, lo, hi: lo + 1, paths }, 120_000)
      }
      await all(
        gens,
        'scaleConnect',
        { ...base(name), ...scaleArgs, lo: 2, hi: warm, first: PER_SOCKET },
        120_000,
      )
      await waitSubscriptions(servers[name], warmSubs)
      const it = ++changeNumber
      for (const p of windowPaths(0, config.pathsPerWindow))
        await post(servers[name], `${p}${QUERY[name] ?? ''}`, it)
      results.baseline[name] = await servers[name].call('mem', {}, 60_000)
    }
    log(`scale: ${names.join(', ')} warm (${warm} sockets each), ${generatorCount} generators`)

    const previous = Object.fromEntries(names.map((name) => [name, results.baseline[name]]))
    let prevN = 0
    for (const n of config.ns) {
      const step = { n, memory: {}, subscribe: {}, delivery: {}, emptyWindowUs: {} }
      const lo = warm + prevN
      const hi = warm + n
      const added = n - prevN

      // 1. Memory, one system at a time: the new sockets with one subscription each, then their
      //    four others.
      for (const name of names) {
        const server = servers[name]
        const t0 = now()
        const opened = await all(
          gens,
          'scaleConnect',
          { ...base(name), ...scaleArgs, lo, hi, first: 1 },
          300_000,
        )
        const connectMs = now() - t0
        await waitSubscriptions(server, warmSubs + prevN * PER_SOCKET + added)
        const one = await server.call('mem', {}, 60_000)
        await all(gens, 'scaleSubscribe', { system: name, lo, hi, from: 1, to: PER_SOCKET }, 300_000)
        await waitSubscriptions(server, warmSubs + n * PER_SOCKET)
        const five = await server.call('mem', {}, 60_000)
        const before = previous[name]
        const b = results.baseline[name]
        step.memory[name] = {
          opened: opened.reduce((s, o) => s + o.opened, 0),
          connectMs,
          heapPerSocket1: (one.heapUsed - before.heapUsed) / added,
          rssPerSocket1: (one.rss - before.rss) / added,
          heapPerExtraSub: (five.heapUsed - one.heapUsed) / (added * (PER_SOCKET - 1)),
          rssPerExtraSub: (five.rss - one.rss) / (added * (PER_SOCKET - 1)),
          heapPerSocket5: (five.heapUsed - b.heapUsed) / n,
          rssPerSocket5: (five.rss - b.rss) / n,
          heapUsed: five.heapUsed,
          rss: five.rss,
          one,
          five,
        }
        previous[name] = five
        log(
          `scale N=${n} ${name}: connect ${added} in ${Math.round(connectMs)} ms; heap/socket (1 sub) ` +
            `${Math.round(step.memory[name].heapPerSocket1)} B, per extra sub ${Math.round(step.memory[name].heapPerExtraSub)} B`,
        )
      }

      // 2. Time to subscribe them all: every socket drops its 5 subscriptions, then all N × 5 are
      //    made again at once (one system at a time; the server's CPU over that window too).
      for (const name of names) {
        const server = servers[name]
        await all(gens, 'scaleUnsubscribe', { system: name, lo: warm, hi }, 120_000)
        await waitSubscriptions(server, warmSubs)
        await server.call('cpuStart', { collect: true, settleMs: config.settleMs })
        const t0 = now()
        const parts = await all(
          gens,
          'scaleSubscribe',
          { system: name, lo: warm, hi, from: 0, to: PER_SOCKET },
          300_000,
        )
        const ms = now() - t0
        const cpu = await server.call('cpuStop')
        await waitSubscriptions(server, warmSubs + n * PER_SOCKET)
        const subscriptions = parts.reduce((s, p) => s + p.subscriptions, 0)
        step.subscribe[name] = {
          subscriptions,
          ms,
          perSecond: subscriptions / (ms / 1000),
          cpuUs: cpu.total,
          cpuPerSubUs: cpu.total / subscriptions,
        }
        log(`scale N=${n} ${name}: ${subscriptions} subscriptions in ${Math.round(ms)} ms`)
      }

      // 3. CPU per delivered message: rounds of one window per system, in an order rotated every
      //    round; each window POSTs `pathsPerWindow` paths at once.
      const overhead = {}
      await Promise.all(
        names.map(async (name) => {
          const samples = []
          for (let i = 0; i < config.calibrations; i++) {
            await servers[name].call('cpuStart', { collect: true, settleMs: config.settleMs })
            await sleep(20)
            samples.push((await servers[name].call('cpuStop')).total)
          }
          overhead[name] = median(samples)
        }),
      )
      step.emptyWindowUs = overhead
      const windows = Object.fromEntries(names.map((name) => [name, []]))
      for (let round = 0; round < config.rounds; round++) {
        const shift = round % names.length
        const order = [...names.slice(shift), ...names.slice(0, shift)]
        const paths = windowPaths(round + 1, config.pathsPerWindow)
        for (const name of order) {
          const server = servers[name]
          const it = ++changeNumber
          // Every subscribed socket of this system, the warm-up ones included, gets its frames.
          const armed = await all(gens, 'scaleArm', { system: name, it, lo: 0, hi, paths })
          const expected = armed.reduce((s, a) => s + a.expected, 0)
          await server.call('cpuStart', { collect: true, settleMs: config.settleMs })
          const collected = all(gens, 'collect', { timeoutMs: config.collectMs }, config.collectMs + 10_000)
          const statuses = await Promise.all(paths.map((p) => post(server, `${p}${QUERY[name] ?? ''}`, it)))
          const bad = statuses.find((s) => s !== 201)
          if (bad !== undefined) throw new Error(`POST on ${name} answered ${bad}`)
          const got = await collected
          const cpu = await server.call('cpuStop')
          const lat = got.flatMap((p) => p.lat)
          let last = -Infinity
          for (const v of lat) if (v > last) last = v
          if (round > 0) {
            windows[name].push({
              cpuUs: Math.max(0, cpu.total - overhead[name]),
              rawCpuUs: cpu.total,
              systemUs: cpu.system,
              received: got.reduce((s, p) => s + p.received, 0),
              expected,
              lat,
              last: lat.length ? last : NaN,
            })
          }
          await sleep(config.gapMs)
        }
      }
      for (const name of names) {
        const ws = windows[name]
        const lat = ws.flatMap((w) => w.lat).sort((a, b) => a - b)
        const perMsg = ws.map((w) => w.cpuUs / w.received)
        step.delivery[name] = {
          windows: ws.length,
          cpuPerMsg: median(perMsg),
          cpuPerMsgMin: Math.min(...perMsg),
          cpuPerMsgMax: Math.max(...perMsg),
          kernelShare: median(ws.map((w) => w.systemUs / w.rawCpuUs)),
          messagesPerWindow: median(ws.map((w) => w.expected)),
          p50: percentile(lat, 50),
          p99: percentile(lat, 99),
          last: median(ws.map((w) => w.last)),
          received: ws.reduce((s, w) => s + w.received, 0),
          expected: ws.reduce((s, w) => s + w.expected, 0),
        }
      }
      for (const name of names) {
        step.memory[name].hub = (await servers[name].call('stats')).hub ?? undefined
      }
      const counters = await all(gens, 'counters', {})
      step.generatorErrors = counters.reduce((s, c) => s + c.errors + c.closedEarly, 0)
      log(
        `scale N=${n}: µs/msg ${names.map((name) => `${name} ${step.delivery[name].cpuPerMsg.toFixed(2)}`).join(', ')} ` +
          `(${((now() - started) / 1000).toFixed(0)} s so far)`,
      )
      results.steps.push(step)
      prevN = n
    }
    results.seconds = (now() - started) / 1000
    return results
  } finally {
    for (const name of Object.keys(servers)) servers[name].agent.destroy()
    await Promise.all([...Object.values(servers), ...gens].map((c) => c.stop().catch(() => {})))
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering

const f = (v, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : '–')
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–')
const ratio = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–')
const bytes = (v) => (Number.isFinite(v) ? `${Math.round(v).toLocaleString('en')} B` : '–')
const mib = (v) => (Number.isFinite(v) ? `${(v / 2 ** 20).toFixed(1)} MiB` : '–')
const LISTENJS = ['fastify', 'express', 'koa']

function stepTable(results, step) {
  const m = step.memory
  const s = step.subscribe
  const d = step.delivery
  const head = [
    'system',
    'heap / socket, 1 subscription',
    '× raw ws',
    'heap / additional subscription',
    'RSS / socket, 1 subscription',
    'RSS / additional subscription',
    'heap at N (5 subs each)',
    'RSS at N',
    `time to subscribe all ${int(step.n * PER_SOCKET)}`,
    'subscriptions/s',
    'server CPU µs / subscription',
    'CPU µs / delivered msg (min–max)',
    '× raw ws',
    '× Socket.IO',
    'msgs / window',
    'latency p50 / p99 ms',
    'last delivery ms',
    'delivered / expected',
  ]
  const rows = results.systems.map((name) => [
    LABEL[name],
    bytes(m[name].heapPerSocket1),
    ratio(m[name].heapPerSocket1 / m.raw?.heapPerSocket1),
    bytes(m[name].heapPerExtraSub),
    bytes(m[name].rssPerSocket1),
    bytes(m[name].rssPerExtraSub),
    mib(m[name].heapUsed),
    mib(m[name].rss),
    `${int(s[name].ms)} ms`,
    int(s[name].perSecond),
    f(s[name].cpuPerSubUs, 1),
    `${f(d[name].cpuPerMsg)} (${f(d[name].cpuPerMsgMin)}–${f(d[name].cpuPerMsgMax)})`,
    ratio(d[name].cpuPerMsg / d.raw?.cpuPerMsg),
    ratio(d[name].cpuPerMsg / d.sio?.cpuPerMsg),
    int(d[name].messagesPerWindow),
    `${f(d[name].p50, 1)} / ${f(d[name].p99, 1)}`,
    f(d[name].last, 1),
    `${int(d[name].received)} / ${int(d[name].expected)}${d[name].received === d[name].expected ? '' : ' ⚠'}`,
  ])
  return table(head, rows)
}

/**
 * Memory over every step at once (the most sockets, the least noise): Σ growth / Σ new sockets, with
 * the growth of each step measured as in the per-N rows.
 */
export function overallMemory(results) {
  const out = {}
  for (const name of results.systems) {
    let added = 0
    let heap1 = 0
    let rss1 = 0
    let heapSubs = 0
    let rssSubs = 0
    let prev = results.baseline[name]
    let prevN = 0
    for (const step of results.steps) {
      const m = step.memory[name]
      added += step.n - prevN
      heap1 += m.one.heapUsed - prev.heapUsed
      rss1 += m.one.rss - prev.rss
      heapSubs += m.five.heapUsed - m.one.heapUsed
      rssSubs += m.five.rss - m.one.rss
      prev = m.five
      prevN = step.n
    }
    out[name] = {
      sockets: added,
      heapPerSocket1: heap1 / added,
      rssPerSocket1: rss1 / added,
      heapPerExtraSub: heapSubs / (added * (PER_SOCKET - 1)),
      rssPerExtraSub: rssSubs / (added * (PER_SOCKET - 1)),
    }
  }
  return out
}

function targetRows(results) {
  const rows = []
  const listen = results.systems.filter((s) => LISTENJS.includes(s))
  const fmt = (name, v) => `${name === 'fastify' ? 'Fastify' : name === 'express' ? 'Express' : 'Koa'} ${v}`
  const overall = {
    n: `all steps (0 → ${int(Math.max(...results.config.ns))})`,
    memory: overallMemory(results),
  }
  for (const step of [overall, ...results.steps]) {
    const m = step.memory
    if (m.raw) {
      const values = listen.map((name) => m[name].heapPerSocket1 / m.raw.heapPerSocket1)
      rows.push([
        `${typeof step.n === 'number' ? `N = ${int(step.n)}` : step.n}: heap per idle socket with one subscription ≤ 1.3 × raw ws`,
        listen
          .map((name, i) =>
            fmt(
              name,
              `${ratio(values[i])} (${bytes(m[name].heapPerSocket1)} vs ${bytes(m.raw.heapPerSocket1)})`,
            ),
          )
          .join(', '),
        values.every((v) => v <= 1.3) ? 'met' : 'missed',
      ])
    }
    const subs = listen.map((name) => m[name].heapPerExtraSub)
    rows.push([
      `${typeof step.n === 'number' ? `N = ${int(step.n)}` : step.n}: heap per additional subscription ≤ 300 B`,
      listen.map((name, i) => fmt(name, bytes(subs[i]))).join(', '),
      subs.every((v) => v <= 300) ? 'met' : 'missed',
    ])
  }
  return rows
}

export function renderScale(results, { svgRelative = '' } = {}) {
  const c = results.config
  const parts = [
    '## Many sockets, many subscriptions',
    '',
    `One server process per system holds N sockets (N = ${c.ns.map(int).join(', ')}), each subscribed to ${PER_SOCKET} paths \`/p/<k>\` drawn from ${int(c.pathCount)} (about N × ${PER_SOCKET} / ${c.pathCount} subscribers per path). Machine: ${results.machine.cpus}, ${results.machine.memory}, ${results.machine.platform}, Node ${results.machine.node}. Date: ${results.date}. ${Math.round(results.seconds ?? 0)} s.`,
    '',
    '### Targets (issue 14)',
    '',
    table(['target', 'measured', 'verdict'], targetRows(results)),
    '',
    'Per N: the sockets added at that step (e.g. N = 10,000: the 5,000 sockets added after N = 5,000); *all steps*: every socket added, Σ growth / Σ sockets (the least noisy figure). Memory over all steps:',
    '',
    table(
      [
        'system',
        'heap / socket, 1 subscription',
        '× raw ws',
        'heap / additional subscription',
        'RSS / socket, 1 subscription',
        'RSS / additional subscription',
      ],
      results.systems.map((name) => {
        const o = overallMemory(results)
        return [
          LABEL[name],
          bytes(o[name].heapPerSocket1),
          ratio(o[name].heapPerSocket1 / o.raw?.heapPerSocket1),
          bytes(o[name].heapPerExtraSub),
          bytes(o[name].rssPerSocket1),
          bytes(o[name].rssPerExtraSub),
        ]
      }),
    ),
    '',
  ]
  for (const step of results.steps) {
    parts.push(
      `### N = ${int(step.n)} sockets, ${int(step.n * PER_SOCKET)} subscriptions`,
      '',
      stepTable(results, step),
      '',
    )
  }
  parts.push(
    `![Heap per socket and per subscription](${svgRelative}scale-heap.svg)`,
    '',
    `![Server CPU per delivered message](${svgRelative}scale-cpu.svg)`,
    '',
    `![Time to subscribe every socket](${svgRelative}scale-subscribe.svg)`,
    '',
    '### Method',
    '',
    `- **Processes.** One server process per system (\`bench/server.mjs <system>\`, started with \`--expose-gc\`), all running at once; ${c.generators} load-generator processes (\`bench/generator.mjs\`) hold the client sockets, each a share of every system's, spread over the source addresses 127.0.0.2–127.0.0.9 (at most ${int(Math.ceil((results.systems.length * (c.warm + Math.max(...c.ns))) / c.generators))} sockets, hence file descriptors, per generator). Systems: ${results.systems.map((s) => LABEL[s]).join('; ')}. Socket.IO sockets join one room per path; the raw \`ws\` server keeps a Set per path and writes one pre-framed buffer to every subscriber (\`?mode=frame\`); listenjs serves \`GET /p/:k\` with the route option \`public: true\` (one replay per change for all its subscribers; each snapshot is still replayed with the subscriber's own request).`,
    `- **Subscriptions.** Socket i subscribes to ${PER_SOCKET} distinct paths drawn from /p/0…/p/${c.pathCount - 1} by a small PRNG seeded with i: the same paths for every system. ${c.warm} warm-up sockets per system come first and are not counted in N: two subscribed to half the paths each (so every path exists on the server before N grows: what is measured per subscription is not a path's first subscriber), the others to their ${PER_SOCKET}; then one change on ${c.pathsPerWindow} paths. They receive the windows' frames too (counted as delivered).`,
    '- **N grows step by step** on the same server processes. At each step the new sockets connect, each subscribing to its first path; then (memory, one system at a time) they subscribe to their other four.',
    '- **Memory.** `process.memoryUsage()` in the server after forced GC (four `gc()` calls). *Heap / socket, 1 subscription* = (heap once the new sockets hold one subscription each − heap before they connected) / new sockets. *Heap / additional subscription* = (heap once they hold all five − heap with one each) / (4 × new sockets). The same for RSS (RSS is noisy and never shrinks: read its trend, not a single figure). *Heap at N*: everything, all N + warm-up sockets with five subscriptions each.',
    "- **Time to subscribe.** Every socket unsubscribes from its five paths (the server then holds only the warm-up subscriptions); then all generators send every socket's five `subscribe` messages at once (Socket.IO: one `sub` event with the five paths), and the time runs until every snapshot has arrived. The server CPU of that window (`process.cpuUsage()`) is divided by the subscriptions. One system at a time. listenjs makes one snapshot replay per subscription (distinct cookies, distinct contexts): the replay, not the bookkeeping, dominates its time.",
    `- **CPU per delivered message.** ${c.rounds} rounds (the first is a warm-up, not counted); in each, one window per system in an order rotated by one each round. A window POSTs ${c.pathsPerWindow} distinct paths at once (different paths every round), each to its ~N × ${PER_SOCKET} / ${c.pathCount} subscribers, and closes when every generator has received every expected frame. Server CPU over the window (after a forced GC and ${c.settleMs} ms of settling), minus an empty window's, divided by the frames delivered; median over rounds (min–max). Latency: receipt − the time the POST handler finished (host clock), pooled; *last delivery*: the latest frame of a window, median over rounds.`,
    "- **Deviations from defaults** as in the other scenarios: listenjs `limits.connectionsPerAddress` raised, listenjs heartbeat and Socket.IO `pingInterval` at 15 min. Everything on loopback; generators share the 2 cores with the servers, so latencies include client work; CPU figures are the server's alone.",
    '',
  )
  return { markdown: parts.join('\n'), svgs: charts(results) }
}

// Hand-written SVG line charts: one line per system, N on a linear x axis from 0.

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12"'

/** The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k that is at least `v`: a round tick step. */
function niceStep(v) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (v <= m * p * (1 + 1e-9)) return m * p
  return 10 * p
}

/**
 * One panel: `series` [{ name, points: [[x, y]…], dashed }] with axes, grid and labels, drawn at
 * (`ox`, `oy`) in a `w` × `h` box.
 */
function panel({ ox, oy, w, h, title, yLabel, series, xmax, digits = 0, yFloor }) {
  const L = 62
  const R = 16
  const T = 26
  const B = 40
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite)
  const ymax = 4 * niceStep(Math.max(...ys, yFloor ?? 0) / 4)
  const x = (v) => ox + L + (v / xmax) * (w - L - R)
  const y = (v) => oy + T + (1 - v / ymax) * (h - T - B)
  const out = [`<text x="${ox + L}" y="${oy + 16}" font-weight="bold">${esc(title)}</text>`]
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4
    out.push(
      `<line x1="${x(0)}" y1="${y(v).toFixed(1)}" x2="${x(xmax)}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`,
    )
    out.push(
      `<text x="${x(0) - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${+v.toFixed(digits)}</text>`,
    )
  }
  for (let i = 0; i <= 4; i++) {
    const v = (xmax * i) / 4
    out.push(
      `<line x1="${x(v).toFixed(1)}" y1="${y(0)}" x2="${x(v).toFixed(1)}" y2="${y(0) + 4}" stroke="#999"/>`,
    )
    out.push(
      `<text x="${x(v).toFixed(1)}" y="${y(0) + 17}" text-anchor="middle">${(v / 1000).toLocaleString('en')}k</text>`,
    )
  }
  out.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(xmax)}" y2="${y(0)}" stroke="#999"/>`)
  out.push(`<text x="${(x(0) + x(xmax)) / 2}" y="${oy + h - 6}" text-anchor="middle">sockets (N)</text>`)
  const cy = oy + T + (h - T - B) / 2
  out.push(
    `<text x="${ox + 14}" y="${cy}" transform="rotate(-90 ${ox + 14} ${cy})" text-anchor="middle">${esc(yLabel)}</text>`,
  )
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]))
    if (!pts.length) continue
    const color = s.color ?? COLORS[s.name] ?? '#000'
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : ''
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ')}"/>`,
    )
    for (const p of pts)
      out.push(`<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="3" fill="${color}"/>`)
  }
  return out.join('\n')
}

function legend(names, x0, y0) {
  return names
    .map((name, i) => {
      const yy = y0 + i * 18
      return (
        `<line x1="${x0}" y1="${yy}" x2="${x0 + 22}" y2="${yy}" stroke="${COLORS[name]}" stroke-width="3"/>` +
        `<text x="${x0 + 28}" y="${yy + 4}">${esc(LABEL[name])}</text>`
      )
    })
    .join('\n')
}

function svgDoc(w, h, title, body) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ${FONT}>`,
    `<rect width="${w}" height="${h}" fill="#fff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`,
    body,
    '</svg>',
  ].join('\n')
}

function charts(results) {
  const names = results.systems
  const xmax = 4 * niceStep(Math.max(...results.config.ns) / 4)
  const line = (pick) =>
    names.map((name) => ({ name, points: results.steps.map((s) => [s.n, pick(s, name)]) }))
  const W = 960
  const PW = 360
  const PH = 280
  const LEG = 240
  const heap = svgDoc(
    W,
    2 * PH + 50,
    'Server memory as N grows (after forced GC; lower is better)',
    [
      panel({
        ox: 0,
        oy: 36,
        w: PW,
        h: PH,
        xmax,
        title: 'heap per socket, 1 subscription (B)',
        yLabel: 'bytes',
        series: line((s, n) => s.memory[n].heapPerSocket1),
      }),
      panel({
        ox: PW,
        oy: 36,
        w: PW,
        h: PH,
        xmax,
        title: 'heap per additional subscription (B)',
        yLabel: 'bytes',
        yFloor: 360,
        series: [
          ...line((s, n) => s.memory[n].heapPerExtraSub),
          {
            name: 'target',
            color: '#c00',
            dashed: true,
            points: [
              [0, 300],
              [xmax, 300],
            ],
          },
        ],
      }),
      panel({
        ox: 0,
        oy: 36 + PH,
        w: PW,
        h: PH,
        xmax,
        title: 'total heap, 5 subscriptions per socket (MiB)',
        yLabel: 'MiB',
        digits: 0,
        series: line((s, n) => s.memory[n].heapUsed / 2 ** 20),
      }),
      panel({
        ox: PW,
        oy: 36 + PH,
        w: PW,
        h: PH,
        xmax,
        title: 'total RSS (MiB)',
        yLabel: 'MiB',
        series: line((s, n) => s.memory[n].rss / 2 ** 20),
      }),
      legend(names, 2 * PW + 16, 70),
      `<line x1="${2 * PW + 16}" y1="${70 + names.length * 18}" x2="${2 * PW + 38}" y2="${70 + names.length * 18}" stroke="#c00" stroke-width="2" stroke-dasharray="6 4"/><text x="${2 * PW + 44}" y="${74 + names.length * 18}">target (issue 14)</text>`,
    ].join('\n'),
  )
  const cpu = svgDoc(
    2 * PW + LEG,
    PH + 50,
    'Server CPU per delivered message (µs, lower is better)',
    [
      panel({
        ox: 0,
        oy: 36,
        w: PW,
        h: PH,
        xmax,
        digits: 1,
        title: 'µs per delivered message (median)',
        yLabel: 'µs',
        series: line((s, n) => s.delivery[n].cpuPerMsg),
      }),
      panel({
        ox: PW,
        oy: 36,
        w: PW,
        h: PH,
        xmax,
        digits: 0,
        title: 'last delivery of a window (ms)',
        yLabel: 'ms',
        series: line((s, n) => s.delivery[n].last),
      }),
      legend(names, 2 * PW + 16, 70),
    ].join('\n'),
  )
  const subscribe = svgDoc(
    2 * PW + LEG,
    PH + 50,
    `Subscribing every socket to its ${PER_SOCKET} paths at once (lower is better)`,
    [
      panel({
        ox: 0,
        oy: 36,
        w: PW,
        h: PH,
        xmax,
        digits: 1,
        title: 'time to subscribe all N × 5 (s)',
        yLabel: 's',
        series: line((s, n) => s.subscribe[n].ms / 1000),
      }),
      panel({
        ox: PW,
        oy: 36,
        w: PW,
        h: PH,
        xmax,
        digits: 0,
        title: 'server CPU per subscription (µs)',
        yLabel: 'µs',
        series: line((s, n) => s.subscribe[n].cpuPerSubUs),
      }),
      legend(names, 2 * PW + 16, 70),
    ].join('\n'),
  )
  return { 'scale-heap.svg': heap, 'scale-cpu.svg': cpu, 'scale-subscribe.svg': subscribe }
}

// ---------------------------------------------------------------------------------------------
// Standalone

async function main() {
  const argv = process.argv.slice(2)
  const quick = argv.includes('--quick')
  const from = argv.find((a) => a.startsWith('--from='))?.slice('--from='.length)
  const systems = argv
    .find((a) => a.startsWith('--systems='))
    ?.slice('--systems='.length)
    .split(',')
  const ns = argv
    .find((a) => a.startsWith('--n='))
    ?.slice('--n='.length)
    .split(',')
    .map(Number)
  const outDir = path.join(root, '.tmp', 'bench-scale')
  mkdirSync(outDir, { recursive: true })
  let results
  if (from) {
    results = JSON.parse(readFileSync(from, 'utf8'))
  } else {
    const limitMs = quick ? 90_000 : 9 * 60_000
    const hardLimit = setTimeout(() => {
      console.error(`scale: hard time limit (${limitMs / 1000} s) reached; killing everything`)
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
    try {
      results = await scalePhase({ quick, log, systems, ns })
    } catch (error) {
      console.error('scale: failed:', error)
      killChildren()
      process.exit(1)
    }
    clearTimeout(hardLimit)
    writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 1))
  }
  const { markdown, svgs } = renderScale(results)
  for (const [file, svg] of Object.entries(svgs)) writeFileSync(path.join(outDir, file), svg)
  writeFileSync(path.join(outDir, 'scale.md'), markdown)
  console.log(markdown)
  console.error(`scale: SVGs, scale.md and results.json in ${path.relative(process.cwd(), outDir) || '.'}`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main()
