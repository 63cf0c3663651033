// An independent check of the fan-out target (issue 14): one state changed K times, pushed to N
// subscribers of one path, server CPU per delivered message, listenjs against the pre-framed raw ws
// floor. Not part of `npm run bench`; run after `npm run build`:
//
//   node bench/onestate.mjs [--n=10000] [--k=5] [--rounds=3] [--gen] [--send] [--profile]
//
// Servers (bench/server.mjs raw, and fastify) run pinned to CPU 0, the clients in other processes
// pinned to CPU 1: the raw-protocol load generator (bench/generator.mjs) for the raw ws server, and
// N real listenjs Node clients (`listenjs/client` over `ws`, this file with ONESTATE_ROLE=client)
// for listenjs. `--gen` adds a second listenjs server served by the generator's raw-protocol
// clients (the client-type factor); `--send` adds the ws.send(string) baseline.
//
// Every round measures each system (rotated order) in three ways:
//   per-change   as bench/run.mjs did: a forced GC and 50 ms of settling before each change, the
//                window from the POST to the last delivery, minus an empty window (`open`); and the
//                same window ended only after a forced GC inside it, minus an empty window measured
//                the same way (`closed`: the window's garbage is billed)
//   steady       K changes back to back (no forced GC between them), one window over all of them
//                from the first POST to the last delivery (`open`), or to the end of a forced GC
//                after it (`closed`), minus the matching empty window
// and reports µs per delivered message and the ratio to the pre-framed floor.
import path from 'node:path'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'

const here = path.dirname(fileURLToPath(import.meta.url))
const role = process.env.ONESTATE_ROLE

if (role === 'client') await clientRole()
else await orchestrator()

// ---------------------------------------------------------------------------------------------
// Client process: N listenjs clients (the package's own Node client over `ws`).

async function clientRole() {
  const { serveCommands, now, SOURCE_ADDRESSES } = await import('./lib.mjs')
  const { default: WebSocket } = await import('ws')
  const { createClient } = await import('listenjs/client')
  let nextSource = 0
  // The client constructs `new WebSocket(url, protocol)`; spread the sockets over 127.0.0.2–9 as
  // the generator does (ephemeral ports per source address).
  class SpreadWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { localAddress: SOURCE_ADDRESSES[nextSource++ % SOURCE_ADDRESSES.length] })
    }
  }
  const clients = []
  let armed
  let snapshots = 0
  let onSnapshot
  const onData = (data) => {
    if (armed && data.it === armed.it) {
      armed.count++
      if (armed.count === armed.expected) armed.resolve?.()
    }
  }
  serveCommands({
    connect: async ({ port, n, path: p = '/items', batch = 100 }) => {
      const started = now()
      for (let i = 0; i < n; i += batch) {
        const m = Math.min(batch, n - i)
        const target = snapshots + m
        const done = new Promise((resolve) => (onSnapshot = () => snapshots >= target && resolve()))
        for (let j = 0; j < m; j++) {
          const client = createClient({ url: `ws://127.0.0.1:${port}/listen`, WebSocket: SpreadWebSocket })
          let first = true
          client.listen(p, (data) => {
            if (first) {
              first = false
              snapshots++
              onSnapshot?.()
              return
            }
            onData(data)
          })
          clients.push(client)
        }
        await Promise.race([done, delay(30_000).then(() => Promise.reject(new Error('connect timed out')))])
      }
      return { clients: clients.length, ms: now() - started }
    },
    arm: ({ it, expected }) => {
      armed = { it, expected, count: 0, resolve: undefined }
      return { expected }
    },
    collect: async ({ timeoutMs }) => {
      const a = armed
      if (a.count < a.expected) {
        await Promise.race([new Promise((resolve) => (a.resolve = resolve)), delay(timeoutMs)])
      }
      armed = undefined
      return { received: a.count, expected: a.expected }
    },
  })
  process.send?.({ ready: true })
}

// ---------------------------------------------------------------------------------------------
// Orchestrator

async function orchestrator() {
  const {
    Child,
    killChildren,
    median,
    pin: pinTo,
    post,
    sleep,
    waitSubscriptions,
  } = await import('./lib.mjs')
  const argv = process.argv.slice(2)
  const opt = (name, dflt) => {
    const a = argv.find((x) => x.startsWith(`--${name}=`))
    return a ? Number(a.slice(name.length + 3)) : dflt
  }
  // --no-pin: leave every process where the scheduler puts it (as bench/run.mjs's fan-out scenarios do).
  const pin = argv.includes('--no-pin') ? () => true : pinTo
  const N = opt('n', 10_000)
  const K = opt('k', 5)
  const ROUNDS = opt('rounds', 3)
  const GEN = argv.includes('--gen')
  const SEND = argv.includes('--send')
  const PROFILE = argv.includes('--profile')
  const METHODS = (argv.find((a) => a.startsWith('--methods='))?.slice(10) ?? 'per-change,steady').split(',')
  const SETTLE = 50
  const hard = setTimeout(
    () => {
      console.error('onestate: hard time limit reached')
      killChildren()
      process.exit(2)
    },
    opt('limit', 20 * 60) * 1000,
  )
  process.on('exit', killChildren)
  for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130))
  const log = (...a) => console.error(`[onestate ${new Date().toISOString().slice(11, 19)}]`, ...a)

  // --before=<dir>: also a listenjs server whose `listenjs` imports resolve to the package in <dir>
  // (package.json and dist/ of another build), for before/after comparisons in one interleaved run.
  const BEFORE = argv.find((a) => a.startsWith('--before='))?.slice('--before='.length)
  const redirect = (dir) =>
    '--import=data:text/javascript,' +
    encodeURIComponent(
      `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(
        `export async function resolve(s, c, next) { return next(s, s === 'listenjs' || s.startsWith('listenjs/') ? { ...c, parentURL: ${JSON.stringify(`file://${path.resolve(dir ?? '.')}/resolver.mjs`)} } : c) }`,
      )}))`,
    )
  const startServer = async (name, label = name, pkg) => {
    // --count-callbacks: counts, per async resource type, the callbacks native code makes into
    // JavaScript during one change (printed per system; costs CPU, so not with measured windows).
    const counting = argv.includes('--count-callbacks')
      ? [
          '--import=data:text/javascript,' +
            encodeURIComponent(
              "import { createHook } from 'node:async_hooks'; const types = new Map(); let counts = {}; " +
                'createHook({ init(id, type) { types.set(id, type) }, before(id) { const t = types.get(id) ?? "?"; counts[t] = (counts[t] ?? 0) + 1 }, destroy(id) { types.delete(id) } }).enable(); ' +
                "process.on('SIGUSR2', () => { console.error('callbacks', JSON.stringify(counts)); counts = {} })",
            ),
        ]
      : []
    const execArgv = [
      ...counting,
      '--expose-gc',
      ...(pkg ? [redirect(pkg)] : []),
      ...(argv.includes('--trace-gc') ? ['--trace-gc'] : []),
    ]
    const child = new Child(path.join(here, 'server.mjs'), [name], { execArgv, name: label })
    const info = await child.call('info', {}, 30_000)
    child.port = info.port
    log(`${label}: pid ${info.pid}`)
    child.agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    if (!pin(child, 0)) log('warning: could not pin', name)
    return child
  }
  const waitSubs = (server, n) => waitSubscriptions(server, n)

  const raw = await startServer('raw')
  // --after=<dir>: the same for the main listenjs server (default: this package's own dist/).
  const AFTER = argv.find((a) => a.startsWith('--after='))?.slice('--after='.length)
  const fa = await startServer('fastify', 'fastify', AFTER)
  const fb = GEN ? await startServer('fastify', 'fastify-gen') : undefined
  const fc = BEFORE ? await startServer('fastify', 'fastify-before', BEFORE) : undefined
  // One generator per server it serves: a process holds at most 20,000 descriptors here.
  const gen = new Child(path.join(here, 'generator.mjs'), ['0', '1'], { name: 'generator' })
  const gen2 = fb
    ? new Child(path.join(here, 'generator.mjs'), ['0', '1'], { name: 'generator 2' })
    : undefined
  const cl = new Child(fileURLToPath(import.meta.url), [], {
    name: 'clients',
    env: { ...process.env, ONESTATE_ROLE: 'client' },
  })
  const cl2 = fc
    ? new Child(fileURLToPath(import.meta.url), [], {
        name: 'clients 2',
        env: { ...process.env, ONESTATE_ROLE: 'client' },
      })
    : undefined
  await sleep(300)
  if (cl2 && !pin(cl2, 1)) log('warning: could not pin the clients')
  if (!pin(gen, 1) || !pin(cl, 1) || (gen2 && !pin(gen2, 1))) log('warning: could not pin the clients')
  log(`servers raw:${raw.port} fastify:${fa.port}${fb ? ` fastify(gen):${fb.port}` : ''}; N = ${N}`)
  await gen.call(
    'connect',
    { system: 'raw', kind: 'raw', port: raw.port, lo: 0, hi: N, paths: ['/items'] },
    600_000,
  )
  await waitSubs(raw, N)
  await cl.call('connect', { port: fa.port, n: N }, 600_000)
  await waitSubs(fa, N)
  if (fb) {
    await gen2.call(
      'connect',
      { system: 'fb', kind: 'listen', port: fb.port, lo: 0, hi: N, paths: ['/items'] },
      600_000,
    )
    await waitSubs(fb, N)
  }
  if (fc) {
    await cl2.call('connect', { port: fc.port, n: N }, 600_000)
    await waitSubs(fc, N)
  }
  log('connected')

  const systems = [
    { id: 'ws pre-framed', server: raw, client: gen, sys: 'raw', url: '/items?mode=frame' },
    ...(SEND ? [{ id: 'ws send()', server: raw, client: gen, sys: 'raw', url: '/items?mode=send' }] : []),
    { id: 'listenjs (listenjs client)', server: fa, client: cl, url: '/items' },
    ...(fc ? [{ id: 'listenjs before', server: fc, client: cl2, url: '/items' }] : []),
    ...(fb
      ? [{ id: 'listenjs (raw-protocol gen)', server: fb, client: gen2, sys: 'fb', url: '/items' }]
      : []),
  ]
  let it = 5000
  const arm = (s, n) =>
    s.client.call(
      'arm',
      s.sys ? { system: s.sys, it: n, lo: 0, hi: N, perSocket: 1 } : { it: n, expected: N },
    )
  /** One change: POST, wait until every client has it. */
  const change = async (s) => {
    const n = ++it
    await arm(s, n)
    const collected = s.client.call('collect', { timeoutMs: 20_000 }, 40_000)
    const status = await post(s.server, s.url, n)
    if (status !== 201) throw new Error(`POST ${s.url}: ${status}`)
    const got = await collected
    if (got.received !== N) log(`warning: ${s.id} got ${got.received} / ${N}`)
    return got.received
  }
  const empty = new Map()
  const calibrate = async (server) => {
    const open = []
    const closed = []
    for (let i = 0; i < 5; i++) {
      await server.call('cpuStart', { collect: true, settleMs: SETTLE })
      await sleep(20)
      const c = await server.call('cpuStop', { collect: true, settleMs: SETTLE })
      open.push(c.open.total)
      closed.push(c.total)
    }
    const minorOpen = []
    const minorClosed = []
    for (let i = 0; i < 5; i++) {
      await server.call('cpuStart', { collect: 'minor', settleMs: SETTLE })
      await sleep(20)
      const c = await server.call('cpuStop', { collect: 'minor', settleMs: SETTLE })
      minorOpen.push(c.open.total)
      minorClosed.push(c.total)
    }
    empty.set(server, {
      open: median(open),
      closed: median(closed),
      minorOpen: median(minorOpen),
      minorClosed: median(minorClosed),
    })
  }
  for (const server of new Set(systems.map((s) => s.server))) await calibrate(server)
  log(
    'empty window (open / closed with a full GC / closed with a scavenge), µs:',
    [...empty]
      .map(
        ([s, e]) => `${s.name} ${e.open.toFixed(0)} / ${e.closed.toFixed(0)} / ${e.minorClosed.toFixed(0)}`,
      )
      .join(', '),
  )
  if (argv.includes('--count-callbacks')) {
    for (const s of systems) {
      // Each SIGUSR2 prints the counts since the last one (on the server's stderr) and resets them.
      await change(s)
      await sleep(100)
      process.kill(s.server.proc.pid, 'SIGUSR2')
      await sleep(100)
      console.error(`${s.id}, one change:`)
      await change(s)
      await sleep(200)
      process.kill(s.server.proc.pid, 'SIGUSR2')
      await sleep(100)
    }
  }
  // Warm-up: a few changes per system, not counted.
  for (const s of systems) for (let i = 0; i < 3; i++) await change(s)

  const results = {} // method → system → [µs/msg]
  const extra = {} // system → {gcMs, user, system}
  const record = (method, s, v) => ((results[method] ??= {})[s.id] ??= []).push(v)
  if (PROFILE) for (const s of systems) await s.server.call('profileStart', { samplingUs: 100 })

  for (let round = 0; round < ROUNDS; round++) {
    const order = systems.map((_, i) => systems[(i + round) % systems.length])
    for (const s of order) {
      const e = empty.get(s.server)
      if (METHODS.includes('per-change')) {
        for (let k = 0; k < K; k++) {
          await s.server.call('cpuStart', { collect: true, settleMs: SETTLE, tag: `${s.id}-pc` })
          const got = await change(s)
          const c = await s.server.call('cpuStop', { collect: true, settleMs: SETTLE })
          record('per-change open (run.mjs)', s, (c.open.total - e.open) / got)
          record('per-change open, no subtraction', s, c.open.total / got)
          record('per-change closed (GC billed)', s, (c.total - e.closed) / got)
          record('per-change closed, no subtraction', s, c.total / got)
          ;(extra[s.id] ??= { sysShare: [] }).sysShare.push(c.open.system / c.open.total)
          await sleep(30)
        }
      }
      if (METHODS.includes('minor')) {
        // One change per window, between two scavenges of the young generation (the second inside).
        for (let k = 0; k < K; k++) {
          await s.server.call('cpuStart', { collect: 'minor', settleMs: SETTLE })
          const got = await change(s)
          const c = await s.server.call('cpuStop', { collect: 'minor', settleMs: SETTLE })
          record('per-change minor GCs, open', s, (c.open.total - e.minorOpen) / got)
          record('per-change minor GCs, closed', s, (c.total - e.minorClosed) / got)
          await sleep(30)
        }
      }
      if (METHODS.includes('natural')) {
        // One change per window, no forced GC anywhere: V8 collects when it would.
        for (let k = 0; k < K; k++) {
          await s.server.call('cpuStart', { collect: false })
          const got = await change(s)
          const c = await s.server.call('cpuStop', {})
          record('per-change natural (no forced GC)', s, c.total / got)
          await sleep(30)
        }
      }
      if (METHODS.includes('steady')) {
        await s.server.call('cpuStart', { collect: true, settleMs: SETTLE, tag: `${s.id}-st` })
        let got = 0
        for (let k = 0; k < K; k++) {
          got += await change(s)
          await sleep(20)
        }
        const c = await s.server.call('cpuStop', { collect: true, settleMs: SETTLE })
        // The 20 ms pauses are idle time: an empty window holds about as much.
        record('steady open', s, (c.open.total - e.open) / got)
        record('steady closed (GC billed)', s, (c.total - e.closed) / got)
        record('steady closed, no subtraction', s, c.total / got)
        record('steady open: user', s, c.open.user / got)
        record('steady open: system', s, c.open.system / got)
      }
      await sleep(100)
    }
    log(`round ${round + 1}/${ROUNDS} done`)
  }
  if (PROFILE) {
    const { summarizeProfile, formatProfile } = await import('./profile.mjs')
    const { writeFileSync, mkdirSync } = await import('node:fs')
    const dir = path.join(here, '..', '.tmp', 'onestate-profile')
    mkdirSync(dir, { recursive: true })
    for (const server of new Set(systems.map((s) => s.server))) {
      const saved = await server.call('profileStop', { dir, prefix: server.name }, 120_000)
      for (const [tag, files] of Object.entries(saved.files)) {
        writeFileSync(
          path.join(dir, `${tag.replace(/[^\w.-]+/g, '_')}.txt`),
          formatProfile(summarizeProfile(files)),
        )
      }
    }
    log(`profiles in ${dir}`)
  }

  const floorId = systems[0].id
  console.log(
    `\nN = ${N}, ${K} changes per window, ${ROUNDS} rounds (µs per delivered message: median (min–max), × floor)`,
  )
  for (const [method, bySystem] of Object.entries(results)) {
    console.log(`\n${method}`)
    const floor = median(bySystem[floorId])
    for (const [id, values] of Object.entries(bySystem)) {
      const m = median(values)
      const mean = values.reduce((a, b) => a + b, 0) / values.length
      const floorMean = bySystem[floorId].reduce((a, b) => a + b, 0) / bySystem[floorId].length
      console.log(
        `  ${id.padEnd(30)} ${m.toFixed(2).padStart(6)} (${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)})  ${(m / floor).toFixed(3)}×   mean ${mean.toFixed(2)} ${(mean / floorMean).toFixed(3)}×`,
      )
    }
  }
  console.log('\nsystem-time share (per-change windows):')
  for (const [id, x] of Object.entries(extra))
    console.log(`  ${id.padEnd(30)} ${(median(x.sysShare) * 100).toFixed(0)} %`)
  const mem = {}
  for (const server of new Set(systems.map((s) => s.server)))
    mem[server.name] = (await server.call('mem', {}, 60_000)).heapUsed
  console.log(
    'heap used after GC (MiB):',
    Object.entries(mem)
      .map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(1)}`)
      .join(', '),
  )
  clearTimeout(hard)
  await Promise.all([raw, fa, fb, fc, gen, gen2, cl, cl2].filter(Boolean).map((c) => c.stop()))
  process.exit(0)
}
