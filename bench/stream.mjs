// The HTTP stream next to the WebSocket: the server's CPU per delivered message, the staleness of a
// change at the client and the bytes on the wire, for the same change pushed to N subscribers over
// each transport. `node bench/stream.mjs [--quick]`, or the phase `stream` of bench/run.mjs.
//
// One hub process (this file with `--serve`: Fastify + listenjs, pinned to CPU 0 where taskset
// exists) serves two copies of the same public resource, `GET /items/ws` and `GET /items/es`, each a
// ~330-byte JSON body carrying the change number (`it`) and the moment its `POST` handler ran (`ts`).
// One client process (this file with `--clients`, pinned to CPU 1) holds N WebSocket clients (`ws`,
// subscribed to /items/ws) and N HTTP stream clients (`node:http`, one TCP connection each, parsing
// the Server-Sent Events, subscribed to /items/es), all open at once, spread over the source
// addresses 127.0.0.2–9. Two paths, so that a change reaches one transport's N clients only; both
// sets stay connected for the whole run, so each transport's windows see the other's idle clients.
//
// Per round (the first a warm-up), for each transport in turn (the order alternates): an empty window,
// then C changes, each in its own window from just before its `POST` until every client of that
// transport got it. It records the hub's `process.cpuUsage()` over each window, the clients' receipt
// times (receipt − `ts`: same host clock), and the bytes the hub's client sockets wrote
// (`socket.bytesWritten`, server side).
//
// Exports `streamPhase({ quick, log })` (JSON-serializable results) and `renderStream(results)`
// (markdown). Standalone, it prints the markdown and writes it and the raw results to .tmp/bench-stream/.
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
  SERVER_HOST,
  SOURCE_ADDRESSES,
} from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)
const HUB_PATH = '/listen'
const TRANSPORTS = ['ws', 'es']
const NAMES = { ws: 'WebSocket', es: 'HTTP stream' }

// ---------------------------------------------------------------------------------------------
// The hub process (`node --expose-gc bench/stream.mjs --serve`)

async function serve() {
  const gc = globalThis.gc
  if (typeof gc !== 'function') throw new Error('run the hub with --expose-gc')
  const { default: Fastify } = await import('fastify')
  const { default: listenjs } = await import('listenjs/fastify')
  const app = Fastify({ logger: false })
  await app.register(listenjs, {
    path: HUB_PATH,
    // No ping round inside a measurement (as in bench/server.mjs); the per-address limit stays at
    // its default (10,000), far above the 250 connections per address here.
    heartbeat: { intervalMs: 900_000, timeoutMs: 60_000 },
  })
  const states = new Map()
  const publicRoute = { config: { listenjs: { public: true } } }
  // The body names `/items` for both copies, so both transports carry bodies of the same size.
  app.get('/items/:copy', publicRoute, async (request) => {
    const s = states.get(request.params.copy) ?? { it: 0, ts: 0 }
    return stateBody('/items', s.it, s.ts)
  })
  app.post('/items/:copy', async (request, reply) => {
    states.set(request.params.copy, { it: request.body.it, ts: now() })
    reply.code(201)
    return { ok: true }
  })
  // Bytes on the wire, server side: every client socket (not the orchestrator's, from 127.0.0.1),
  // by transport. A socket that carried a stream request is `es`; the others were upgraded (`ws`).
  const sockets = new Set()
  const closed = { ws: 0, es: 0 }
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.method === 'POST' && request.url.startsWith(HUB_PATH)) request.raw.socket.kind = 'es'
    done()
  })
  await app.listen({ port: 0, host: SERVER_HOST })
  app.server.on('connection', (socket) => {
    if (socket.remoteAddress === SERVER_HOST) return
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      closed[socket.kind ?? 'ws'] += socket.bytesWritten
    })
  })
  const hub = app.listenjs
  let cpuAt
  serveCommands({
    info: () => ({ port: app.server.address().port }),
    stats: () => ({ subscriptions: hub.stats().subscriptions, sockets: sockets.size }),
    // A window: a full GC and a short settle outside it; a scavenge inside it at its end, so the
    // young garbage the window made is billed to it (the empty window holds that GC's own cost).
    cpuStart: async ({ settleMs = 20 } = {}) => {
      gc()
      await sleep(settleMs)
      cpuAt = process.cpuUsage()
      return true
    },
    cpuStop: () => {
      gc({ type: 'minor' })
      const d = process.cpuUsage(cpuAt)
      return { user: d.user, system: d.system, total: d.user + d.system }
    },
    bytes: () => {
      const out = { ...closed }
      for (const socket of sockets) out[socket.kind ?? 'ws'] += socket.bytesWritten
      return out
    },
  })
}

// ---------------------------------------------------------------------------------------------
// The client process (`node bench/stream.mjs --clients`)

async function clients() {
  // Loopback source addresses other than 127.0.0.1 exist on Linux; elsewhere, fall back to 127.0.0.1.
  const sources = await new Promise((resolve) => {
    const probe = net.createServer()
    probe.once('error', () => resolve([SERVER_HOST]))
    probe.listen(0, SOURCE_ADDRESSES[0], () => probe.close(() => resolve(SOURCE_ADDRESSES)))
  })
  const groups = new Map() // transport → { clients: [], armed }

  /** Every server message of a client: `t` is its receipt time, taken before any parsing. */
  const onMessage = (group, client, t, text, bytes) => {
    const message = JSON.parse(text)
    if (message.type === 'data' && message.snapshot) {
      client.ready?.()
      return
    }
    if (message.type === 'welcome') {
      client.welcome?.()
      return
    }
    if (message.type === 'ping') {
      client.pong?.()
      return
    }
    if (message.type !== 'data') {
      console.error(`stream clients: unexpected ${text.slice(0, 200)}`)
      return
    }
    const armed = group.armed
    if (!armed || message.json.it !== armed.it || client.lastIt === armed.it) return
    client.lastIt = armed.it
    armed.lat[armed.count] = t - message.json.ts
    armed.count++
    armed.payload = bytes
    if (armed.count === armed.expected) armed.done?.()
  }

  const connectWs = (port, group, localAddress, copy) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${SERVER_HOST}:${port}${HUB_PATH}`, 'listenjs.v1', {
        localAddress,
        perMessageDeflate: false,
        handshakeTimeout: 10_000,
      })
      const client = { close: () => ws.terminate(), lastIt: undefined }
      const timer = setTimeout(() => reject(new Error('WebSocket: no snapshot in 15 s')), 15_000)
      client.welcome = () => ws.send(JSON.stringify({ type: 'subscribe', path: `/items/${copy}` }))
      client.pong = () => ws.send('{"type":"pong"}')
      client.ready = () => {
        clearTimeout(timer)
        resolve(client)
      }
      ws.on('error', reject)
      ws.on('message', (data) => onMessage(group, client, now(), data.toString('utf8'), data.length))
    })

  const connectStream = (port, group, localAddress, copy) =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({
        protocols: ['listenjs.v1'],
        messages: [{ type: 'subscribe', path: `/items/${copy}` }],
      })
      const client = { lastIt: undefined }
      const timer = setTimeout(() => reject(new Error('HTTP stream: no snapshot in 15 s')), 15_000)
      client.ready = () => {
        clearTimeout(timer)
        resolve(client)
      }
      const req = http.request(
        {
          host: SERVER_HOST,
          port,
          path: HUB_PATH,
          method: 'POST',
          agent: false,
          localAddress,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          if (res.statusCode !== 200) {
            reject(new Error(`HTTP stream: status ${res.statusCode}`))
            res.resume()
            return
          }
          res.setEncoding('utf8')
          let buf = ''
          res.on('data', (chunk) => {
            const t = now()
            buf += chunk
            for (let end = buf.indexOf('\n\n'); end !== -1; end = buf.indexOf('\n\n')) {
              const event = buf.slice(0, end)
              buf = buf.slice(end + 2)
              const data = []
              let name = 'message'
              for (const line of event.split('\n')) {
                if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5))
                else if (line.startsWith('event:')) name = line.slice(6).trim()
              }
              if (name === 'close') console.error(`stream clients: stream closed ${data.join('\n')}`)
              else if (data.length) onMessage(group, client, t, data.join('\n'), Buffer.byteLength(event) + 2)
            }
          })
          res.on('error', () => {})
        },
      )
      client.close = () => req.destroy()
      req.on('error', reject)
      req.end(body)
    })

  serveCommands({
    /** Opens `n` clients of `transport` (at most 50 opening at once), each waited for until its snapshot. */
    connect: async ({ port, transport, n }) => {
      const group = { clients: [], armed: undefined }
      groups.set(transport, group)
      const open = transport === 'ws' ? connectWs : connectStream
      for (let i = 0; i < n; i += 50) {
        const batch = []
        for (let k = i; k < Math.min(n, i + 50); k++) {
          batch.push(open(port, group, sources[k % sources.length], transport))
        }
        group.clients.push(...(await Promise.all(batch)))
      }
      return { connected: group.clients.length }
    },
    arm: ({ transport, it }) => {
      const group = groups.get(transport)
      const expected = group.clients.length
      group.armed = { it, expected, count: 0, lat: new Float64Array(expected), cpu: process.cpuUsage() }
      return true
    },
    /** Resolves when every client of `transport` got the armed change, or after `timeoutMs`. */
    wait: async ({ transport, timeoutMs }) => {
      const armed = groups.get(transport).armed
      if (armed.count < armed.expected) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, timeoutMs)
          armed.done = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      armed.done = undefined
      const cpu = process.cpuUsage(armed.cpu)
      const lat = Array.from(armed.lat.subarray(0, armed.count))
      return { delivered: armed.count, expected: armed.expected, lat, payload: armed.payload, cpu }
    },
    close: ({ transport }) => {
      for (const client of groups.get(transport)?.clients ?? []) client.close()
      groups.delete(transport)
      return true
    },
  })
}

// ---------------------------------------------------------------------------------------------
// The phase

let changeNumber = 0

/** One transport's windows at one N, summed up. */
function summarize(n, windows, empties) {
  const measured = windows.filter((w) => !w.warmup)
  const lat = measured.flatMap((w) => w.lat).sort((a, b) => a - b)
  // Per round: (median window − that round's empty window) ÷ N; then the median over rounds.
  const rounds = [...new Set(measured.map((w) => w.round))]
  const cpuPerRound = rounds.map((r) => {
    const cpu = median(measured.filter((w) => w.round === r).map((w) => w.cpu))
    return (cpu - empties[r]) / n
  })
  const last = measured.map((w) => w.last)
  return {
    n,
    windows: measured.length,
    rounds: rounds.length,
    delivered: windows.reduce((s, w) => s + w.delivered, 0),
    expected: windows.reduce((s, w) => s + w.expected, 0),
    cpuUs: median(cpuPerRound),
    cpuPerRound,
    emptyUs: median(rounds.map((r) => empties[r])),
    windowUs: median(measured.map((w) => w.cpu)),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    lastMedian: median(last),
    lastWorst: Math.max(...last),
    // every counted window: [round, ms to the last delivery, hub CPU µs], for the raw results
    lastPerWindow: measured.map((w) => [w.round, Number(w.last.toFixed(2)), w.cpu]),
    bytes: median(measured.map((w) => w.bytes / w.delivered)),
    payload: median(measured.map((w) => w.payload)),
    clientUs: median(measured.map((w) => w.clientCpu / w.delivered)),
  }
}

/** One N: both transports' clients open, `rounds` interleaved rounds (the first a warm-up). */
async function measureN(hub, gen, n, { rounds, changes, deadline, log }) {
  const t0 = now()
  for (const transport of TRANSPORTS) {
    const { connected } = await gen.call('connect', { port: hub.port, transport, n }, 120_000)
    if (connected !== n) throw new Error(`${connected} ${transport} clients connected, expected ${n}`)
  }
  const stats = await hub.call('stats')
  if (stats.subscriptions !== 2 * n) {
    throw new Error(`the hub holds ${stats.subscriptions} subscriptions, expected ${2 * n}`)
  }
  log(`  N=${n}: ${2 * n} clients subscribed in ${((now() - t0) / 1000).toFixed(1)} s`)
  const windows = { ws: [], es: [] }
  const empties = { ws: [], es: [] }
  const windowMs = { ws: 10, es: 10 }
  let round = 0
  for (; round < rounds && (round < 2 || now() < deadline); round++) {
    const order = round % 2 ? ['es', 'ws'] : ['ws', 'es']
    for (const transport of order) {
      // The empty window: the same calls, as long as this transport's last window, without a change.
      await hub.call('cpuStart')
      await sleep(windowMs[transport])
      empties[transport][round] = (await hub.call('cpuStop')).total
      for (let c = 0; c < changes; c++) {
        const it = ++changeNumber
        await gen.call('arm', { transport, it })
        const b0 = await hub.call('bytes')
        await hub.call('cpuStart')
        const w0 = now()
        const [status, got] = await Promise.all([
          post(hub, `/items/${transport}`, it),
          gen.call('wait', { transport, timeoutMs: 10_000 }, 20_000),
        ])
        const cpu = await hub.call('cpuStop')
        windowMs[transport] = now() - w0
        const b1 = await hub.call('bytes')
        if (status !== 201) throw new Error(`POST answered ${status}`)
        windows[transport].push({
          round,
          warmup: round === 0,
          cpu: cpu.total,
          delivered: got.delivered,
          expected: got.expected,
          lat: got.lat,
          last: got.lat.length ? Math.max(...got.lat) : NaN,
          bytes: b1[transport] - b0[transport],
          payload: got.payload,
          clientCpu: got.cpu.user + got.cpu.system,
        })
      }
    }
  }
  for (const transport of TRANSPORTS) await gen.call('close', { transport })
  const out = { n, rounds: round }
  for (const transport of TRANSPORTS) out[transport] = summarize(n, windows[transport], empties[transport])
  return out
}

/**
 * One change's event as it leaves the hub: a raw TCP client (from 127.0.0.1, outside the byte
 * counts) opens a stream on /items/probe, then a change is made; the response's bytes for it are
 * split into their HTTP/1.1 chunks. Resolves with the chunks' data sizes and the bytes on the wire.
 */
async function wireProbe(hub) {
  const body = JSON.stringify({
    protocols: ['listenjs.v1'],
    messages: [{ type: 'subscribe', path: '/items/probe' }],
  })
  const socket = net.connect({ host: SERVER_HOST, port: hub.port })
  let buf = Buffer.alloc(0)
  let waiter
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk])
    waiter?.()
  })
  const until = (test, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wire probe: ${what} missing after 10 s`)), 10_000)
      waiter = () => {
        if (!test()) return
        clearTimeout(timer)
        waiter = undefined
        resolve()
      }
      waiter()
    })
  try {
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    socket.write(
      `POST ${HUB_PATH} HTTP/1.1\r\nHost: ${SERVER_HOST}:${hub.port}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
    await until(() => buf.includes('"snapshot":true') && buf.latin1Slice().endsWith('\n\n\r\n'), 'snapshot')
    const mark = buf.length
    const it = ++changeNumber
    const status = await post(hub, '/items/probe', it)
    if (status !== 201) throw new Error(`POST answered ${status}`)
    const tail = () => buf.subarray(mark)
    await until(
      () => tail().includes(`"it":${it}`) && tail().latin1Slice().endsWith('\n\n\r\n'),
      'the change',
    )
    const wire = tail()
    const sizes = []
    for (let at = 0; at < wire.length;) {
      const eol = wire.indexOf('\r\n', at)
      const size = parseInt(wire.latin1Slice(at, eol), 16)
      if (!(size > 0)) throw new Error(`wire probe: not a chunk at ${at}`)
      sizes.push(size)
      at = eol + 2 + size + 2
    }
    return { chunks: sizes.length, sizes, data: sizes.reduce((a, b) => a + b, 0), wire: wire.length }
  } finally {
    socket.destroy()
  }
}

export async function streamPhase({ quick = false, log = console.error } = {}) {
  const config = quick
    ? { sizes: [50, 200], rounds: 6, changes: 2, budgetS: 20 }
    : { sizes: [100, 1000], rounds: 16, changes: 4, budgetS: 140 }
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
    loadBefore: os.loadavg(),
    bodyBytes: JSON.stringify(stateBody('/items', 123_456, now())).length,
  }
  const t0 = now()
  const file = fileURLToPath(import.meta.url)
  const hub = new Child(file, ['--serve'], { execArgv: ['--expose-gc'], name: 'stream hub' })
  const gen = new Child(file, ['--clients'], { name: 'stream clients' })
  try {
    hub.port = (await hub.call('info', {}, 30_000)).port
    hub.agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    results.pinned = pin(hub, 0) && pin(gen, 1)
    log(`stream: HTTP stream vs WebSocket${results.pinned ? ' (hub on CPU 0, clients on CPU 1)' : ''}`)
    results.sizes = []
    for (const [i, n] of config.sizes.entries()) {
      // Each size gets its share of what is left of the budget.
      const left = config.budgetS * 1000 - (now() - t0)
      const deadline = now() + left / (config.sizes.length - i)
      const r = await measureN(hub, gen, n, { ...config, deadline, log })
      results.sizes.push(r)
      for (const transport of TRANSPORTS) {
        const s = r[transport]
        log(
          `  N=${n} ${NAMES[transport]}: ${s.cpuUs.toFixed(2)} µs/msg, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, ${s.bytes.toFixed(0)} B/msg, ${s.delivered}/${s.expected}`,
        )
      }
    }
    results.probe = await wireProbe(hub)
    log(`  one event on the wire: ${results.probe.wire} B in ${results.probe.chunks} chunks`)
  } finally {
    hub.agent?.destroy()
    await Promise.all([hub.stop(), gen.stop()])
  }
  results.seconds = (now() - t0) / 1000
  results.loadAfter = os.loadavg()
  return results
}

// ---------------------------------------------------------------------------------------------
// Report

const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '—')
const us = (v) => (Number.isFinite(v) ? v.toFixed(v < 10 ? 2 : 1) : '—')
const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 2 : 1)} ms` : '—')
const x = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '—')
const load = (r) => `${r.loadBefore?.[0]?.toFixed(1) ?? '—'} / ${r.loadAfter?.[0]?.toFixed(1) ?? '—'}`
/** Whether other work was running on the host (a 1-minute load average above half the cores). */
const busy = (r) => Math.max(r.loadBefore?.[0] ?? 0, r.loadAfter?.[0] ?? 0) > r.machine.cores / 2
const pct = (s) => `${((s.delivered / s.expected) * 100).toFixed(s.delivered === s.expected ? 0 : 2)} %`

export function renderStream(r) {
  const out = []
  out.push(
    `### The HTTP stream vs WebSocket\n\nThe same change pushed to N subscribers over each transport. One hub process (Fastify + listenjs, defaults but a heartbeat slower than the run${r.pinned ? ', pinned to CPU 0' : ''}) serves two copies of one public resource, \`GET /items/ws\` and \`GET /items/es\` (\`config: { listenjs: { public: true } }\`: one replay per change for all subscribers), a ${int(r.bodyBytes)}-byte JSON body carrying the change number and the time its \`POST\` handler stamped (\`performance.timeOrigin + performance.now()\`). One client process${r.pinned ? ' on CPU 1' : ''} holds N WebSocket clients (\`ws\`, subprotocol \`listenjs.v1\`, subscribed to /items/ws) and N HTTP stream clients (\`node:http\`, \`agent: false\`: one TCP connection each, \`POST /listen\` with the subscribe in the body, Server-Sent Events split on blank lines), subscribed to /items/es, all open together, spread over the source addresses 127.0.0.2–9. Loopback only, no TLS, no compression. Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.os}, Node ${r.machine.node}; load average (1 min) ${load(r)} before / after the run. Date: ${r.date}. ${r.quick ? '**Quick run.** ' : ''}${r.seconds.toFixed(0)} s. Reproduce with \`npm run build && node bench/stream.mjs\`.`,
  )
  out.push(
    `*Method.* Rounds interleaved, the transports' order alternating, the first round a warm-up (not counted); per round and transport, an empty window then ${r.config.changes} changes, each a real \`POST /items/<copy>\` over loopback in its own window, from just before the \`POST\` until every client of that transport got the change (a full GC and a short settle before each window, a scavenge inside it at its end, so its young garbage is billed to it). *Server CPU per message*: \`process.cpuUsage()\` of the hub (user + system) over the window, minus the round's empty window, ÷ N, median over rounds; the \`POST\` itself (Fastify, the handler, one replay of \`GET\`) is in it, spread over N. *Staleness*: receipt time in the client (taken before parsing) − the stamp, over every delivery of the counted windows; *to the last delivery* is the largest per window (median, worst). *Bytes on the wire*: measured, server side: the \`bytesWritten\` delta of that transport's client sockets over the window ÷ deliveries (TCP payload: WebSocket frame headers, HTTP chunked framing and SSE framing in, TCP/IP headers out); *event* is the message as the client parsed it (the WebSocket frame's payload; for the stream, the SSE event with \`data: \` and the blank line). *Client CPU*: the client process's \`process.cpuUsage()\` from arming a change to its last delivery, ÷ deliveries (not corrected for idle: an upper bound).`,
  )
  const rows = []
  for (const size of r.sizes) {
    for (const t of TRANSPORTS) {
      const s = size[t]
      rows.push([
        int(size.n),
        NAMES[t],
        `${int(s.delivered)} / ${int(s.expected)} (${pct(s)})`,
        `**${us(s.cpuUs)}**`,
        `${us(Math.min(...s.cpuPerRound))}–${us(Math.max(...s.cpuPerRound))}`,
        ms(s.p50),
        ms(s.p99),
        `${ms(s.lastMedian)} / ${ms(s.lastWorst)}`,
        `${us(s.bytes)} B`,
        `${int(s.payload)} B`,
        us(s.clientUs),
        `${s.rounds} × ${r.config.changes}`,
      ])
    }
  }
  out.push(
    table(
      [
        'N',
        'transport',
        'delivered / expected',
        'server CPU µs / message',
        'rounds range',
        'staleness p50',
        'p99',
        'to last delivery (median / worst)',
        'wire bytes / message',
        'event',
        'client CPU µs / message',
        'rounds × changes',
      ],
      rows,
    ),
  )
  out.push(
    `*The stream ÷ the WebSocket*, per N:\n\n` +
      table(
        ['N', 'server CPU / message', 'staleness p50', 'p99', 'to last delivery', 'wire bytes / message'],
        r.sizes.map((size) => {
          const [a, b] = [size.ws, size.es]
          return [
            int(size.n),
            `**${x(b.cpuUs / a.cpuUs)}**`,
            x(b.p50 / a.p50),
            x(b.p99 / a.p99),
            x(b.lastMedian / a.lastMedian),
            x(b.bytes / a.bytes),
          ]
        }),
      ),
  )
  out.push(reading(r))
  return out.join('\n\n')
}

/** A short reading of the numbers, written from them. */
function reading(r) {
  const big = r.sizes.at(-1)
  const [a, b] = [big.ws, big.es]
  const allDelivered = r.sizes.every((s) => TRANSPORTS.every((t) => s[t].delivered === s[t].expected))
  const parts = []
  parts.push(
    `*Reading.* At N = ${int(big.n)}, a message over the HTTP stream costs the hub ${us(b.cpuUs)} µs against ${us(a.cpuUs)} µs over a WebSocket (${x(b.cpuUs / a.cpuUs)}), and takes ${us(b.bytes)} bytes on the wire against ${us(a.bytes)} (${x(b.bytes / a.bytes)}).`,
  )
  const probe = r.probe
  parts.push(
    `The bytes beyond the event (${int(b.bytes - b.payload)} B here, against ${int(a.bytes - a.payload)} B of WebSocket frame header) are HTTP/1.1 chunked transfer encoding: the response has no length${probe ? `, and one change's event left the hub as ${probe.chunks} chunk${probe.chunks === 1 ? '' : 's'} (${probe.sizes.join(' + ')} bytes of data, ${probe.wire} bytes with their hex size lines and CRLFs; read off the wire by a raw TCP client)` : ''}, each chunk with its own size line and CRLF; the SSE framing itself (\`data: \` and the blank line) is 8 bytes.`,
  )
  parts.push(
    `Staleness: p50 ${ms(b.p50)} vs ${ms(a.p50)}, p99 ${ms(b.p99)} vs ${ms(a.p99)}, the last delivery ${ms(b.lastMedian)} vs ${ms(a.lastMedian)} after the stamp. These include the hub writing N sockets in turn and one client process reading N sockets in turn (client CPU ${us(b.clientUs)} vs ${us(a.clientUs)} µs per message: \`node:http\`'s response parser with chunked decoding against \`ws\`'s frame parser), and the p99 and the worst case rest on the few slowest windows: a figure of this harness more than of one user, whose browser holds one connection, not N.`,
  )
  if (busy(r)) {
    parts.push(
      `**The host was busy** (load average ${load(r)} on ${r.machine.cores} cores: other processes shared the CPUs the hub and the clients were pinned to), so the staleness tails (p99, worst) hold scheduling delays of the whole host and move from run to run; CPU time per message is counted per process and is the steadier figure, though contention inflates it too.`,
    )
  }
  parts.push(
    allDelivered
      ? 'Every change reached every client on both transports.'
      : '**Not every change reached every client**: see delivered / expected.',
  )
  parts.push(
    `Where the CPU goes, read from the code (src/node/endpoint.ts, src/node/stream.ts), not measured: a WebSocket message is one pre-framed buffer, built once per change and written to each socket as it is; a stream event is built once per change too (\`data: \`, the message, the blank line), but goes through Node's \`ServerResponse.write\` for each response, which adds the chunked encoding's size line and CRLFs and its own bookkeeping per write.`,
  )
  parts.push(
    `Limits: loopback on one machine (${r.machine.cores} cores), hub and clients each on one core; no TLS, no proxy (a proxy in front of a stream adds its own copy and buffering); one ~${int(r.bodyBytes)}-byte public body, no patches; single-change windows are short, so see the rounds' range next to each median.`,
  )
  return parts.join(' ')
}

// ---------------------------------------------------------------------------------------------
// Standalone

async function main() {
  const quick = process.argv.includes('--quick')
  const limitMs = quick ? 30_000 : 180_000
  const hardLimit = setTimeout(() => {
    console.error(`stream: hard time limit (${limitMs / 1000} s) reached; killing everything`)
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
    results = await streamPhase({ quick, log })
  } catch (error) {
    console.error('stream: failed:', error)
    killChildren()
    process.exit(1)
  }
  clearTimeout(hardLimit)
  const outDir = path.join(root, '.tmp', 'bench-stream')
  mkdirSync(outDir, { recursive: true })
  const markdown = renderStream(results)
  writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 1))
  writeFileSync(path.join(outDir, 'stream.md'), markdown)
  console.log(markdown)
  console.error(`stream: stream.md and results.json in ${path.relative(process.cwd(), outDir) || '.'}`)
}

if (process.argv[2] === '--serve') await serve()
else if (process.argv[2] === '--clients') await clients()
else if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href)
  await main()
