// One server process of the benchmark: `node --expose-gc bench/server.mjs <system>`, forked by
// bench/run.mjs. <system> is one of
//   raw      plain `ws` + node:http; a POST fans out either pre-framed (`?mode=frame`) or with
//            ws.send(string) per socket (`?mode=send`)
//   sio      Socket.IO 4, websocket transport only, perMessageDeflate off, room broadcast
//   fastify | express | koa   listenjs through that adapter: the POST only changes the state; the
//            hub replays GET and pushes
// Every server has the same resources: GET /items, /p/<k> and /b/<k> (public: the same for everyone),
// GET /mine (per user, from the `sid` cookie), and POST /items, /p/<k>, /mine and /burst (changes the
// ten /b/<k> in one handler). A POST body is {"it": <change number>}; the handler stamps the state
// with the time it finished (`ts`), which the load generators subtract from their receipt time.
import http from 'node:http'
import { URLSearchParams } from 'node:url'
import { setTimeout } from 'node:timers'
import { Session } from 'node:inspector/promises'
import { writeFileSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { WebSocketServer, Sender } from 'ws'
import { now, sidOf, stateBody, serveCommands, SERVER_HOST } from './lib.mjs'
import { floorFanOut } from './floor.mjs'

const system = process.argv[2]
const trackBytes = process.argv.includes('--track-bytes')
const gc = globalThis.gc
if (typeof gc !== 'function') throw new Error('run the server with --expose-gc')

// ---------------------------------------------------------------------------------------------
// The state: one {it, ts} per path.

const BURST_PATHS = Array.from({ length: 10 }, (_, k) => `/b/${k}`)
const states = new Map()
const touch = (p, it, ts) => states.set(p, { it, ts })
const stateOf = (p) => states.get(p) ?? { it: 0, ts: 0 }
const view = (p, sid) => {
  const s = stateOf(p)
  return stateBody(p, s.it, s.ts, sid === undefined ? undefined : `u${sid}`)
}
const etagOf = (p) => `"i${stateOf(p).it}"`
const isPublicPath = (p) => p === '/items' || /^\/[pb]\/\d+$/.test(p)

/** Applies a POST to the state; returns the paths it changed (undefined: not a known route). */
function applyPost(url, it) {
  const ts = now()
  if (url === '/burst') {
    for (const p of BURST_PATHS) touch(p, it, ts)
    return BURST_PATHS
  }
  if (url === '/items' || url === '/mine' || /^\/p\/\d+$/.test(url)) {
    touch(url, it, ts)
    return [url]
  }
  return undefined
}

// listenjs options used by every adapter. Only what a 10,000-socket benchmark from 8 loopback
// addresses needs differs from the defaults: more sockets per address, and a heartbeat slower
// than the run, so no ping round lands in a measurement window (Socket.IO gets the same).
const hubOptions = {
  limits: { connectionsPerAddress: 1_000_000 },
  heartbeat: { intervalMs: 900_000, timeoutMs: 60_000 },
}

let countRequests = { gets: 0, replays: 0, posts: 0 }
let rawFrames = 0 // frames the raw ws server wrote (the hub counts its own)
let handoffs = [] // see takeHandoffs
let subscriptionCount = () => 0
/** What a POST handler calls with the paths it changed: the floor's fan-out (listenjs: the hub does it). */
let changed = () => {}
let hub
let httpServer

// ---------------------------------------------------------------------------------------------
// listenjs apps

async function fastifyApp({ floor } = {}) {
  const { default: Fastify } = await import('fastify')
  const { default: listenjs, isReplay } = await import('listenjs/fastify')
  const app = Fastify({ logger: false })
  if (!floor) await app.register(listenjs, hubOptions)
  app.addHook('onRequest', (request, _reply, done) => {
    if (isReplay(request)) countRequests.replays++
    else if (request.method === 'GET') countRequests.gets++
    else countRequests.posts++
    done()
  })
  const publicRoute = { config: { listenjs: { public: true } } }
  app.get('/items', publicRoute, async (request, reply) => {
    const etag = etagOf('/items')
    reply.header('etag', etag)
    if (request.headers['if-none-match'] === etag) return reply.code(304).send()
    return view('/items')
  })
  app.get('/p/:k', publicRoute, async (request) => view(`/p/${request.params.k}`))
  app.get('/b/:k', publicRoute, async (request) => view(`/b/${request.params.k}`))
  app.get('/mine', async (request) => view('/mine', sidOf(request.headers.cookie)))
  const post = async (request, reply) => {
    changed(applyPost(request.url, request.body.it))
    reply.code(201)
    return { ok: true }
  }
  app.post('/items', post)
  app.post('/p/:k', post)
  app.post('/mine', post)
  app.post('/burst', { config: { listenjs: { notify: false, changes: BURST_PATHS } } }, post)
  await app.listen({ port: 0, host: SERVER_HOST })
  hub = app.listenjs
  return app.server
}

async function expressApp({ floor } = {}) {
  const { default: express } = await import('express')
  const { listenjs, isReplay } = await import('listenjs/express')
  const app = express()
  const live = floor ? undefined : listenjs(hubOptions)
  app.use((req, _res, next) => {
    if (isReplay(req)) countRequests.replays++
    else if (req.method === 'GET') countRequests.gets++
    else countRequests.posts++
    next()
  })
  if (live) app.use(live)
  app.use(express.json())
  app.get('/items', (req, res) => {
    res.locals.listenjs = { public: true }
    res.set('ETag', etagOf('/items'))
    res.json(view('/items')) // Express answers 304 itself when If-None-Match matches
  })
  app.get(['/p/:k', '/b/:k'], (req, res) => {
    res.locals.listenjs = { public: true }
    res.json(view(req.path))
  })
  app.get('/mine', (req, res) => res.json(view('/mine', sidOf(req.headers.cookie))))
  const post = (req, res) => {
    changed(applyPost(req.path, req.body.it))
    res.status(201).json({ ok: true })
  }
  app.post(['/items', '/p/:k', '/mine'], post)
  app.post('/burst', (req, res) => {
    res.locals.listenjs = { notify: false, changes: BURST_PATHS }
    post(req, res)
  })
  const server = await new Promise((resolve) => {
    const s = app.listen(0, SERVER_HOST, () => resolve(s))
  })
  live?.attach(server)
  hub = live?.hub
  return server
}

async function koaApp({ floor } = {}) {
  const { default: Koa } = await import('koa')
  const { Router } = await import('@koa/router')
  const { bodyParser } = await import('@koa/bodyparser')
  const { listenjs, isReplay } = await import('listenjs/koa')
  const app = new Koa()
  const live = floor ? undefined : listenjs(hubOptions)
  app.use((ctx, next) => {
    if (isReplay(ctx)) countRequests.replays++
    else if (ctx.method === 'GET') countRequests.gets++
    else countRequests.posts++
    return next()
  })
  if (live) app.use(live.middleware)
  app.use(bodyParser())
  const router = new Router()
  router.get('/items', (ctx) => {
    ctx.state.listenjs = { public: true }
    ctx.set('ETag', etagOf('/items'))
    ctx.status = 200 // Koa's `fresh` only looks at 2xx responses
    if (ctx.fresh) ctx.status = 304
    else ctx.body = view('/items')
  })
  const publicGet = (ctx) => {
    ctx.state.listenjs = { public: true }
    ctx.body = view(ctx.path)
  }
  router.get('/p/:k', publicGet)
  router.get('/b/:k', publicGet)
  router.get('/mine', (ctx) => {
    ctx.body = view('/mine', sidOf(ctx.get('cookie')))
  })
  const post = (ctx) => {
    changed(applyPost(ctx.path, ctx.request.body.it))
    ctx.status = 201
    ctx.body = { ok: true }
  }
  router.post('/items', post)
  router.post('/p/:k', post)
  router.post('/mine', post)
  router.post('/burst', (ctx) => {
    ctx.state.listenjs = { notify: false, changes: BURST_PATHS }
    post(ctx)
  })
  app.use(router.routes())
  const server = await new Promise((resolve) => {
    const s = app.listen(0, SERVER_HOST, () => resolve(s))
  })
  live?.attach(server)
  hub = live?.hub
  return server
}

// ---------------------------------------------------------------------------------------------
// Baselines: plain http server; the POST handler fans out itself.

/** Reads a small JSON request body, then calls `done(url, it, query)`. */
function postHandler(done) {
  return (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(404).end()
      return
    }
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const [url, query = ''] = (req.url ?? '/').split('?')
      const it = JSON.parse(Buffer.concat(chunks).toString('utf8')).it
      const paths = applyPost(url, it)
      if (!paths) {
        res.writeHead(404).end()
        return
      }
      countRequests.posts++
      done(paths, new URLSearchParams(query))
      const body = '{"ok":true}'
      res.writeHead(201, { 'content-type': 'application/json', 'content-length': body.length }).end(body)
    })
  }
}

// The pre-framed baseline writes one shared, already framed buffer to each socket's net.Socket. ws has
// no public API for that: this uses its exported `Sender.frame` (public) and the socket it keeps in
// the private `ws._socket` field, which is what ws itself writes to.
const FRAME_OPTIONS = { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false }
const preFrame = (text) => Buffer.concat(Sender.frame(Buffer.from(text), FRAME_OPTIONS))

/**
 * The raw baselines' WebSocket endpoint (`/ws`): `{"type":"subscribe","path":…}` adds the socket to
 * `subscribers` (path → Set<ws>) and answers with a snapshot; a socket keeps its `sid` and the headers
 * a replay would forward (`forward`).
 */
function attachRawWs(server, subscribers) {
  subscriptionCount = () => {
    let n = 0
    for (const set of subscribers.values()) n += set.size
    return n
  }
  const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false })
  wss.on('connection', (ws, req) => {
    ws.sid = sidOf(req.headers.cookie)
    ws.forward = {
      host: req.headers.host,
      cookie: req.headers.cookie,
      'user-agent': req.headers['user-agent'],
    }
    ws.paths = new Set()
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString('utf8'))
      const p = message.path
      if (message.type === 'subscribe') {
        let set = subscribers.get(p)
        if (!set) subscribers.set(p, (set = new Set()))
        set.add(ws)
        ws.paths.add(p)
        const snapshot = {
          type: 'data',
          path: p,
          snapshot: true,
          json: view(p, isPublicPath(p) ? undefined : ws.sid),
        }
        ws.send(JSON.stringify(snapshot))
      } else if (message.type === 'unsubscribe') {
        subscribers.get(p)?.delete(ws)
        ws.paths.delete(p)
      }
    })
    ws.on('close', () => {
      for (const p of ws.paths) subscribers.get(p)?.delete(ws)
    })
  })
}

async function rawApp() {
  const subscribers = new Map() // path → Set<ws>
  const dataText = (p, sid) => JSON.stringify({ type: 'data', path: p, json: view(p, sid) })
  const fanOut = (paths, query) => {
    const frameMode = query.get('mode') !== 'send'
    if (paths.length === 1 && !isPublicPath(paths[0])) {
      // Per user: one serialization per socket.
      const set = subscribers.get(paths[0]) ?? []
      for (const ws of set) {
        const text = dataText(paths[0], ws.sid)
        if (frameMode) ws._socket.write(preFrame(text))
        else ws.send(text)
      }
      return
    }
    if (!frameMode) {
      for (const p of paths) {
        const text = dataText(p) // one JSON.stringify; ws frames it again for every socket
        for (const ws of subscribers.get(p) ?? []) ws.send(text)
      }
      return
    }
    if (paths.length === 1) {
      const frame = preFrame(dataText(paths[0])) // one JSON.stringify, one frame
      for (const ws of subscribers.get(paths[0]) ?? []) ws._socket.write(frame)
      return
    }
    // Several paths in one turn: each socket corked once, all its frames leave in one write.
    const corked = new Set()
    for (const p of paths) {
      const frame = preFrame(dataText(p))
      for (const ws of subscribers.get(p) ?? []) {
        const socket = ws._socket
        if (!corked.has(socket)) {
          socket.cork()
          corked.add(socket)
        }
        socket.write(frame)
      }
    }
    for (const socket of corked) socket.uncork()
  }
  const server = http.createServer(
    postHandler((paths, query) => {
      fanOut(paths, query)
      // As the hub's `push` event does for listenjs: every frame is in the kernel now.
      if (trackBytes) for (const p of paths) handoffs.push(now() - stateOf(p).ts)
      for (const p of paths) rawFrames += subscribers.get(p)?.size ?? 0
    }),
  )
  attachRawWs(server, subscribers)
  await new Promise((resolve) => server.listen(0, SERVER_HOST, resolve))
  return server
}

async function sioApp() {
  const { Server } = await import('socket.io')
  let io
  const fanOut = (paths) => {
    if (paths.length === 1 && !isPublicPath(paths[0])) {
      const p = paths[0]
      for (const id of io.of('/').adapter.rooms.get(p) ?? []) {
        const socket = io.of('/').sockets.get(id)
        socket?.emit('data', { path: p, json: view(p, socket.data.sid) })
      }
      return
    }
    for (const p of paths) io.to(p).emit('data', { path: p, json: view(p) })
  }
  const server = http.createServer(postHandler(fanOut))
  io = new Server(server, {
    transports: ['websocket'],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    pingInterval: 900_000,
    pingTimeout: 60_000,
  })
  subscriptionCount = () => {
    let n = 0
    for (const [room, set] of io.of('/').adapter.rooms) if (room.startsWith('/')) n += set.size
    return n
  }
  io.on('connection', (socket) => {
    socket.data.sid = sidOf(socket.handshake.headers.cookie)
    socket.on('sub', (paths) => {
      for (const p of paths) {
        socket.join(p)
        socket.emit('snapshot', { path: p, json: view(p, isPublicPath(p) ? undefined : socket.data.sid) })
      }
    })
    socket.on('unsub', (paths) => {
      for (const p of paths) socket.leave(p)
    })
  })
  await new Promise((resolve) => server.listen(0, SERVER_HOST, resolve))
  return server
}

/**
 * The floor of the replay model: the framework (no listenjs) serves each subscriber's `GET` to a bare
 * in-process request (see bench/floor.mjs), and each answer goes out as one pre-framed buffer.
 */
function floorApp(build) {
  return async () => {
    const server = await build({ floor: true })
    const subscribers = new Map()
    attachRawWs(server, subscribers)
    changed = (paths) => {
      for (const p of paths ?? []) {
        const set = subscribers.get(p)
        if (!set) continue
        countRequests.replays += set.size
        void floorFanOut(server, set, p, (ws, text) => ws._socket.write(preFrame(text))).then(() => {
          rawFrames += set.size
        })
      }
    }
    return server
  }
}

// ---------------------------------------------------------------------------------------------

const builders = {
  fastify: fastifyApp,
  express: expressApp,
  koa: koaApp,
  raw: rawApp,
  sio: sioApp,
  'floor-fastify': floorApp(fastifyApp),
  'floor-express': floorApp(expressApp),
  'floor-koa': floorApp(koaApp),
}
if (!builders[system]) throw new Error(`unknown system ${system}`)
httpServer = await builders[system]()
if (hub) subscriptionCount = () => hub.stats().subscriptions

// Server-side staleness (polling comparison): the hub's `push` event fires when a change's fan-out
// loop has handed its last frame to the kernel; this is the time from the handler that made the
// change to that moment.
// Only the polling comparison reads it (servers started with --track-bytes): elsewhere the listener
// would be benchmark work billed to listenjs alone.
if (trackBytes) hub?.on('push', (event) => handoffs.push(now() - stateOf(event.path).ts))

// Bytes on the wire, counted at the socket level, for client sockets only (the orchestrator's POSTs
// come from 127.0.0.1; the load generators use 127.0.0.2–9).
const bytes = { read: 0, written: 0 }
const liveSockets = new Set()
if (trackBytes) {
  httpServer.on('connection', (socket) => {
    if (socket.remoteAddress === SERVER_HOST) return
    liveSockets.add(socket)
    socket.once('close', () => {
      liveSockets.delete(socket)
      bytes.read += socket.bytesRead
      bytes.written += socket.bytesWritten
    })
  })
}
const byteTotals = () => {
  let read = bytes.read
  let written = bytes.written
  for (const socket of liveSockets) {
    read += socket.bytesRead
    written += socket.bytesWritten
  }
  return { read, written }
}

let cpuAt
// Profiling (bench/run.mjs --profile=<server>): the V8 CPU profiler (what `node --cpu-prof` uses)
// runs only inside measurement windows, one profile per window, grouped by the window's tag (the
// variant measured), so forced GCs and setup between windows stay out of it.
let profiler
let profileSamplingUs = 50
let profiling = false
const windowProfiles = new Map() // tag → [profile]
let windowTag

serveCommands({
  info: () => ({ port: httpServer.address().port, pid: process.pid }),
  stats: () => ({ subscriptions: subscriptionCount(), hub: hub?.stats() }),
  mem: () => {
    for (let i = 0; i < 4; i++) gc()
    const { heapUsed, rss, external, arrayBuffers } = process.memoryUsage()
    return { heapUsed, rss, external, arrayBuffers }
  },
  // A window: `cpuStart` collects earlier garbage (`collect`: true for a full GC, 'minor' for a
  // scavenge of the young generation) and waits for V8's concurrent sweeping (`settleMs`) outside
  // it; `cpuStop({ collect })` ends it only after such a GC and the same settling, inside it, so the
  // garbage the window made is billed to it (a GC of a clean heap still costs something: the
  // empty-window calibration, measured the same way, holds that). `open` is the window up to the
  // moment cpuStop was called, without that GC.
  cpuStart: async ({ collect = true, settleMs = 0, tag } = {}) => {
    // outside the window, so no collection of earlier garbage is billed to this one
    if (collect) gc(collect === 'minor' ? { type: 'minor' } : undefined)
    if (settleMs) await new Promise((resolve) => setTimeout(resolve, settleMs))
    windowTag = profiling && tag !== undefined ? tag : undefined
    if (windowTag !== undefined) await profiler.post('Profiler.start')
    cpuAt = process.cpuUsage()
    return true
  },
  cpuStop: async ({ collect = false, settleMs = 0 } = {}) => {
    const open = process.cpuUsage(cpuAt)
    if (collect) {
      gc(collect === 'minor' ? { type: 'minor' } : undefined)
      if (settleMs) await new Promise((resolve) => setTimeout(resolve, settleMs))
    }
    const d = collect ? process.cpuUsage(cpuAt) : open
    if (windowTag !== undefined) {
      const { profile } = await profiler.post('Profiler.stop')
      if (!windowProfiles.has(windowTag)) windowProfiles.set(windowTag, [])
      windowProfiles.get(windowTag).push(profile)
      windowTag = undefined
    }
    return {
      user: d.user,
      system: d.system,
      total: d.user + d.system,
      open: { user: open.user, system: open.system, total: open.user + open.system },
    }
  },
  counters: () => ({
    ...byteTotals(),
    ...countRequests,
    replaysHub: hub?.stats().replays ?? 0,
    messagesSent: hub?.stats().messagesSent ?? rawFrames,
    cpu: process.cpuUsage(),
  }),
  profileStart: async ({ samplingUs = 50 } = {}) => {
    profileSamplingUs = samplingUs
    profiler = new Session()
    profiler.connect()
    await profiler.post('Profiler.enable')
    await profiler.post('Profiler.setSamplingInterval', { interval: profileSamplingUs })
    profiling = true
    return true
  },
  /** Writes `<dir>/<prefix>-<tag>-<n>.cpuprofile` for every window profiled; returns the files by tag. */
  profileStop: async ({ dir, prefix }) => {
    profiling = false
    await profiler.post('Profiler.disable')
    profiler.disconnect()
    mkdirSync(dir, { recursive: true })
    const files = {}
    for (const [tag, profiles] of windowProfiles) {
      files[tag] = profiles.map((profile, i) => {
        const file = path.join(dir, `${prefix}-${tag}-${i}.cpuprofile`)
        writeFileSync(file, JSON.stringify(profile))
        return file
      })
    }
    windowProfiles.clear()
    return { files, samplingUs: profileSamplingUs }
  },
  /** Writes a heap snapshot after forced GC (bench/heap.mjs). */
  heapSnapshot: async ({ file }) => {
    for (let i = 0; i < 4; i++) gc()
    mkdirSync(path.dirname(file), { recursive: true })
    const { writeHeapSnapshot } = await import('node:v8')
    return { file: writeHeapSnapshot(file) }
  },
  /** The handoff times recorded since the last call (ms). */
  takeHandoffs: () => {
    const out = handoffs
    handoffs = []
    return out
  },
  resetCounts: () => {
    countRequests = { gets: 0, replays: 0, posts: 0 }
    return true
  },
})
process.send?.({ ready: true })
