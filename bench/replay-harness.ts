// The replay itself, against its floor (issue: cost of per-user views). Through Fastify, Express and
// Koa: CPU per replay of a small per-user GET made by listenjs's replay (`replayGet`), and per request
// of the same GET served to a bare IncomingMessage/ServerResponse pair (the framework's own cost).
// Run by `npm run bench:replay` (bench/replay.mjs bundles this file with esbuild first).
import http from 'node:http'
import { Socket } from 'node:net'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import Router from '@koa/router'
import fastifyListenjs from '../src/adapters/fastify'
import { listenjs as expressListenjs } from '../src/adapters/express'
import { listenjs as koaListenjs } from '../src/adapters/koa'
import {
  contextFromRequest,
  dispatcherFor,
  replayDeadlines,
  replayGet,
  upgradeRequestOf,
} from '../src/core/replay'

const N = Number(process.env.N ?? 20_000)
const BATCH = 100
const rows = Array.from({ length: 30 }, (_, i) => ({
  id: String(i),
  owner: `u${i % 3}`,
  title: 'x'.repeat(80),
}))
const mine = (cookie: string | undefined): unknown => rows.filter((r) => cookie?.includes(r.owner))

async function servers(): Promise<Array<[string, http.Server, () => Promise<void>]>> {
  const f = Fastify()
  await f.register(fastifyListenjs)
  f.get('/mine', async (req) => mine(req.headers.cookie))
  await f.ready()
  const e = express()
  const live = expressListenjs()
  e.use(live)
  e.get('/mine', (req, res) => res.json(mine(req.headers.cookie)))
  const eServer = http.createServer(e)
  live.attach(eServer)
  const k = new Koa()
  const kLive = koaListenjs()
  const router = new Router()
  router.get('/mine', (ctx) => {
    ctx.body = mine(ctx.get('cookie'))
  })
  k.use(kLive.middleware).use(router.routes())
  const kServer = http.createServer(k.callback())
  kLive.attach(kServer)
  return [
    ['fastify', f.server, () => f.close()],
    ['express', eServer, () => live.hub.close()],
    ['koa', kServer, () => kLive.hub.close()],
  ]
}

async function cpuPerOp(op: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 1000; i++) await op()
  const start = process.cpuUsage()
  for (let i = 0; i < N; i += BATCH) await Promise.all(Array.from({ length: BATCH }, op))
  const used = process.cpuUsage(start)
  return (used.user + used.system) / N
}

async function main(): Promise<void> {
  const upgrade = {
    headers: { host: 'h', cookie: 'session=u1' },
    url: '/listen',
    socket: { remoteAddress: '10.0.0.1' },
  }
  const context = contextFromRequest(upgradeRequestOf(upgrade as unknown as http.IncomingMessage))
  const limits = { maxBodyBytes: 1 << 20, deadlines: replayDeadlines(10_000) }
  console.log(`CPU µs per request, ${N} requests of a ~1 KB per-user GET, ${BATCH} at a time`)
  console.log('| framework | listenjs replay | floor (bare IncomingMessage/ServerResponse) | × floor |')
  console.log('|---|---:|---:|---:|')
  for (const [name, server, close] of await servers()) {
    const dispatch = dispatcherFor(server)
    const replay = await cpuPerOp(() => replayGet(dispatch, context, '/mine', limits))
    const floor = await cpuPerOp(
      () =>
        new Promise<void>((resolve) => {
          const req = new http.IncomingMessage(new Socket())
          req.method = 'GET'
          req.url = '/mine'
          req.headers = { host: 'h', cookie: 'session=u1' }
          const res = new http.ServerResponse(req)
          res.write = (() => true) as never
          res.end = (() => {
            resolve()
            return res
          }) as never
          server.emit('request', req, res)
          req.push(null)
        }),
    )
    console.log(`| ${name} | ${replay.toFixed(1)} | ${floor.toFixed(1)} | ${(replay / floor).toFixed(2)}× |`)
    await close()
  }
}

void main()
