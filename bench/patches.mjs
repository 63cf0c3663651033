// Patches (protocol 1.1): what a `patch` frame saves on the wire and costs the server, for the
// calendar list. `node bench/patches.mjs [--quick]`, or the phase `patches` of bench/run.mjs.
//
// The resource is `GET /appointments`, a top-level JSON array of N appointments shaped like the
// calendar example's (examples/calendar/store.mjs: id, title, start, end, location, notes), N = 10,
// 100, 1,000; every change edits the title of one appointment (`PATCH /appointments/:id`). It measures
//   - bytes on the wire per change per subscriber, read at the client's TCP socket (`bytesRead`), for
//     a raw `ws` client offering `listenjs.v1` (full states) and one offering `listenjs.v1.1`
//     (patches), both subscribed to the same hub; and, computed offline from the same two states, the
//     size of an RFC 7396 JSON Merge Patch of the change (for a top-level array: the whole array);
//   - the server CPU of a patch: (a) a microbenchmark of what src/core/states.ts does once per group
//     and change (JSON.parse of both bodies, `diff`, JSON.stringify of the ops, `checksum`), and (b)
//     the hub process's CPU (`process.cpuUsage`) over K changes with one subscriber, patches on vs
//     `patches: false`, interleaved in rounds;
//   - the sizes of one conditional-polling exchange (a 304 and a 200, with the request bytes of the
//     polling phase of bench/run.mjs), measured on a TCP socket, from which the polling-vs-patch ratio
//     of one change interval (9 × 304 + 1 × 200 vs one patch frame) is computed.
// The hub runs in a child process (this file with `--serve`), pinned to CPU 0 where taskset exists;
// the clients and the requests run here. Loopback only.
//
// Exports `patchesPhase({ quick, log })` (JSON-serializable results) and `renderPatches(results)`
// (markdown). Standalone, it prints the markdown and writes it and the raw results to .tmp/bench-patches/.
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setTimeout, clearTimeout } from 'node:timers'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { table } from './chart.mjs'
import { Child, killChildren, median, now, pin, pollRequest, serveCommands, SERVER_HOST } from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)
const LIST = '/appointments'

// ---------------------------------------------------------------------------------------------
// The resource

const TITLES = ['Team stand-up', 'Dentist', 'Lunch with Giulia', 'Sprint review', 'Call with the bank']
const PLACES = ['Room Galilei', 'Via Roma 12', 'Trattoria da Mario', '', 'Room Volta']

/** N appointments as the calendar's store lists them (sorted by start; ids are strings). */
function appointments(n) {
  const monday = Date.UTC(2025, 4, 5)
  return Array.from({ length: n }, (_, k) => {
    const start = monday + Math.floor(k / 8) * 86_400_000 + (8 + (k % 8)) * 3_600_000
    const item = {
      id: String(k + 1),
      title: `${TITLES[k % TITLES.length]} #${k + 1}`,
      start: new Date(start).toISOString(),
      end: new Date(start + 45 * 60_000).toISOString(),
    }
    if (PLACES[k % PLACES.length]) item.location = PLACES[k % PLACES.length]
    if (k % 3 === 0) item.notes = 'Bring the insurance card and the signed forms'
    return item
  })
}

/** The new title of change `it`: as long as the old titles, so the full state keeps its size. */
const titleOf = (it) => `Edited title ${String(it).padStart(6, '0')}`

// ---------------------------------------------------------------------------------------------
// Offline references

/**
 * The RFC 7396 JSON Merge Patch from `a` to `b` (a reference, not a minimal one): objects give an
 * object of their changed members (`null` for a removed one), anything else that changed is
 * replaced whole. Arrays are not merged (RFC 7396 has no array ops): an edit inside a top-level
 * array is the whole new array, which is what this comparison is about. `undefined`: no change.
 */
function mergeDiff(a, b) {
  const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (isObject(a) && isObject(b)) {
    const out = {}
    for (const key of Object.keys(a)) if (!Object.hasOwn(b, key)) out[key] = null
    for (const key of Object.keys(b)) {
      const d = Object.hasOwn(a, key) ? mergeDiff(a[key], b[key]) : b[key]
      if (d !== undefined) out[key] = d
    }
    return Object.keys(out).length ? out : undefined
  }
  return JSON.stringify(a) === JSON.stringify(b) ? undefined : b
}

/** Bytes of an unmasked server-to-client WebSocket frame carrying `payload` bytes (RFC 6455 §5.2). */
const wsFrameBytes = (payload) => payload + (payload < 126 ? 2 : payload < 65_536 ? 4 : 10)

/**
 * `diff` and `checksum` as the hub runs them: src/core/diff.ts and checksum.ts compiled by esbuild
 * with tsup's target (the dist chunks export them under generated names only).
 */
async function loadCore() {
  const { build } = await import('esbuild')
  const out = await build({
    stdin: {
      contents: "export { diff } from './src/core/diff'\nexport { checksum } from './src/core/checksum'\n",
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    target: 'es2022',
  })
  const code = out.outputFiles[0].text
  return import(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`)
}

/**
 * (a) What States.build does per group and change, timed in batches; per step and in all, median µs
 * per change over the batches. Bounded: at most `batches` batches and `budgetMs` per size.
 */
function microbench({ diff, checksum }, n, { batches, budgetMs }) {
  const list = appointments(n)
  const before = JSON.stringify(list)
  const edited = list.map((item, k) => (k === n >> 1 ? { ...item, title: titleOf(1) } : item))
  const after = JSON.stringify(edited)
  const perBatch = Math.max(1, Math.round(4000 / n))
  const steps = { parse: [], diff: [], stringify: [], checksum: [], total: [] }
  const deadline = performance.now() + budgetMs
  let opsLength = 0
  for (let b = 0; b < batches && performance.now() < deadline; b++) {
    const t = { parse: 0, diff: 0, stringify: 0, checksum: 0 }
    const t0 = performance.now()
    for (let i = 0; i < perBatch; i++) {
      const a = performance.now()
      const next = JSON.parse(after)
      const prev = JSON.parse(before)
      const c = performance.now()
      const ops = diff(prev, next)
      const d = performance.now()
      const json = JSON.stringify(ops)
      const e = performance.now()
      const sum = checksum(next)
      const f = performance.now()
      t.parse += c - a
      t.diff += d - c
      t.stringify += e - d
      t.checksum += f - e
      opsLength = json.length + (sum & 0) // keeps both results alive
    }
    const total = performance.now() - t0
    // the first batch warms the JIT up: not counted
    if (b === 0) continue
    for (const k of Object.keys(t)) steps[k].push((t[k] / perBatch) * 1000)
    steps.total.push((total / perBatch) * 1000)
  }
  const us = Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, median(v)]))
  return { n, bodyBytes: after.length, opsBytes: opsLength, batches: steps.total.length, perBatch, us }
}

// ---------------------------------------------------------------------------------------------
// The hub process (`node bench/patches.mjs --serve on|off`)

async function serve(patches) {
  const { default: Fastify } = await import('fastify')
  const { default: listenjs } = await import('listenjs/fastify')
  let items = []
  let version = 0
  const app = Fastify({ logger: false })
  await app.register(listenjs, {
    path: '/listen',
    limits: { connectionsPerAddress: 1_000_000 },
    // No ping round inside a measurement (as in bench/server.mjs).
    heartbeat: { intervalMs: 900_000, timeoutMs: 60_000 },
    ...(patches ? {} : { patches: false }),
  })
  // The list, with an ETag and 304 for conditional polling (as bench/server.mjs's /items), public:
  // one replay for every subscriber.
  app.get(LIST, { config: { listenjs: { public: true } } }, async (request, reply) => {
    const etag = `"a${version}"`
    reply.header('etag', etag)
    if (request.headers['if-none-match'] === etag) return reply.code(304).send()
    return items
  })
  // The calendar's edit of one appointment; the write reaches the listeners of the list.
  app.patch(`${LIST}/:id`, { config: { listenjs: { changes: [LIST] } } }, async (request, reply) => {
    const k = items.findIndex((item) => item.id === request.params.id)
    if (k === -1) return reply.code(404).send()
    items = items.with(k, { ...items[k], title: request.body.title })
    version++
    return items[k]
  })
  await app.listen({ port: 0, host: SERVER_HOST })
  const hub = app.listenjs
  serveCommands({
    info: () => ({ port: app.server.address().port }),
    seed: ({ n }) => {
      items = appointments(n)
      version++
      return { bytes: JSON.stringify(items).length }
    },
    cpu: () => process.cpuUsage(),
    stats: () => hub.stats(),
  })
}

// ---------------------------------------------------------------------------------------------
// Clients

/** A PATCH of one appointment's title over a keep-alive agent; resolves with the status. */
function editTitle(port, agent, id, title) {
  const body = JSON.stringify({ title })
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: SERVER_HOST,
        port,
        path: `${LIST}/${id}`,
        method: 'PATCH',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: 15_000,
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
      },
    )
    req.on('timeout', () => req.destroy(new Error('PATCH timed out')))
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * A raw `ws` client subscribed to the list: `protocols` is what it offers. It keeps every frame of
 * the list after the snapshot, and the bytes its TCP socket had read when each arrived.
 */
async function subscriber(port, protocols, localAddress) {
  const ws = new WebSocket(`ws://${SERVER_HOST}:${port}/listen`, protocols, {
    localAddress,
    perMessageDeflate: false,
    handshakeTimeout: 10_000,
  })
  const client = { ws, frames: [], waiter: undefined, snapshot: undefined }
  const snapshot = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no snapshot in 15 s')), 15_000)
    ws.on('error', reject)
    ws.on('message', (data) => {
      // `_socket` is ws's private net.Socket: its bytesRead is what came over TCP, frame headers in.
      const bytesRead = ws._socket.bytesRead
      const message = JSON.parse(data.toString('utf8'))
      if (message.type === 'ping') ws.send('{"type":"pong"}')
      else if (message.type === 'welcome') ws.send(JSON.stringify({ type: 'subscribe', path: LIST }))
      else if (message.type === 'data' && client.snapshot === undefined) {
        clearTimeout(timer)
        client.snapshot = { message, bytesRead }
        resolve()
      } else if (message.type === 'data' || message.type === 'patch') {
        client.frames.push({ message, bytesRead, bytes: data.length })
        client.waiter?.()
      } else if (message.type === 'error') reject(new Error(`hub error: ${data}`))
      else console.error('patches: unexpected frame', String(data).slice(0, 200))
    })
  })
  await snapshot
  return client
}

/** Resolves when `client` has `count` frames after its snapshot; rejects after `ms`. */
function frames(client, count, ms = 15_000) {
  if (client.frames.length >= count) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`frame ${count} missing after ${ms} ms`)), ms)
    client.waiter = () => {
      if (client.frames.length < count) return
      clearTimeout(timer)
      client.waiter = undefined
      resolve()
    }
  })
}

/**
 * One conditional-polling exchange on a fresh TCP connection, with the request of the polling
 * phase (bench/lib.mjs `pollRequest`, Chrome 126's headers, for this path): bytes written and read
 * for a 200 (no If-None-Match) and then a 304 (the ETag it got) on the same keep-alive connection.
 */
async function pollExchanges(port) {
  const socket = net.connect({ host: SERVER_HOST, port })
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  let buf = Buffer.alloc(0)
  const exchange = (etag) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('poll answer missing after 10 s')), 10_000)
      const w0 = socket.bytesWritten
      const r0 = socket.bytesRead
      const onData = (chunk) => {
        buf = Buffer.concat([buf, chunk])
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const head = buf.latin1Slice(0, end)
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0)
        if (buf.length < end + 4 + length) return
        buf = buf.subarray(end + 4 + length)
        socket.off('data', onData)
        clearTimeout(timer)
        resolve({
          status: Number(head.slice(9, 12)),
          etag: /\r\netag:\s*([^\r\n]+)/i.exec(head)?.[1],
          request: socket.bytesWritten - w0,
          response: socket.bytesRead - r0,
        })
      }
      socket.on('data', onData)
      socket.write(pollRequest(port, 1234, etag).replace('GET /items ', `GET ${LIST} `))
    })
  const full = await exchange()
  const notModified = await exchange(full.etag)
  socket.destroy()
  if (full.status !== 200 || notModified.status !== 304) {
    throw new Error(`polling exchange answered ${full.status} then ${notModified.status}`)
  }
  return { full, notModified }
}

// ---------------------------------------------------------------------------------------------
// The phase

async function startHub(patches) {
  const child = new Child(fileURLToPath(import.meta.url), ['--serve', patches ? 'on' : 'off'], {
    name: `patches hub (${patches ? 'on' : 'off'})`,
  })
  child.port = (await child.call('info', {}, 30_000)).port
  child.agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  return child
}

let changeNumber = 0

/** Bytes per change: a v1 and a v1.1 client on the same hub, `changes` edits of one title each. */
async function wireBytes(hub, n, changes, core) {
  const seeded = await hub.call('seed', { n })
  const full = await subscriber(hub.port, 'listenjs.v1', '127.0.0.2')
  const patched = await subscriber(hub.port, ['listenjs.v1.1', 'listenjs.v1'], '127.0.0.3')
  if (full.ws.protocol !== 'listenjs.v1' || patched.ws.protocol !== 'listenjs.v1.1') {
    throw new Error(`the hub selected ${full.ws.protocol} and ${patched.ws.protocol}`)
  }
  const stats0 = await hub.call('stats')
  let state = full.snapshot.message.json
  let held = patched.snapshot.message.json
  const rows = []
  let wrong = 0
  for (let k = 0; k < changes; k++) {
    const it = ++changeNumber
    const id = String(1 + ((k * 7) % n))
    const status = await editTitle(hub.port, hub.agent, id, titleOf(it))
    if (status !== 200) throw new Error(`PATCH answered ${status}`)
    await Promise.all([frames(full, k + 1), frames(patched, k + 1)])
    const a = full.frames[k]
    const b = patched.frames[k]
    const next = a.message.json
    const row = {
      full: a.bytesRead - (k ? full.frames[k - 1].bytesRead : full.snapshot.bytesRead),
      fullPayload: a.bytes,
      wire: b.bytesRead - (k ? patched.frames[k - 1].bytesRead : patched.snapshot.bytesRead),
      type: b.message.type,
      body: JSON.stringify(next).length,
    }
    if (b.message.type === 'patch') {
      // The client's side: the patched state must be the full state, and its sum the hub's.
      held = core.applyPatch(held, b.message.ops)
      if (JSON.stringify(held) !== JSON.stringify(next) || core.checksum(held) !== b.message.sum) wrong++
      const ops = JSON.stringify(b.message.ops).length
      const merge = JSON.stringify(mergeDiff(state, next)).length
      row.ops = ops
      row.merge = merge
      // The same frame with the merge patch in place of the ops (computed, not sent).
      row.mergeWire = wsFrameBytes(b.bytes - ops + merge)
    } else held = b.message.json
    state = next
    rows.push(row)
  }
  const stats1 = await hub.call('stats')
  full.ws.terminate()
  patched.ws.terminate()
  const med = (k) => median(rows.map((r) => r[k]))
  return {
    n,
    bodyBytes: seeded.bytes,
    changes,
    patchFrames: rows.filter((r) => r.type === 'patch').length,
    wrong,
    full: med('full'),
    fullPayload: med('fullPayload'),
    patch: med('wire'),
    ops: med('ops'),
    merge: med('merge'),
    mergeWire: med('mergeWire'),
    computed: stats1.patches.computed - stats0.patches.computed,
    declined: stats1.patches.declined - stats0.patches.declined,
    stateBytes: stats1.patches.stateBytes,
  }
}

/**
 * (b) The hub's CPU per change, patches on vs off: one v1.1 subscriber on each hub; per round, a
 * warm-up then K changes on one hub and K on the other (order alternating), each change waited for
 * at the subscriber; median µs per change over rounds.
 */
async function hubCpu(hubs, n, { rounds, k, warmup }) {
  const subs = []
  for (const hub of hubs) {
    await hub.call('seed', { n })
    subs.push(await subscriber(hub.port, ['listenjs.v1.1', 'listenjs.v1'], '127.0.0.4'))
  }
  const perChange = hubs.map(() => [])
  const missed = hubs.map(() => 0)
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 ? [1, 0] : [0, 1]
    for (const h of order) {
      const hub = hubs[h]
      const sub = subs[h]
      const run = async (count) => {
        for (let i = 0; i < count; i++) {
          const it = ++changeNumber
          // Counted before the write: its push may arrive before the write's own answer does.
          const before = sub.frames.length
          const status = await editTitle(hub.port, hub.agent, String(1 + ((it * 7) % n)), titleOf(it))
          if (status !== 200) throw new Error(`PATCH answered ${status}`)
          // A push that never comes is counted, not waited for forever.
          await frames(sub, before + 1, 3000).catch(() => missed[h]++)
        }
      }
      await run(warmup)
      const c0 = await hub.call('cpu')
      await run(k)
      const c1 = await hub.call('cpu')
      perChange[h].push((c1.user + c1.system - c0.user - c0.system) / k)
    }
  }
  const kinds = subs.map((s) => s.frames.at(-1)?.message.type)
  for (const sub of subs) sub.ws.terminate()
  return { n, k, rounds, on: median(perChange[0]), off: median(perChange[1]), all: perChange, kinds, missed }
}

export async function patchesPhase({ quick = false, log = console.error } = {}) {
  const sizes = [10, 100, 1000]
  const config = quick
    ? { changes: 5, batches: 30, budgetMs: 300, rounds: 3, k: { 10: 20, 100: 20, 1000: 5 }, warmup: 2 }
    : { changes: 40, batches: 400, budgetMs: 3000, rounds: 7, k: { 10: 200, 100: 100, 1000: 30 }, warmup: 10 }
  const core = { ...(await loadCore()), ...(await import('listenjs/client/patches')) }
  const results = {
    quick,
    config,
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
    },
    date: new Date().toISOString(),
  }
  const t0 = now()

  log('patches: (a) microbenchmark of a patch, as States.build computes it')
  results.micro = sizes.map((n) => microbench(core, n, config))
  for (const m of results.micro)
    log(`  N=${int(m.n)}: ${m.us.total.toFixed(1)} µs per change (${m.batches} batches)`)

  const on = await startHub(true)
  const off = await startHub(false)
  results.pinned = pin(on, 0) && pin(off, 0)
  try {
    log(`patches: bytes per change${results.pinned ? ' (hubs on CPU 0)' : ''}`)
    results.wire = []
    for (const size of sizes) {
      const w = await wireBytes(on, size, config.changes, core)
      w.poll = await pollExchanges(on.port)
      results.wire.push(w)
      log(
        `  N=${int(size)}: full ${int(w.full)} B, patch ${int(w.patch)} B (${w.patchFrames}/${w.changes} patches)`,
      )
    }
    log('patches: (b) hub CPU per change, patches on vs off')
    results.cpu = []
    for (const size of sizes) {
      const c = await hubCpu([on, off], size, {
        rounds: config.rounds,
        k: config.k[size],
        warmup: config.warmup,
      })
      results.cpu.push(c)
      log(
        `  N=${int(size)}: on ${c.on.toFixed(1)} µs, off ${c.off.toFixed(1)} µs per change (${c.kinds.join('/')}, missed ${c.missed.join('/')})`,
      )
    }
  } finally {
    await Promise.all([on.stop(), off.stop()])
  }
  results.seconds = (now() - t0) / 1000
  return results
}

// ---------------------------------------------------------------------------------------------
// Report

const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '—')
const x = (v) => (Number.isFinite(v) ? `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}×` : '—')
const us = (v) => (Number.isFinite(v) ? v.toFixed(v < 10 ? 2 : 1) : '—')

/** Conditional polling per change interval (polls 10× as often as changes): 9 × 304 + 1 × 200. */
const pollBytes = (p) =>
  9 * (p.notModified.request + p.notModified.response) + p.full.request + p.full.response

/**
 * The target of issue 15, as a row of the report's targets: with patches, ≥ 50× fewer bytes than
 * conditional polling (polls 10× as often as changes), at every size of the calendar list.
 */
export function patchesTargets(r) {
  const ratios = r.wire.map((w) => [w.n, pollBytes(w.poll) / w.patch])
  const met = ratios.every(([, ratio]) => ratio >= 50)
  return [
    [
      'Patches vs conditional polling, changes 10× rarer (the calendar list, one title edited per change): ≥ 50 × fewer bytes',
      `${ratios.map(([n, ratio]) => `${int(n)} appointments ${x(ratio)}`).join(', ')} (computed from measured frames and HTTP exchanges, see "Patches")`,
      met ? 'met' : 'missed',
    ],
  ]
}

export function renderPatches(r) {
  const out = []
  out.push(
    `### Patches (protocol 1.1)\n\nThe calendar list \`GET ${LIST}\`: a top-level JSON array of N appointments shaped like examples/calendar's; every change edits the title of one appointment (\`PATCH ${LIST}/:id\`). One Fastify process with listenjs (default patch options${r.pinned ? ', pinned to CPU 0' : ''}); clients are raw \`ws\` sockets on loopback. Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.os}, Node ${r.machine.node}. Date: ${r.date}. ${r.quick ? '**Quick run.** ' : ''}${r.seconds.toFixed(0)} s. Reproduce with \`npm run bench:patches\`.`,
  )
  out.push(
    `#### Bytes per change per subscriber\n\n*Measured*: the bytes the client's TCP socket read for the change's frame (WebSocket header included, TCP/IP headers excluded), median over ${r.wire[0].changes} changes, for a client offering \`listenjs.v1\` (full state) and one offering \`listenjs.v1.1\` (patch), both subscribed to the same hub. *Computed* from the same two states: the JSON Patch ops as sent and an RFC 7396 JSON Merge Patch (a reference merge-diff; arrays have no merge ops, so an edit inside a top-level array is the whole new array), and that patch frame with the merge patch in place of the ops. Every patch was applied on the client side and checked against the full state and the hub's \`sum\`.\n\n` +
      table(
        [
          'N',
          'body',
          'full state frame',
          'patch frame',
          'full ÷ patch',
          'JSON Patch ops',
          'Merge Patch',
          'frame with Merge Patch',
          'full ÷ Merge',
          'patch frames / changes',
          'patches wrong',
        ],
        r.wire.map((w) => [
          int(w.n),
          `${int(w.bodyBytes)} B`,
          `${int(w.full)} B`,
          `${int(w.patch)} B`,
          x(w.full / w.patch),
          `${int(w.ops)} B`,
          `${int(w.merge)} B`,
          `${int(w.mergeWire)} B`,
          x(w.full / w.mergeWire),
          `${w.patchFrames} / ${w.changes}`,
          String(w.wrong),
        ]),
      ),
  )
  out.push(
    `#### Server CPU of a patch\n\n*(a) Microbenchmark*: exactly what the hub does once per group and change (\`States.build\`: JSON.parse of the new and the old body, \`diff\`, JSON.stringify of the ops, \`checksum\` of the new state; src/core compiled by esbuild as tsup does), in batches, the first one a warm-up; median µs per change.\n\n` +
      table(
        ['N', 'body', 'JSON.parse ×2', 'diff', 'stringify ops', 'checksum', 'total µs', 'batches × changes'],
        r.micro.map((m) => [
          int(m.n),
          `${int(m.bodyBytes)} B`,
          us(m.us.parse),
          us(m.us.diff),
          us(m.us.stringify),
          us(m.us.checksum),
          `**${us(m.us.total)}**`,
          `${m.batches} × ${m.perBatch}`,
        ]),
      ) +
      `\n\n*(b) End to end*: \`process.cpuUsage()\` of the hub process (user + system) over K changes, each a real \`PATCH\` over loopback, the hub's replay of \`GET\` and the push to one subscriber offering \`listenjs.v1.1\`, waited for; two hubs, patches on (default) and \`patches: false\`, K changes on each per round after a warm-up, order alternating; median over ${r.cpu[0].rounds} rounds. The whole request is in it (HTTP parsing, Fastify, the replay, serialization): the difference is what patches add.\n\n` +
      table(
        [
          'N',
          'K',
          'patches on µs/change',
          'patches: false µs/change',
          'overhead µs',
          'overhead %',
          'microbenchmark µs',
        ],
        r.cpu.map((c, i) => [
          int(c.n),
          String(c.k),
          us(c.on),
          us(c.off),
          us(c.on - c.off),
          `${(((c.on - c.off) / c.off) * 100).toFixed(0)} %`,
          us(r.micro[i].us.total),
        ]),
      ),
  )
  out.push(
    `#### Vs conditional polling, per change\n\n*Measured*: one 200 and one 304 exchange of \`GET ${LIST}\` on a keep-alive TCP connection, with the polling phase's request (Chrome 126's headers, a session cookie, \`If-None-Match\` on the second), bytes written + read; the push frames are the ones above. *Computed*: with polls 10× as often as changes (the polling phase's 100 ms / 1000 ms), one change interval of conditional polling costs 9 × (304 exchange) + 1 × (200 exchange), against one frame of push.\n\n` +
      table(
        [
          'N',
          '200 exchange',
          '304 exchange',
          'conditional polling per change',
          'full state frame',
          '× (full)',
          'patch frame',
          '× (patch)',
        ],
        r.wire.map((w) => {
          const p = w.poll
          const polling = pollBytes(p)
          return [
            int(w.n),
            `${int(p.full.request + p.full.response)} B (${int(p.full.request)} + ${int(p.full.response)})`,
            `${int(p.notModified.request + p.notModified.response)} B (${int(p.notModified.request)} + ${int(p.notModified.response)})`,
            `${int(polling)} B`,
            `${int(w.full)} B`,
            x(polling / w.full),
            `${int(w.patch)} B`,
            `**${x(polling / w.patch)}**`,
          ]
        }),
      ),
  )
  return out.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Standalone

async function main() {
  const quick = process.argv.includes('--quick')
  const limitMs = quick ? 60_000 : 5 * 60_000
  const hardLimit = setTimeout(() => {
    console.error(`patches: hard time limit (${limitMs / 1000} s) reached; killing everything`)
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
    results = await patchesPhase({ quick, log })
  } catch (error) {
    console.error('patches: failed:', error)
    killChildren()
    process.exit(1)
  }
  clearTimeout(hardLimit)
  const outDir = path.join(root, '.tmp', 'bench-patches')
  mkdirSync(outDir, { recursive: true })
  const markdown = renderPatches(results)
  writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 1))
  writeFileSync(path.join(outDir, 'patches.md'), markdown)
  console.log(markdown)
  console.error(`patches: patches.md and results.json in ${path.relative(process.cwd(), outDir) || '.'}`)
}

if (process.argv[2] === '--serve') await serve(process.argv[3] === 'on')
else if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href)
  await main()
