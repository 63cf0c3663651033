// The whole per-user push without the network (issue: cost of per-user views): N users, each with
// its own cookie, subscribed to `GET /mine` on Fastify, Express and Koa; one change. listenjs's hub
// with sockets whose `send` only counts (replays, versions, frames, scheduling, fan-out: everything
// but the write), against the floor (bench/floor.mjs: the framework serving each user's GET to a
// bare request, then the frame built as one buffer, not written either). CPU per user, interleaved
// rounds. Run by `npm run bench:replay` (bench/replay.mjs bundles this file with esbuild first).
import http from 'node:http'
import type { IncomingMessage } from 'node:http'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import Router from '@koa/router'
import fastifyListenjs from '../src/adapters/fastify'
import { listenjs as expressListenjs } from '../src/adapters/express'
import { listenjs as koaListenjs } from '../src/adapters/koa'
import type { Hub } from '../src/core/hub'
import type { HubSocket, SocketEvents } from '../src/core/socket'
import { textFrame } from '../src/node/ws-internals'
// @ts-expect-error: a plain ES module of the benchmark, without types
import { floorFanOut } from './floor.mjs'
// @ts-expect-error: a plain ES module of the benchmark, without types
import { stateBody } from './lib.mjs'

const USERS = Number(process.env.USERS ?? 1000)
const ROUNDS = Number(process.env.ROUNDS ?? 7)
let it = 0
const view = (cookie: string | undefined): unknown =>
  stateBody('/mine', it, 0, `u${/sid=(\d+)/.exec(cookie ?? '')?.[1]}`)

/** A socket that only counts what it is sent. */
class CountingSocket implements HubSocket {
  events!: SocketEvents
  static sent = 0
  send(): void {
    CountingSocket.sent++
  }
  close(): void {}
  terminate(): void {}
  bufferedAmount(): number {
    return 0
  }
}

type App = { name: string; server: http.Server; hub: Hub; close: () => Promise<void> }

async function apps(): Promise<App[]> {
  const f = Fastify()
  await f.register(fastifyListenjs, { limits: { connectionsPerAddress: 1e6 } })
  f.get('/mine', async (req) => view(req.headers.cookie))
  await f.ready()
  const e = express()
  const eLive = expressListenjs({ limits: { connectionsPerAddress: 1e6 } })
  e.use(eLive)
  e.get('/mine', (req, res) => res.json(view(req.headers.cookie)))
  const eServer = http.createServer(e)
  eLive.attach(eServer)
  const k = new Koa()
  const kLive = koaListenjs({ limits: { connectionsPerAddress: 1e6 } })
  const router = new Router()
  router.get('/mine', (ctx) => {
    ctx.body = view(ctx.get('cookie'))
  })
  k.use(kLive.middleware).use(router.routes())
  const kServer = http.createServer(k.callback())
  kLive.attach(kServer)
  return [
    { name: 'Fastify', server: f.server, hub: f.listenjs, close: () => f.close() },
    { name: 'Express', server: eServer, hub: eLive.hub, close: () => eLive.hub.close() },
    { name: 'Koa', server: kServer, hub: kLive.hub, close: () => kLive.hub.close() },
  ]
}

const headersOf = (i: number): Record<string, string> => ({
  host: 'app.test',
  cookie: `sid=${i}`,
  'user-agent':
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
})

/** Opens USERS sockets on the hub, each subscribed to /mine; resolves when every snapshot went out. */
async function subscribeAll(hub: Hub): Promise<void> {
  const before = CountingSocket.sent
  for (let i = 0; i < USERS; i++) {
    const socket = new CountingSocket()
    const req = { headers: headersOf(i), url: '/listen', socket: { remoteAddress: '192.0.2.1' } }
    socket.events = hub.opened(socket, req as unknown as IncomingMessage)
    socket.events.onMessage(Buffer.from(JSON.stringify({ type: 'subscribe', path: '/mine' })), false)
  }
  // welcome + snapshot per socket
  while (CountingSocket.sent - before < 2 * USERS) await new Promise((r) => setImmediate(r))
}

/** CPU per user of `run`, after a full collection (so no window pays for another's garbage). */
async function cpu(run: () => Promise<void>): Promise<number> {
  ;(globalThis as { gc?: () => void }).gc?.()
  const start = process.cpuUsage()
  await run()
  const used = process.cpuUsage(start)
  return (used.user + used.system) / USERS
}

async function main(): Promise<void> {
  const only = process.env.FRAMEWORKS?.split(',')
  const all = await apps()
  const list = all.filter((a) => !only || only.includes(a.name))
  for (const app of list) await subscribeAll(app.hub)
  const floorSockets = Array.from({ length: USERS }, (_, i) => ({ forward: headersOf(i) }))
  const results = new Map<string, { lj: number[]; floor: number[] }>(
    list.map((a) => [a.name, { lj: [], floor: [] }]),
  )
  for (let round = 0; round < ROUNDS; round++) {
    for (const app of list) {
      it++
      const target = CountingSocket.sent + USERS
      const lj = await cpu(async () => {
        app.hub.notify('/mine')
        while (CountingSocket.sent < target) await new Promise((r) => setImmediate(r))
      })
      let framed = process.env.FLOOR === '0' ? USERS : 0
      const floor = await cpu(async () =>
        process.env.FLOOR === '0'
          ? undefined
          : floorFanOut(app.server, floorSockets, '/mine', (_ws: unknown, text: string) => {
              framed += textFrame(Buffer.from(text)) ? 1 : 0
            }),
      )
      if (framed !== USERS) throw new Error('floor: not every user framed')
      if (round > 0) {
        results.get(app.name)?.lj.push(lj)
        results.get(app.name)?.floor.push(floor)
      }
    }
  }
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[v.length >> 1] ?? NaN
  console.log(
    `\nThe whole per-user push without the network: CPU µs per user, ${USERS} users, median of ${ROUNDS - 1} rounds`,
  )
  console.log(
    '| framework | listenjs (hub, sockets that only count) | floor (framework + one frame built) | × floor |',
  )
  console.log('|---|---:|---:|---:|')
  for (const [name, r] of results) {
    const lj = median(r.lj)
    const floor = median(r.floor)
    console.log(`| ${name} | ${lj.toFixed(1)} | ${floor.toFixed(1)} | ${(lj / floor).toFixed(2)}× |`)
  }
  for (const app of all) await app.close()
}

void main()
