// A load generator process, forked by bench/run.mjs: `node bench/generator.mjs <g> <G>`. It holds the
// sockets whose global index i has i % G === g, for every system, over raw `ws` clients (no client
// library): the listenjs protocol, a minimal JSON protocol for the raw `ws` server, and Engine.IO v4
// / Socket.IO spoken directly. It also runs the HTTP pollers of the polling comparison over plain TCP
// keep-alive connections. Every receipt is timed first thing with the host clock (`now()`), and the
// latency is receipt − the `ts` the server stamped when the change was made.
import net from 'node:net'
import { setTimeout, clearTimeout, setImmediate } from 'node:timers'
import WebSocket from 'ws'
import { now, pollRequest, serveCommands, sleep, SOURCE_ADDRESSES, SERVER_HOST, USER_AGENT } from './lib.mjs'

const g = Number(process.argv[2])
const G = Number(process.argv[3])

const IT = Buffer.from('"it":')
const TS = Buffer.from('"ts":')
const SNAPSHOT = Buffer.from('"snapshot":true')
const SIO_SNAPSHOT = Buffer.from('42["snapshot"')
const PONG = '{"type":"pong"}'

/** Reads the JSON number that starts at `pos` in `buf`. */
function numberAt(buf, pos) {
  let end = pos
  while (end < buf.length) {
    const c = buf[end]
    if ((c >= 48 && c <= 57) || c === 46 || c === 45 || c === 101 || c === 69 || c === 43) end++
    else break
  }
  return Number(buf.latin1Slice(pos, end))
}

/** The change number and server stamp in a frame or response body ({"it":…,"ts":…} comes first). */
function stampOf(buf, from = 0) {
  const i = buf.indexOf(IT, from)
  if (i === -1) return undefined
  const t = buf.indexOf(TS, i)
  if (t === -1) return undefined
  return { it: numberAt(buf, i + IT.length), ts: numberAt(buf, t + TS.length) }
}

/** The indices this generator owns within [lo, hi). */
function ownIndices(lo, hi) {
  const out = []
  let i = lo + ((g - (lo % G) + G) % G)
  for (; i < hi; i += G) out.push(i)
  return out
}
// Loopback source addresses other than 127.0.0.1 exist on Linux; elsewhere, fall back to 127.0.0.1.
const sources = await new Promise((resolve) => {
  const probe = net.createServer()
  probe.once('error', () => resolve([SERVER_HOST]))
  probe.listen(0, SOURCE_ADDRESSES[0], () => probe.close(() => resolve(SOURCE_ADDRESSES)))
})
const sourceOf = (gi) => sources[Math.floor(gi / G) % sources.length]

// ---------------------------------------------------------------------------------------------
// Measurement state

let armed // { it, expected, count, lat: Float64Array, resolve }
let recording // { from, samples: [] } (polling comparison, push side)
const counters = { stray: 0, errors: 0, closedEarly: 0 }
let firstError

function onData(buf, t) {
  const stamp = stampOf(buf)
  if (!stamp) return
  if (armed && stamp.it === armed.it) {
    if (armed.count < armed.lat.length) armed.lat[armed.count] = t - stamp.ts
    armed.count++
    if (armed.count === armed.expected) armed.resolve?.()
  } else if (recording && stamp.ts >= recording.from) {
    recording.samples.push(t - stamp.ts)
  } else {
    counters.stray++
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket clients

const pools = new Map() // system → Map<gi, Conn>
const ackWaits = new Map() // system → { remaining, resolve }: snapshots still expected

function ack(conn) {
  if (conn.acks > 0) {
    conn.acks--
    const wait = ackWaits.get(conn.system)
    if (wait && --wait.remaining === 0) wait.resolve()
  }
}

function subscribeMessage(kind, paths) {
  if (kind === 'sio') return [`42${JSON.stringify(['sub', paths])}`]
  return paths.map((path) => JSON.stringify({ type: 'subscribe', path }))
}
function unsubscribeMessage(kind, paths) {
  if (kind === 'sio') return [`42${JSON.stringify(['unsub', paths])}`]
  return paths.map((path) => JSON.stringify({ type: 'unsubscribe', path }))
}

function sendSubscribe(conn, paths) {
  conn.acks += paths.length
  for (const m of subscribeMessage(conn.kind, paths)) conn.ws.send(m)
}

function handleJson(conn, buf, t) {
  // Every server frame starts with {"type":"<type>": the 10th byte tells the type.
  switch (buf[9]) {
    case 0x64: // data
      if (conn.acks > 0 && buf.indexOf(SNAPSHOT) !== -1) ack(conn)
      else onData(buf, t)
      return
    case 0x70: // ping
      conn.ws.send(PONG)
      return
    case 0x77: // welcome
      conn.ready?.()
      return
    case 0x73: // subscribed
      ack(conn)
      return
    default: // error, gone: not expected in the benchmark
      counters.errors++
      firstError ??= buf.toString('utf8').slice(0, 200)
      ack(conn)
  }
}

function handleSio(conn, buf, t) {
  const c0 = buf[0]
  if (c0 === 0x32 && buf.length === 1) {
    conn.ws.send('3') // Engine.IO ping → pong
    return
  }
  if (c0 === 0x34 && buf[1] === 0x32) {
    // 42[...]: a Socket.IO event
    if (conn.acks > 0 && buf.indexOf(SIO_SNAPSHOT) === 0) ack(conn)
    else onData(buf, t)
    return
  }
  if (c0 === 0x30) {
    conn.ws.send('40') // Engine.IO open → connect the main namespace
    return
  }
  if (c0 === 0x34 && buf[1] === 0x30) {
    conn.ready?.() // 40{"sid":…}: namespace connected
    return
  }
  counters.errors++
  firstError ??= buf.toString('utf8').slice(0, 200)
}

/** Opens one socket, waits until it is usable, subscribes `paths` and waits for their snapshots. */
function openSocket(system, kind, port, gi, paths) {
  return new Promise((resolve, reject) => {
    const url =
      kind === 'listen'
        ? `ws://${SERVER_HOST}:${port}/listen`
        : kind === 'raw'
          ? `ws://${SERVER_HOST}:${port}/ws`
          : `ws://${SERVER_HOST}:${port}/socket.io/?EIO=4&transport=websocket`
    const ws = new WebSocket(url, kind === 'listen' ? 'listenjs.v1' : undefined, {
      localAddress: sourceOf(gi),
      headers: { cookie: `sid=${gi}`, 'user-agent': USER_AGENT },
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 20_000,
    })
    const conn = { system, gi, ws, kind, acks: 0, ready: undefined, closing: false }
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`socket ${gi} not ready in 30 s`))
    }, 30_000)
    conn.ready = () => {
      conn.ready = undefined
      clearTimeout(timer)
      pools.get(system).set(gi, conn)
      if (paths.length) sendSubscribe(conn, paths)
      resolve(conn)
    }
    const handle = kind === 'sio' ? handleSio : handleJson
    ws.on('message', (data) => handle(conn, data, now()))
    ws.on('open', () => {
      if (kind === 'raw') conn.ready()
    })
    ws.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    ws.on('close', () => {
      if (pools.get(system)?.get(gi) === conn) {
        pools.get(system).delete(gi)
        if (!conn.closing) counters.closedEarly++
      }
    })
  })
}

/** Registers that `remaining` snapshots are expected on `system`'s sockets; resolves when all came. */
function waitAcks(system, remaining, timeoutMs, what) {
  if (remaining <= 0) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const left = ackWaits.get(system)?.remaining
      ackWaits.delete(system)
      reject(new Error(`${what}: ${left} snapshots missing after ${timeoutMs} ms (${firstError ?? ''})`))
    }, timeoutMs)
    ackWaits.set(system, {
      remaining,
      resolve: () => {
        clearTimeout(timer)
        ackWaits.delete(system)
        resolve()
      },
    })
  })
}

async function connect({ system, kind, port, lo, hi, paths = [], concurrency = 48, timeoutMs = 120_000 }) {
  if (!pools.has(system)) pools.set(system, new Map())
  const indices = ownIndices(lo, hi)
  const started = now()
  const allAcked = waitAcks(system, indices.length * paths.length, timeoutMs, `connect ${system}`)
  allAcked.catch(() => {}) // awaited below
  let next = 0
  let failed = 0
  let failure
  const worker = async () => {
    while (next < indices.length) {
      const gi = indices[next++]
      try {
        await openSocket(system, kind, port, gi, paths)
      } catch (error) {
        failed++
        failure ??= String(error)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, indices.length) }, worker))
  if (failed) throw new Error(`connect ${system}: ${failed} sockets failed: ${failure}`)
  await allAcked
  return { opened: indices.length, ms: now() - started }
}

function inRange(system, lo, hi) {
  const pool = pools.get(system) ?? new Map()
  return ownIndices(lo, hi)
    .map((gi) => pool.get(gi))
    .filter(Boolean)
}

// ---------------------------------------------------------------------------------------------
// HTTP pollers (polling comparison): one keep-alive TCP connection per client, like a browser tab.

let pollers = []
let pollState // { T, conditional, from, samples, stop }

const HEADER_END = Buffer.from('\r\n\r\n')

function openPoller(port, gi) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: SERVER_HOST, port, localAddress: sourceOf(gi) })
    const p = { gi, socket, buf: Buffer.alloc(0), busy: false, etag: undefined, lastIt: -1, timer: undefined }
    p.stats = { polls: 0, r200: 0, r304: 0, skipped: 0, states: 0, other: 0 }
    socket.setNoDelay(true)
    socket.once('connect', () => resolve(p))
    socket.once('error', reject)
    socket.on('data', (chunk) => {
      const t = now()
      p.buf = p.buf.length ? Buffer.concat([p.buf, chunk]) : chunk
      for (;;) {
        const end = p.buf.indexOf(HEADER_END)
        if (end === -1) return
        const rawHead = p.buf.latin1Slice(0, end)
        const head = rawHead.toLowerCase()
        const status = Number(head.slice(9, 12))
        const length = Number(/\r\ncontent-length:\s*(\d+)/.exec(head)?.[1] ?? 0)
        if (p.buf.length < end + 4 + length) return
        const body = p.buf.subarray(end + 4, end + 4 + length)
        p.buf = p.buf.subarray(end + 4 + length)
        p.busy = false
        if (status === 304) p.stats.r304++
        else if (status === 200) {
          p.stats.r200++
          p.etag = /\r\netag:\s*([^\r\n]+)/i.exec(rawHead)?.[1]
          const stamp = stampOf(body)
          if (stamp && stamp.it > p.lastIt) {
            if (p.lastIt !== -1 && pollState && stamp.ts >= pollState.from) {
              pollState.samples.push(t - stamp.ts)
              p.stats.states++
            }
            p.lastIt = stamp.it
          }
        } else p.stats.other++
      }
    })
  })
}

function schedulePoller(p, port, T, conditional, startAt) {
  let k = 0
  const tick = () => {
    if (!pollState || pollState.stopped) return
    if (p.busy) p.stats.skipped++
    else {
      p.busy = true
      p.stats.polls++
      p.socket.write(pollRequest(port, p.gi, conditional ? p.etag : undefined))
    }
    k++
    p.timer = setTimeout(tick, Math.max(0, startAt + k * T - now()))
  }
  p.timer = setTimeout(tick, Math.max(0, startAt - now()))
}

// ---------------------------------------------------------------------------------------------
// Many sockets, many subscriptions (bench/scale.mjs): every socket has `perSocket` distinct paths
// /p/<k>, k < `pathCount`, drawn deterministically from its global index (the same socket draws the
// same paths in every generator, run and system). It subscribes to some of them at a time.

/** The `perSocket` distinct paths of socket `gi` (a small xorshift PRNG seeded with `gi` and `seed`). */
function scalePathsOf(gi, perSocket, pathCount, seed = 1) {
  let x = (Math.imul(gi + 1, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0 || 1
  const picked = new Set()
  for (let guard = 0; picked.size < Math.min(perSocket, pathCount) && guard < 10_000; guard++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    picked.add(x % pathCount)
  }
  return [...picked].map((k) => `/p/${k}`)
}

/** Yields to the event loop (acks keep arriving while a generator sends thousands of messages). */
const yieldTurn = () => new Promise((resolve) => setImmediate(resolve))

async function scaleConnect({
  system,
  kind,
  port,
  lo,
  hi,
  perSocket = 5,
  pathCount = 500,
  seed = 1,
  first = 1,
  paths: given, // instead of drawn paths: these, for every socket (all subscribed at once)
  concurrency = 48,
  timeoutMs = 180_000,
}) {
  if (given) first = given.length
  if (!pools.has(system)) pools.set(system, new Map())
  const indices = ownIndices(lo, hi)
  const started = now()
  const allAcked = waitAcks(system, indices.length * first, timeoutMs, `scaleConnect ${system}`)
  allAcked.catch(() => {}) // awaited below
  let next = 0
  let failed = 0
  let failure
  const worker = async () => {
    while (next < indices.length) {
      const gi = indices[next++]
      const paths = given ?? scalePathsOf(gi, perSocket, pathCount, seed)
      try {
        const conn = await openSocket(system, kind, port, gi, paths.slice(0, first))
        conn.scale = paths
        conn.scaleOn = first
      } catch (error) {
        failed++
        failure ??= String(error)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, indices.length) }, worker))
  if (failed) throw new Error(`scaleConnect ${system}: ${failed} sockets failed: ${failure}`)
  const connectedMs = now() - started
  await allAcked
  return { opened: indices.length, connectedMs, ms: now() - started }
}

/**
 * Subscribes every socket in [lo, hi) to its paths number `from` to `to` − 1 (all at once: no pacing
 * but a turn yielded every `yieldEvery` sockets), and waits for every snapshot. `ms`: from the first
 * message sent to the last snapshot received.
 */
async function scaleSubscribe({ system, lo, hi, from, to, yieldEvery = 250, timeoutMs = 180_000 }) {
  const conns = inRange(system, lo, hi).filter((c) => c.scale)
  const started = now()
  const count = conns.reduce((n, c) => n + c.scale.slice(from, to).length, 0)
  const done = waitAcks(system, count, timeoutMs, `scaleSubscribe ${system}`)
  done.catch(() => {}) // awaited below
  for (let i = 0; i < conns.length; i++) {
    const paths = conns[i].scale.slice(from, to)
    if (paths.length) sendSubscribe(conns[i], paths)
    conns[i].scaleOn = Math.max(conns[i].scaleOn, to)
    if (i % yieldEvery === yieldEvery - 1) await yieldTurn()
  }
  const sentMs = now() - started
  await done
  return { sockets: conns.length, subscriptions: count, sentMs, ms: now() - started }
}

/** Unsubscribes every socket in [lo, hi) from all its scale paths (the server confirms nothing). */
async function scaleUnsubscribe({ system, lo, hi, yieldEvery = 250 }) {
  const conns = inRange(system, lo, hi).filter((c) => c.scale)
  let count = 0
  for (let i = 0; i < conns.length; i++) {
    const paths = conns[i].scale.slice(0, conns[i].scaleOn)
    for (const m of unsubscribeMessage(conns[i].kind, paths)) conns[i].ws.send(m)
    count += paths.length
    conns[i].scaleOn = 0
    if (i % yieldEvery === yieldEvery - 1) await yieldTurn()
  }
  return { sockets: conns.length, subscriptions: count }
}

/**
 * Arms this generator for change `it` of every path in `paths`: it expects one frame per socket in
 * [lo, hi) and per subscribed path of that socket in `paths`.
 */
function scaleArm({ system, it, lo, hi, paths }) {
  const wanted = new Set(paths)
  let expected = 0
  for (const conn of inRange(system, lo, hi)) {
    if (!conn.scale) continue
    for (let j = 0; j < conn.scaleOn; j++) if (wanted.has(conn.scale[j])) expected++
  }
  armed = { it, expected, count: 0, lat: new Float64Array(expected), resolve: undefined }
  return { expected }
}

// ---------------------------------------------------------------------------------------------

serveCommands({
  scaleConnect,
  scaleSubscribe,
  scaleUnsubscribe,
  scaleArm,
  connect,
  subscribe: async ({ system, lo, hi, paths, timeoutMs = 120_000 }) => {
    const conns = inRange(system, lo, hi)
    const done = waitAcks(system, conns.length * paths.length, timeoutMs, `subscribe ${system} ${paths[0]}…`)
    // Paced: a few hundred sockets per turn, so the server sees a steady stream, not one burst.
    for (let i = 0; i < conns.length; i++) {
      sendSubscribe(conns[i], paths)
      if (i % 200 === 199) await sleep(5)
    }
    await done
    return { sockets: conns.length }
  },
  unsubscribe: async ({ system, lo, hi, paths }) => {
    const conns = inRange(system, lo, hi)
    for (let i = 0; i < conns.length; i++) {
      for (const m of unsubscribeMessage(conns[i].kind, paths)) conns[i].ws.send(m)
      if (i % 200 === 199) await sleep(5)
    }
    return { sockets: conns.length }
  },
  arm: ({ system, it, lo, hi, perSocket }) => {
    const expected = inRange(system, lo, hi).length * perSocket
    armed = { it, expected, count: 0, lat: new Float64Array(expected), resolve: undefined }
    return { expected }
  },
  collect: async ({ timeoutMs }) => {
    const a = armed
    if (a.count < a.expected) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs)
        a.resolve = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    armed = undefined
    const n = Math.min(a.count, a.expected)
    // Rounded to 1 µs: smaller over IPC, still far below the clock's useful resolution here.
    const lat = Array.from(a.lat.subarray(0, n), (v) => Math.round(v * 1000) / 1000)
    return { received: a.count, expected: a.expected, lat }
  },
  recordStart: () => {
    recording = { from: now(), samples: [] }
    return true
  },
  recordStop: () => {
    const r = recording
    recording = undefined
    return { samples: r.samples.map((v) => Math.round(v * 1000) / 1000) }
  },
  close: async ({ system }) => {
    const pool = pools.get(system)
    if (!pool) return { closed: 0 }
    const conns = [...pool.values()]
    for (const conn of conns) {
      conn.closing = true
      conn.ws.terminate()
    }
    pools.delete(system)
    return { closed: conns.length }
  },
  pollOpen: async ({ port, lo, hi }) => {
    pollers = []
    const indices = ownIndices(lo, hi)
    for (let i = 0; i < indices.length; i += 50) {
      pollers.push(...(await Promise.all(indices.slice(i, i + 50).map((gi) => openPoller(port, gi)))))
    }
    return { opened: pollers.length }
  },
  pollStart: ({ port, T, conditional }) => {
    const from = now()
    pollState = { from, samples: [], stopped: false }
    // Each client polls on its own phase, uniformly spread over one period, at a fixed rate.
    for (const p of pollers) schedulePoller(p, port, T, conditional, from + Math.random() * T)
    return true
  },
  pollStop: async () => {
    pollState.stopped = true
    for (const p of pollers) clearTimeout(p.timer)
    const deadline = now() + 2000
    while (pollers.some((p) => p.busy) && now() < deadline) await sleep(10)
    const totals = { polls: 0, r200: 0, r304: 0, skipped: 0, states: 0, other: 0, busy: 0 }
    for (const p of pollers) {
      for (const k of Object.keys(p.stats)) totals[k] += p.stats[k]
      if (p.busy) totals.busy++
    }
    const samples = pollState.samples.map((v) => Math.round(v * 1000) / 1000)
    pollState = undefined
    return { ...totals, samples }
  },
  pollClose: () => {
    for (const p of pollers) p.socket.destroy()
    const n = pollers.length
    pollers = []
    return { closed: n }
  },
  counters: () => ({ ...counters, firstError }),
})
