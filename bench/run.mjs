// The listenjs benchmark: `npm run bench` (full, about 12 min on 2 cores) or `npm run bench -- --quick`
// (small N, < 1 min, the CI smoke test: no thresholds). Servers and load generators run in separate
// processes (child_process.fork); this process only orchestrates, triggers changes with real HTTP
// POSTs and aggregates. Every system is measured in the same run, interleaved: each round runs one
// change on every system, in a rotated order. See BENCHMARKS.md for the method and the results.
//
// Options:
//   --quick            small N, short windows; writes its report to .tmp/bench-quick/ (the committed
//                      BENCHMARKS.md holds a full run)
//   --profile=<srv,…>  also records V8 CPU profiles of those servers (fastify|express|koa|raw|sio)
//                      inside the measured windows, into .tmp/bench-profile/ (one summary per
//                      scenario and case: <tag>.txt), and prints where the time goes; the report
//                      then goes to .tmp/bench-profile/ too (profiling slows the profiled servers)
//   --only=<ids>       comma-separated scenario ids to run
//                      (one,paths,burst,large,memory,user,polling,scale,backplane,patches,stream)
//   --users=<n,…>      the numbers of users of the per-user scenarios (default 100,1000,5000; quick 50,200)
//   --from=<json>      only re-renders the report from the raw results of an earlier run
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setTimeout, clearTimeout } from 'node:timers'
import {
  all,
  Child,
  killChildren,
  median,
  now,
  percentile,
  pin,
  post,
  sleep,
  waitSubscriptions,
} from './lib.mjs'
import { renderReport } from './report.mjs'
import { formatProfile, summarizeProfile } from './profile.mjs'
import { backplanePhase } from './backplane.mjs'
import { scalePhase } from './scale.mjs'
import { patchesPhase } from './patches.mjs'
import { streamPhase } from './stream.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)
const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
const PROFILE = argv.find((a) => a.startsWith('--profile='))?.slice('--profile='.length)
const ONLY = argv
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',')
const runs = (id) => !ONLY || ONLY.includes(id)
const USERS = argv
  .find((a) => a.startsWith('--users='))
  ?.slice('--users='.length)
  .split(',')
  .map(Number)

const CONFIG = QUICK
  ? {
      generators: 2,
      nSmall: 200,
      nBurst: 300,
      nLarge: 500,
      rounds: 3, // the first round of every scenario is a warm-up and is not counted
      largeRounds: 3,
      gapMs: 20,
      settleMs: 25,
      calibrations: 3,
      collectMs: 5000,
      userN: [50, 200],
      userRoundsLarge: 3,
      poll: { n: 60, T: 100, durationMs: 1000, rates: [1000, 100], reps: 1, pauseMs: 100 },
      hardLimitMs: 240_000, // a bound, not a threshold: about 100 s on a slow 2-core host
    }
  : {
      generators: 4,
      nSmall: 1000,
      nBurst: 2000,
      nLarge: 10_000,
      rounds: 9,
      largeRounds: 13,
      gapMs: 150,
      settleMs: 50,
      calibrations: 5,
      collectMs: 20_000,
      userN: [100, 1000, 5000],
      userRoundsLarge: 6,
      poll: { n: 500, T: 100, durationMs: 8000, rates: [1000, 100], reps: 3, pauseMs: 300 },
      hardLimitMs: 40 * 60_000,
    }

const SERVERS = ['raw', 'sio', 'fastify', 'express', 'koa']
const KIND = {
  raw: 'raw',
  sio: 'sio',
  fastify: 'listen',
  express: 'listen',
  koa: 'listen',
  'floor-fastify': 'raw',
  'floor-express': 'raw',
  'floor-koa': 'raw',
}
const VARIANTS = [
  { id: 'ws-frame', label: 'raw ws, pre-framed buffer', server: 'raw', query: '?mode=frame' },
  { id: 'ws-send', label: 'raw ws, send(string) per socket', server: 'raw', query: '?mode=send' },
  { id: 'socket.io', label: 'Socket.IO 4, room broadcast', server: 'sio', query: '' },
  { id: 'listenjs-fastify', label: 'listenjs (Fastify)', server: 'fastify', query: '' },
  { id: 'listenjs-express', label: 'listenjs (Express)', server: 'express', query: '' },
  { id: 'listenjs-koa', label: 'listenjs (Koa)', server: 'koa', query: '' },
]
// Per-user views: the hand-written loops a user would write, the floor of the replay model on each
// framework (bench/floor.mjs), and listenjs.
const USER_SERVERS = [
  'raw',
  'sio',
  'floor-fastify',
  'fastify',
  'floor-express',
  'express',
  'floor-koa',
  'koa',
]
const USER_VARIANTS = [
  { id: 'ws-loop', label: 'raw ws, hand-written loop', server: 'raw', query: '?mode=frame' },
  { id: 'socket.io-loop', label: 'Socket.IO 4, hand-written loop', server: 'sio', query: '' },
  ...['fastify', 'express', 'koa'].flatMap((fw) => [
    {
      id: `floor-${fw}`,
      label: `floor (${fw[0].toUpperCase()}${fw.slice(1)})`,
      server: `floor-${fw}`,
      query: '',
    },
    VARIANTS.find((v) => v.id === `listenjs-${fw}`),
  ]),
]
const BURST_PATHS = Array.from({ length: 10 }, (_, k) => `/b/${k}`)
const MULTI_PATHS = Array.from({ length: 10 }, (_, k) => `/p/${k}`)

// ---------------------------------------------------------------------------------------------
// Bounded in time, no orphans.

const startedAt = now()
const hardLimit = setTimeout(() => {
  console.error(`bench: hard time limit (${CONFIG.hardLimitMs / 1000} s) reached; killing everything`)
  killChildren()
  process.exit(2)
}, CONFIG.hardLimitMs)
process.on('exit', killChildren)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killChildren()
    process.exit(130)
  })
}
process.on('uncaughtException', (error) => {
  console.error('bench: failed:', error)
  killChildren()
  process.exit(1)
})
process.on('unhandledRejection', (error) => {
  console.error('bench: failed:', error)
  killChildren()
  process.exit(1)
})

const log = (...args) => console.error(`[${((now() - startedAt) / 1000).toFixed(1).padStart(6)} s]`, ...args)

// ---------------------------------------------------------------------------------------------
// Processes

async function startServer(name, extra = []) {
  const child = new Child(path.join(here, 'server.mjs'), [name, ...extra], {
    execArgv: ['--expose-gc'],
    name: `server ${name}`,
  })
  const info = await child.call('info', {}, 30_000)
  child.port = info.port
  child.agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  return child
}

function startGenerators(count) {
  return Array.from(
    { length: count },
    (_, g) =>
      new Child(path.join(here, 'generator.mjs'), [String(g), String(count)], { name: `generator ${g}` }),
  )
}

// ---------------------------------------------------------------------------------------------
// Fan-out scenarios

let changeNumber = 1000
/**
 * The window opens after a forced GC and a pause for V8's concurrent sweeping (otherwise ~2 ms of
 * background GC work lands in every window). What an empty window still costs (IPC, timers) is
 * measured per server before each scenario and subtracted.
 */
const SETTLE_MS = CONFIG.settleMs
const overhead = new Map() // server → µs of an empty window

async function calibrate(servers) {
  // Windows are measured between two scavenges of the young generation (see `iteration`); an empty
  // window is measured the same way, so what it still costs (IPC, timers, the scavenge of a clean
  // young generation and the settling after it) is subtracted.
  await Promise.all(
    servers.map(async (server) => {
      const samples = []
      for (let i = 0; i < CONFIG.calibrations; i++) {
        await server.call('cpuStart', { collect: 'minor', settleMs: SETTLE_MS })
        await sleep(20)
        samples.push((await server.call('cpuStop', { collect: 'minor', settleMs: SETTLE_MS })).total)
      }
      overhead.set(server, median(samples))
    }),
  )
}

/** One change on one system: arm the generators, open the CPU window, POST, wait for every delivery. */
async function iteration(servers, gens, kase, lo, hi) {
  const server = servers[kase.variant.server]
  const it = ++changeNumber
  const perSocket = kase.perSocket ?? 1
  const url = `${typeof kase.path === 'function' ? kase.path(it) : kase.path}${kase.variant.query}`
  const armed = await all(gens, 'arm', { system: kase.variant.server, it, lo, hi, perSocket })
  const expected = armed.reduce((s, a) => s + a.expected, 0)
  // The whole cost of the change, garbage included: the young generation is scavenged just before
  // the window (outside it: nothing earlier is billed), and the window ends only after a scavenge
  // inside it, which collects what the change left (a fan-out's garbage is short-lived: write
  // requests, buffers, closures). No full GC around windows: it would leave every window with cold
  // caches, and one inside would bill the marking of the whole live heap (every idle connection),
  // a cost of holding connections, not of a push.
  await server.call('cpuStart', { collect: 'minor', settleMs: SETTLE_MS, tag: kase.tag })
  const collected = all(gens, 'collect', { timeoutMs: CONFIG.collectMs }, CONFIG.collectMs + 10_000)
  const status = await post(server, url, it)
  if (status !== 201) throw new Error(`POST ${url} on ${server.name} answered ${status}`)
  const parts = await collected
  const cpu = await server.call('cpuStop', { collect: 'minor', settleMs: SETTLE_MS })
  const cpuUs = Math.max(0, cpu.total - (overhead.get(server) ?? 0))
  const lat = parts.flatMap((p) => p.lat)
  const received = parts.reduce((s, p) => s + p.received, 0)
  let ttld = -Infinity
  for (const v of lat) if (v > ttld) ttld = v
  return {
    cpuUs,
    rawCpuUs: cpu.total,
    // The window without the closing scavenge and its settling.
    openCpuUs: cpu.open?.total,
    userUs: cpu.user,
    systemUs: cpu.system,
    received,
    expected,
    lat,
    ttld: lat.length ? ttld : NaN,
  }
}

/**
 * Runs `rounds` rounds; in each, one change per case, cases in an order rotated by one per round
 * (ABC, BCA, CAB, …), so drift on a shared machine spreads over every system alike.
 */
// --profile=<servers>: the V8 CPU profiler runs in those servers inside the measured windows (after
// the warm-up round), one profile per window, summarized per scenario and case.
const PROFILED = PROFILE ? PROFILE.split(',') : []
const profileDir = path.join(root, '.tmp', 'bench-profile')
const profiles = []

async function startProfiling(servers) {
  for (const name of PROFILED) await servers[name].call('profileStart', { samplingUs: 50 })
}

async function stopProfiling(servers, id) {
  for (const name of PROFILED) {
    const saved = await servers[name].call('profileStop', { dir: profileDir, prefix: name }, 120_000)
    for (const [tag, files] of Object.entries(saved.files)) {
      const summary = summarizeProfile(files)
      profiles.push({ server: name, scenario: id, tag, windows: files.length, summary })
      writeFileSync(path.join(profileDir, `${tag}.txt`), formatProfile(summary))
    }
  }
}

async function scenario(servers, gens, { id, title, cases, lo, hi, rounds = CONFIG.rounds }) {
  for (const kase of cases) kase.tag = `${id}.${kase.key.replace(':', '.')}`
  const used = [...new Set(cases.map((c) => servers[c.variant.server]))]
  await calibrate(used)
  log(
    `scenario ${id}: ${title} (empty-window CPU: ${used.map((s) => `${s.name.replace('server ', '')} ${Math.round(overhead.get(s))} µs`).join(', ')})`,
  )
  const byCase = new Map(cases.map((c) => [c.key, []]))
  for (let round = 0; round < rounds; round++) {
    const shift = round % cases.length
    const order = [...cases.slice(shift), ...cases.slice(0, shift)]
    if (round === 1) await startProfiling(servers)
    for (const kase of order) {
      const result = await iteration(servers, gens, kase, lo, hi)
      if (round > 0) byCase.get(kase.key).push(result)
      await sleep(CONFIG.gapMs)
    }
  }
  await stopProfiling(servers, id)
  const rows = cases.map((kase) => ({ ...kase, variant: kase.variant, ...summarize(byCase.get(kase.key)) }))
  const emptyWindowUs = Object.fromEntries(used.map((s) => [s.name.replace('server ', ''), overhead.get(s)]))
  return { id, title, n: hi - lo, rows, emptyWindowUs }
}

function summarize(results) {
  const lat = results.flatMap((r) => r.lat).sort((a, b) => a - b)
  const cpuPerMsg = median(results.map((r) => r.cpuUs / r.received))
  const received = results.reduce((s, r) => s + r.received, 0)
  const expected = results.reduce((s, r) => s + r.expected, 0)
  return {
    iterations: results.length,
    cpuPerMsg,
    cpuPerMsgAll: results.map((r) => r.cpuUs / r.received),
    msgsPerCore: 1e6 / cpuPerMsg,
    // The split of the (uncorrected) window CPU: user = JavaScript + libuv, system = the kernel
    // (on loopback, a write's system time includes the TCP path to the receiving socket).
    userPerMsg: median(results.map((r) => r.userUs / r.received)),
    systemPerMsg: median(results.map((r) => r.systemUs / r.received)),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    ttld: median(results.map((r) => r.ttld)),
    received,
    expected,
    latSample: downsample(lat, 400),
  }
}

/** Up to `k` evenly spaced quantiles of a sorted array (for the latency chart). */
function downsample(sorted, k) {
  if (sorted.length <= k) return sorted
  return Array.from({ length: k }, (_, i) => sorted[Math.round((i / (k - 1)) * (sorted.length - 1))])
}

const casesFor = (path, extra = {}) =>
  VARIANTS.map((variant) => ({ key: variant.id, variant, path, ...extra }))

/**
 * Servers on CPU 0, load generators on CPU 1 (with two CPUs or more and taskset): a server's CPU in a
 * window is then its own work, not the clients' receive work preempting it (each window measures
 * one server, the others are idle).
 */
function pinAll(servers, gens) {
  return Object.values(servers).every((s) => pin(s, 0)) && gens.every((g) => pin(g, 1))
}

async function grow(servers, gens, lo, hi, names = SERVERS, paths = ['/items']) {
  const started = now()
  await Promise.all(
    names.map((name) =>
      all(
        gens,
        'connect',
        { system: name, kind: KIND[name], port: servers[name].port, lo, hi, paths },
        300_000,
      ),
    ),
  )
  for (const name of names) await waitSubscriptions(servers[name], hi * paths.length)
  log(`connected sockets ${lo}–${hi - 1} on every server (${((now() - started) / 1000).toFixed(1)} s)`)
}

async function subscribeAll(servers, gens, lo, hi, paths) {
  await Promise.all(SERVERS.map((name) => all(gens, 'subscribe', { system: name, lo, hi, paths }, 300_000)))
}

async function unsubscribeAll(servers, gens, lo, hi, paths, remaining) {
  await Promise.all(SERVERS.map((name) => all(gens, 'unsubscribe', { system: name, lo, hi, paths }, 60_000)))
  for (const name of SERVERS) await waitSubscriptions(servers[name], remaining)
}

async function memory(servers) {
  const out = {}
  for (const name of SERVERS) out[name] = await servers[name].call('mem', {}, 60_000)
  return out
}

async function fanOutPhase(results) {
  const { nSmall, nBurst, nLarge } = CONFIG
  const servers = {}
  for (const name of SERVERS) servers[name] = await startServer(name)
  const gens = startGenerators(CONFIG.generators)
  results.pinned = pinAll(servers, gens)
  log(
    `servers up: ${SERVERS.map((n) => `${n}:${servers[n].port}`).join(' ')}; ${gens.length} generators${results.pinned ? '; servers on CPU 0, generators on CPU 1' : ''}`,
  )

  await grow(servers, gens, 0, nSmall)
  if (runs('one')) {
    results.scenarios.push(
      await scenario(servers, gens, {
        id: 'one',
        title: `one change to ${nSmall.toLocaleString('en')} subscribers of one path`,
        cases: casesFor('/items'),
        lo: 0,
        hi: nSmall,
      }),
    )
  }
  if (runs('paths')) {
    await subscribeAll(servers, gens, 0, nSmall, MULTI_PATHS)
    results.scenarios.push(
      await scenario(servers, gens, {
        id: 'paths',
        title: `${nSmall.toLocaleString('en')} subscribers, each on 10 paths; one change to one of them`,
        cases: casesFor((it) => `/p/${it % 10}`),
        lo: 0,
        hi: nSmall,
      }),
    )
    await unsubscribeAll(servers, gens, 0, nSmall, MULTI_PATHS, nSmall)
  }
  await grow(servers, gens, nSmall, nBurst)
  const memBefore = await memory(servers)
  if (runs('burst')) {
    await subscribeAll(servers, gens, 0, nBurst, BURST_PATHS)
    results.scenarios.push(
      await scenario(servers, gens, {
        id: 'burst',
        title: `burst: one POST changes 10 paths in one turn, ${nBurst.toLocaleString('en')} subscribers of all 10`,
        cases: casesFor('/burst', { perSocket: 10 }),
        lo: 0,
        hi: nBurst,
      }),
    )
    await unsubscribeAll(servers, gens, 0, nBurst, BURST_PATHS, nBurst)
  }

  await grow(servers, gens, nBurst, nLarge)
  const memAfter = await memory(servers)
  results.memory = { from: nBurst, to: nLarge, before: memBefore, after: memAfter }

  if (runs('large')) {
    results.scenarios.push(
      await scenario(servers, gens, {
        id: 'large',
        title: `one change to ${nLarge.toLocaleString('en')} subscribers of one path`,
        cases: casesFor('/items'),
        lo: 0,
        hi: nLarge,
        rounds: CONFIG.largeRounds,
      }),
    )
  }

  const genCounters = await all(gens, 'counters', {})
  results.generatorCounters = genCounters
  const errors = genCounters.reduce((s, c) => s + c.errors + c.closedEarly, 0)
  if (errors)
    log(
      `warning: generators saw ${errors} error frames or early closes: ${genCounters.map((c) => c.firstError).filter(Boolean)[0] ?? ''}`,
    )
  for (const name of SERVERS) await all(gens, 'close', { system: name }, 60_000)
  await Promise.all([...Object.values(servers), ...gens].map((c) => c.stop()))
}

/**
 * Per-user views: N users (N = CONFIG.userN), each with its own cookie, subscribed to `/mine`, whose
 * GET answers a ~1 KB view of that user's rows. One POST → N views → N pushes, on every system.
 */
async function userPhase(results) {
  const servers = {}
  for (const name of USER_SERVERS) servers[name] = await startServer(name)
  const gens = startGenerators(CONFIG.generators)
  results.pinned = pinAll(servers, gens)
  log(`per-user phase: ${USER_SERVERS.join(', ')}`)
  let lo = 0
  for (const n of USERS ?? CONFIG.userN) {
    await grow(servers, gens, lo, n, USER_SERVERS, ['/mine'])
    lo = n
    results.scenarios.push(
      await scenario(servers, gens, {
        id: `user-${n}`,
        title: `one change to a per-user view, ${n.toLocaleString('en')} users (distinct cookies)`,
        cases: USER_VARIANTS.map((variant) => ({ key: variant.id, variant, path: '/mine' })),
        lo: 0,
        hi: n,
        rounds: n >= 5000 ? CONFIG.userRoundsLarge : CONFIG.rounds,
      }),
    )
  }
  for (const name of USER_SERVERS) await all(gens, 'close', { system: name }, 60_000)
  await Promise.all([...Object.values(servers), ...gens].map((c) => c.stop()))
}

// ---------------------------------------------------------------------------------------------
// Polling comparison

async function pollingPhase(results) {
  const { n, T, durationMs, rates, reps } = CONFIG.poll
  const server = await startServer('fastify', ['--track-bytes'])
  const raw = await startServer('raw', ['--track-bytes'])
  const gens = startGenerators(Math.min(2, CONFIG.generators))
  // The servers get a core of their own and the clients share the other: without it, the clients'
  // receive work preempts the server in the middle of a fan-out (only in this phase; the other
  // scenarios measure CPU time, which does not depend on it).
  const pinned = pin(server, 0) && pin(raw, 0) && gens.every((g) => pin(g, 1))
  log(
    `polling comparison: ${n} clients, poll every ${T} ms, changes every ${rates.join(' / ')} ms${pinned ? '; servers on CPU 0, clients on CPU 1' : ''}`,
  )
  const windows = []
  let system = 0
  for (const changeEvery of rates) {
    for (let rep = 0; rep < reps; rep++) {
      // raw-push: the same push from a hand-written raw ws server (one pre-framed buffer per socket),
      // the floor for staleness on this host.
      const modes = ['push', 'conditional', 'plain', 'raw-push']
      const shift = rep % modes.length
      for (const mode of [...modes.slice(shift), ...modes.slice(0, shift)]) {
        const pushing = mode === 'push' || mode === 'raw-push'
        const target = mode === 'raw-push' ? raw : server
        const pushSystem = `push${system++}`
        if (pushing) {
          await all(
            gens,
            'connect',
            {
              system: pushSystem,
              kind: mode === 'raw-push' ? 'raw' : 'listen',
              port: target.port,
              lo: 0,
              hi: n,
              paths: ['/items'],
            },
            120_000,
          )
        } else {
          await all(gens, 'pollOpen', { port: server.port, lo: 0, hi: n }, 60_000)
        }
        // One change before the window, so that no window measures the first push after connecting
        // (cold code paths, garbage from the connections); stamped before the window, it is not counted.
        if (pushing) await post(target, mode === 'raw-push' ? '/items?mode=frame' : '/items', ++changeNumber)
        await sleep(CONFIG.poll.pauseMs)
        const c0 = await target.call('counters')
        await target.call('takeHandoffs')
        const t0 = now()
        if (pushing) await all(gens, 'recordStart', {})
        else await all(gens, 'pollStart', { port: server.port, T, conditional: mode === 'conditional' })
        // The changes: one POST every `changeEvery`, half a period after the window opens.
        const changes = Math.round(durationMs / changeEvery)
        const posts = []
        for (let k = 0; k < changes; k++) {
          const at = t0 + (k + 0.5) * changeEvery
          await sleep(Math.max(0, at - now()))
          posts.push(post(target, mode === 'raw-push' ? '/items?mode=frame' : '/items', ++changeNumber))
        }
        await Promise.all(posts)
        await sleep(Math.max(0, t0 + durationMs - now()))
        const parts = pushing ? await all(gens, 'recordStop', {}) : await all(gens, 'pollStop', {}, 10_000)
        const c1 = await target.call('counters')
        const handoffs = (await target.call('takeHandoffs')).sort((a, b) => a - b)
        const elapsed = (now() - t0) / 1000
        if (pushing) await all(gens, 'close', { system: pushSystem })
        else await all(gens, 'pollClose', {})
        const samples = parts.flatMap((p) => p.samples).sort((a, b) => a - b)
        const sum = (k) => parts.reduce((s, p) => s + (p[k] ?? 0), 0)
        windows.push({
          mode,
          changeEvery,
          seconds: elapsed,
          changes,
          bytesIn: c1.read - c0.read,
          bytesOut: c1.written - c0.written,
          gets: c1.gets - c0.gets,
          posts: c1.posts - c0.posts,
          replays: c1.replays - c0.replays,
          frames: c1.messagesSent - c0.messagesSent,
          cpuMs: (c1.cpu.user + c1.cpu.system - c0.cpu.user - c0.cpu.system) / 1000,
          statesSeen: samples.length,
          p50: percentile(samples, 50),
          p99: percentile(samples, 99),
          samples,
          handoffs,
          polls: sum('polls'),
          r304: sum('r304'),
          skipped: sum('skipped'),
        })
        const last = windows.at(-1)
        log(
          `  ${mode.padEnd(11)} change every ${changeEvery} ms: ${(last.bytesIn + last.bytesOut).toLocaleString('en')} B, staleness p50 ${last.p50?.toFixed(1)} ms${handoffs.length ? `, last frame to the kernel p50 ${percentile(handoffs, 50).toFixed(1)} ms` : ''}`,
        )
        await sleep(CONFIG.poll.pauseMs)
      }
    }
  }
  await Promise.all([server, raw, ...gens].map((c) => c.stop()))
  results.polling = { n, T, durationMs, rates, reps, windows, pinned }
}

// ---------------------------------------------------------------------------------------------

/** Only a complete full run writes BENCHMARKS.md and bench/*.svg; other runs write under .tmp/. */
function outputDir(results) {
  if (results.profiles || PROFILE) return path.join(root, '.tmp', 'bench-profile')
  if (results.quick) return path.join(root, '.tmp', 'bench-quick')
  if (results.only) return path.join(root, '.tmp', 'bench-partial')
  return root
}

function writeReport(results) {
  const outDir = outputDir(results)
  const svgDir = outDir === root ? here : outDir
  mkdirSync(outDir, { recursive: true })
  const { markdown, stdout, svgs } = renderReport(results, { svgRelative: outDir === root ? 'bench/' : '' })
  for (const [name, svg] of Object.entries(svgs)) writeFileSync(path.join(svgDir, name), svg)
  writeFileSync(path.join(outDir, 'BENCHMARKS.md'), markdown)
  console.log(stdout)
  if (results.profiles?.length) {
    console.log('\n## CPU profiles of the measured windows (details: .tmp/bench-profile/<tag>.txt)\n')
    for (const p of results.profiles) {
      const s = p.summary
      const packages = s.packages
        .slice(0, 7)
        .map((x) => `${x.name} ${(x.share * 100).toFixed(0)} %`)
        .join(', ')
      console.log(`${p.tag}: ${(s.totalMs / s.windows).toFixed(1)} ms per window; ${packages}`)
    }
  }
  console.log(
    `\nreport: ${path.relative(root, path.join(outDir, 'BENCHMARKS.md'))}; charts in ${path.relative(root, svgDir) || '.'}/`,
  )
}

async function main() {
  const from = argv.find((a) => a.startsWith('--from='))?.slice('--from='.length)
  if (from) {
    // Re-renders the report of an earlier run from its saved results.
    writeReport(JSON.parse(readFileSync(from, 'utf8')))
    clearTimeout(hardLimit)
    return
  }
  const results = {
    quick: QUICK,
    only: ONLY,
    config: CONFIG,
    variants: VARIANTS,
    scenarios: [],
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryGiB: os.totalmem() / 2 ** 30,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
    },
    date: new Date().toISOString(),
    command:
      process.env.npm_lifecycle_event === 'bench'
        ? `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`
        : `node bench/run.mjs${argv.length ? ` ${argv.join(' ')}` : ''}`,
  }
  const phases = ['one', 'paths', 'burst', 'large', 'memory']
  if (phases.some(runs)) await fanOutPhase(results)
  if (runs('user')) await userPhase(results)
  if (runs('polling')) await pollingPhase(results)
  if (runs('scale')) results.scale = await scalePhase({ quick: QUICK, log })
  if (runs('backplane')) results.backplane = await backplanePhase({ quick: QUICK, log })
  if (runs('patches')) results.patches = await patchesPhase({ quick: QUICK, log })
  if (runs('stream')) results.stream = await streamPhase({ quick: QUICK, log })
  results.seconds = (now() - startedAt) / 1000
  if (PROFILE) results.profiles = profiles

  // The raw results first (.tmp/ is git-ignored), so a report can be re-rendered with --from=.
  const dir = outputDir(results)
  const jsonFile = path.join(dir === root ? path.join(root, '.tmp') : dir, 'bench-results.json')
  mkdirSync(path.dirname(jsonFile), { recursive: true })
  writeFileSync(jsonFile, JSON.stringify(results))
  writeReport(results)
  console.log(`raw results: ${path.relative(root, jsonFile)}; total time: ${results.seconds.toFixed(1)} s`)
  clearTimeout(hardLimit)
}

await main()
