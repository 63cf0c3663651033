import { AsyncLocalStorage } from 'node:async_hooks'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import Koa from 'koa'
import Router from '@koa/router'
import bodyParser from '@koa/bodyparser'
import fastifyListenjs, { isReplay as fastifyIsReplay } from '../../src/adapters/fastify'
import { listenjs as expressListenjs, isReplay as expressIsReplay } from '../../src/adapters/express'
import { listenjs as koaListenjs, isReplay as koaIsReplay } from '../../src/adapters/koa'
import type { Hub } from '../../src/core/hub'
import type { RouteOptions } from '../../src/core/types'
import type { HubOptions } from '../../src/core/options'
import { sleep } from './wait'

/** The frameworks every conformance test runs on. */
export const FRAMEWORKS = ['fastify', 'express', 'koa'] as const
export type Framework = (typeof FRAMEWORKS)[number]

export interface Item {
  id: string
  title: string
}

/** What a fixture handler answers: status, JSON body and, when set, a `Content-Location`. */
export interface Answer {
  status: number
  body: unknown
  contentLocation?: string
  /** The route declares this very answer public (route option `public: true`, set at run time). */
  public?: boolean
}

/**
 * The state and behaviour shared by the three fixture apps, so that each framework's routes are a
 * thin translation of the same handlers.
 */
export class FixtureState {
  readonly items = new Map<string, Item>()
  views = 0
  loops = 0
  privateRevoked = false
  nextId = 1
  readonly als = new AsyncLocalStorage<{ user: string }>()
  slowMs = 0

  list(query: { title?: string }): Item[] {
    const all = [...this.items.values()]
    return query.title === undefined ? all : all.filter((item) => item.title === query.title)
  }

  create(title: string): Item {
    const item = { id: String(this.nextId++), title }
    this.items.set(item.id, item)
    return item
  }

  /** 200 with Alice's secret for her cookie or token, 403 for Eve, 401 for anyone else. */
  privateStatus(headers: http.IncomingHttpHeaders): number {
    const cookie = headers.cookie ?? ''
    const auth = headers.authorization ?? ''
    if (this.privateRevoked) return 403
    if (cookie.includes('session=alice') || auth === 'Bearer alice-token') return 200
    if (cookie.includes('session=eve')) return 403
    return 401
  }

  /** Per-user inboxes: `/users/:user/inbox`, readable by that user only (cookie or bearer token). */
  readonly inboxes = new Map<string, string[]>()
  readonly revoked = new Set<string>()

  /** The user of a request: `session=<user>` cookie or `Bearer <user>-token`. */
  userOf(headers: http.IncomingHttpHeaders): string | undefined {
    const cookie = /(?:^|;\s*)session=(\w+)/.exec(headers.cookie ?? '')?.[1]
    const bearer = /^Bearer (\w+)-token$/.exec(headers.authorization ?? '')?.[1]
    return bearer ?? cookie
  }

  /** GET /users/:user/inbox: 401 anonymous, 403 another user or revoked, else the messages. */
  inbox(user: string, headers: http.IncomingHttpHeaders): [number, unknown] {
    const who = this.userOf(headers)
    if (who === undefined) return [401, { error: 'unauthorized' }]
    if (who !== user || this.revoked.has(user)) return [403, { error: 'forbidden' }]
    return [200, { user, messages: this.inboxes.get(user) ?? [] }]
  }

  post(user: string, text: string): { ok: true } {
    const list = this.inboxes.get(user) ?? []
    list.push(text)
    this.inboxes.set(user, list)
    return { ok: true }
  }

  /** `/things/:id`, whose id is a number however it is spelled (`42`, `042`, `+42`, `42\t`). */
  readonly things = new Map<string, Item>()

  /** The canonical id of a thing, or undefined when `id` does not start with a number. */
  thingId(id: string): string | undefined {
    const n = Number.parseInt(id, 10)
    return Number.isNaN(n) ? undefined : String(n)
  }

  /** GET /things/:id: the thing, or 404. */
  thing(id: string): Answer {
    const canonical = this.thingId(id)
    const thing = canonical === undefined ? undefined : this.things.get(canonical)
    return thing ? { status: 200, body: thing } : { status: 404, body: { error: 'not found' } }
  }

  /** PUT /things/:id: stores the thing under its canonical id and names it in `Content-Location`. */
  putThing(id: string, body: unknown): Answer {
    const canonical = this.thingId(id)
    const title = (body as { title?: unknown } | undefined)?.title
    if (canonical === undefined || typeof title !== 'string')
      return { status: 400, body: { error: 'bad request' } }
    const thing = { id: canonical, title }
    this.things.set(canonical, thing)
    return { status: 200, body: thing, contentLocation: `/things/${canonical}` }
  }

  /** The trust routes under `/t/…` (see {@link FixtureState.trust}). */
  readonly trustState = {
    doc: { published: true, body: 'hello' },
    links: 0,
    team: 0,
    view: 0,
    slow: 0,
    fast: 0,
    lazy: 0,
    lazyStarted: false,
    locked: 0,
    /** Callbacks waiting for the lock, and whether it is held. */
    lock: { held: false, waiters: [] as Array<() => void> },
    /** Opened by a test to let GET /t/locked answer. */
    gate: undefined as Promise<void> | undefined,
    openGate: (): void => {},
  }
  /** `hub.notify`, set by each fixture builder (for routes that notify later). */
  notify: (path: string) => void = () => {}

  /**
   * The routes of the trust tests, one handler for every framework (paths under `/t/`, no bodies:
   * parameters travel in the query). `respond` may be called later, and in another async context:
   * GET /t/locked answers once a test opens the gate, and releases its lock to waiting writes from
   * inside the replay.
   */
  trust(req: http.IncomingMessage, respond: (a: Answer) => void): void {
    const t = this.trustState
    const { headers, method } = req
    const { pathname, searchParams } = new URL(req.url ?? '/', 'http://x')
    const user = this.userOf(headers)
    const key = `${method} ${pathname}`
    switch (key) {
      // A draft only its owner (alice) may read; public while published.
      case 'GET /t/doc':
        if (t.doc.published) return respond({ status: 200, body: t.doc, public: true })
        if (user === 'alice') return respond({ status: 200, body: t.doc })
        return respond({ status: 404, body: { error: 'not found' } })
      case 'PUT /t/doc':
        t.doc = { published: searchParams.get('published') === '1', body: searchParams.get('body') ?? '' }
        return respond({ status: 200, body: { ok: true } })
      // Public, with links built from the Host header.
      case 'GET /t/links':
        return respond({
          status: 200,
          body: { self: `http://${headers.host}/t/links`, n: t.links },
          public: true,
        })
      case 'POST /t/links':
      case 'POST /t/whoami':
        t.links++
        return respond({ status: 200, body: { ok: true } })
      // Public, showing what the request carried.
      case 'GET /t/whoami': {
        const body = {
          cookie: headers.cookie ?? null,
          authorization: headers.authorization ?? null,
          remoteAddress: req.socket.remoteAddress ?? null,
          n: t.links,
        }
        return respond({ status: 200, body, public: true })
      }
      // One answer for every signed-in user; 401 anonymous, 403 revoked.
      case 'GET /t/team':
        if (user === undefined) return respond({ status: 401, body: { error: 'unauthorized' } })
        if (this.revoked.has(user)) return respond({ status: 403, body: { error: 'forbidden' } })
        return respond({ status: 200, body: { team: t.team } })
      case 'POST /t/team':
        t.team++
        return respond({ status: 200, body: { ok: true } })
      // A per-user view: each user's own secret.
      case 'GET /t/view':
        return respond({
          status: 200,
          body: { user: user ?? null, secret: user ? `${user}-secret` : null, n: t.view },
        })
      case 'POST /t/view':
        t.view++
        return respond({ status: 200, body: { ok: true } })
      case 'GET /t/slow':
        setTimeout(() => respond({ status: 200, body: { slow: t.slow } }), 20)
        return
      case 'POST /t/slow':
        t.slow++
        return respond({ status: 200, body: { ok: true } })
      case 'GET /t/fast':
        return respond({ status: 200, body: { fast: t.fast } })
      case 'POST /t/fast':
        t.fast++
        return respond({ status: 200, body: { ok: true } })
      // Starts, on its first GET, a timer that changes it later (outside any request).
      case 'GET /t/lazy':
        if (!t.lazyStarted) {
          t.lazyStarted = true
          setTimeout(() => {
            t.lazy++
            this.notify('/t/lazy')
          }, 20)
        }
        return respond({ status: 200, body: { lazy: t.lazy } })
      // Holds a lock until the gate opens, answers, then hands the lock to waiting writes.
      case 'GET /t/locked': {
        t.lock.held = true
        void (t.gate ?? Promise.resolve()).then(() => {
          respond({ status: 200, body: { locked: t.locked } })
          t.lock.held = false
          for (const waiter of t.lock.waiters.splice(0)) waiter()
        })
        return
      }
      case 'POST /t/locked': {
        const write = (): void => {
          t.locked++
          respond({ status: 200, body: { ok: true } })
        }
        if (t.lock.held) t.lock.waiters.push(write)
        else write()
        return
      }
    }
    if (method === 'GET' && pathname.startsWith('/t/hang/')) return // never answers
    respond({ status: 404, body: { error: 'not found' } })
  }

  whoami(req: http.IncomingMessage, replay: boolean, secure: boolean): Record<string, unknown> {
    return {
      cookie: req.headers.cookie ?? null,
      host: req.headers.host ?? null,
      authorization: req.headers.authorization ?? null,
      acceptEncoding: req.headers['accept-encoding'] ?? null,
      ifNoneMatch: req.headers['if-none-match'] ?? null,
      userAgent: req.headers['user-agent'] ?? null,
      forwardedFor: req.headers['x-forwarded-for'] ?? null,
      traceparent: req.headers.traceparent ?? null,
      remoteAddress: req.socket.remoteAddress ?? null,
      secure,
      replay,
    }
  }
}

/** A running fixture app. */
export interface Fixture {
  readonly framework: Framework
  readonly state: FixtureState
  readonly hub: Hub
  /** The server the app listens on (the hub is attached to it). */
  readonly server: http.Server | https.Server
  readonly port: number
  /** `http(s)://127.0.0.1:port` */
  readonly url: string
  /** `ws(s)://127.0.0.1:port/listen` */
  readonly wsUrl: string
  close(): Promise<void>
}

export interface FixtureOptions {
  hub?: HubOptions
  tls?: boolean
  port?: number
}

const BIGINT_BODY = '{"n":12345678901234567890}'

/** The test certificate (self-signed for 127.0.0.1 and localhost, valid until 2125). */
export function tlsMaterial(): { key: Buffer; cert: Buffer } {
  const dir = path.join(__dirname, '..', 'fixtures')
  return { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) }
}

/** Starts the fixture app of `framework` on 127.0.0.1, port 0 unless given. */
export async function startFixture(framework: Framework, options: FixtureOptions = {}): Promise<Fixture> {
  const state = new FixtureState()
  const started = await BUILDERS[framework](state, options)
  const scheme = options.tls ? 'https' : 'http'
  const port = (started.server.address() as AddressInfo).port
  return {
    framework,
    state,
    hub: started.hub,
    server: started.server,
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    wsUrl: `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}/listen`,
    close: started.close,
  }
}

interface Started {
  server: http.Server | https.Server
  hub: Hub
  close(): Promise<void>
}

function listen(server: http.Server | https.Server, port = 0): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
}

function closeServer(server: http.Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
}

/** Serves `handler` on http or https with the hub of an Express or Koa app attached. */
async function serve(
  handler: http.RequestListener,
  live: { hub: Hub; attach(server: http.Server | https.Server): unknown },
  options: FixtureOptions,
): Promise<Started> {
  const server = options.tls ? https.createServer(tlsMaterial(), handler) : http.createServer(handler)
  live.attach(server)
  await listen(server, options.port)
  return {
    server,
    hub: live.hub,
    close: async () => {
      await live.hub.close()
      await closeServer(server)
    },
  }
}

const BUILDERS: Record<Framework, (state: FixtureState, options: FixtureOptions) => Promise<Started>> = {
  async fastify(state, options) {
    // One fixture type for both transports; Fastify's types split http and https instances.
    const app = (Fastify as unknown as (o: object) => FastifyInstance)(
      options.tls ? { https: tlsMaterial() } : {},
    )
    await app.register(fastifyListenjs, options.hub ?? {})
    const hub = app.listenjs
    state.notify = (path) => hub.notify(path)
    app.all('/t/*', (request, reply) => {
      state.trust(request.raw, (answer) => {
        if (answer.public) request.listenjs = { public: true }
        void reply.code(answer.status).send(answer.body)
      })
    })
    const quiet: RouteOptions = { notify: false }
    app.addHook('onRequest', (request, _reply, done) => {
      if (request.method === 'POST' && request.url === '/als') state.als.run({ user: 'secret' }, done)
      else done()
    })
    app.get<{ Querystring: { title?: string } }>('/items', async (request) => {
      if (!fastifyIsReplay(request)) state.views++
      if (state.slowMs) await sleep(state.slowMs)
      return state.list(request.query)
    })
    app.get<{ Params: { id: string } }>('/items/:id', async (request, reply) => {
      const item = state.items.get(request.params.id)
      return item ?? reply.code(404).send({ error: 'not found' })
    })
    app.post<{ Body: { title: string } }>('/items', async (request, reply) =>
      reply.code(201).send(state.create(request.body.title)),
    )
    app.post('/items/quiet', { config: { listenjs: quiet } }, async () => state.create('quiet'))
    app.post('/elsewhere', { config: { listenjs: { changes: ['/items'] } } }, async () =>
      state.create('elsewhere'),
    )
    app.post('/items/burst', async () => {
      for (let i = 0; i < 10; i++) {
        state.create(`burst-${i}`)
        hub.notify('/items')
      }
      return { ok: true }
    })
    app.put<{ Params: { id: string }; Body: { title: string } }>('/items/:id', async (request) => {
      const item = { id: request.params.id, title: request.body.title }
      state.items.set(item.id, item)
      return item
    })
    app.patch<{ Params: { id: string }; Body: { title: string } }>('/items/:id', async (request, reply) => {
      const item = state.items.get(request.params.id)
      if (!item) return reply.code(404).send({ error: 'not found' })
      item.title = request.body.title
      return item
    })
    app.delete<{ Params: { id: string } }>('/items/:id', async (request, reply) => {
      if (!state.items.delete(request.params.id)) return reply.code(404).send({ error: 'not found' })
      return reply.code(204).send()
    })
    app.post<{ Params: { id: string; status: string } }>(
      '/items/:id/silently/:status',
      async (request, reply) => {
        const item = state.items.get(request.params.id)
        if (item) item.title = 'changed silently'
        return reply.code(Number(request.params.status)).send({ status: Number(request.params.status) })
      },
    )
    app.post<{ Params: { id: string } }>('/items/:id/throw', async (request) => {
      const item = state.items.get(request.params.id)
      if (item) item.title = 'changed then threw'
      throw new Error('handler failed')
    })
    app.get('/views', async () => ({ views: state.views }))
    app.get('/private', async (request, reply) => {
      const status = state.privateStatus(request.headers)
      return status === 200 ? { secret: 'alice' } : reply.code(status).send({ error: status })
    })
    app.post('/private/revoke', { config: { listenjs: { changes: ['/private'] } } }, async () => {
      state.privateRevoked = true
      return { ok: true }
    })
    app.get('/missing', async (_request, reply) => reply.code(404).send({ error: 'not found' }))
    app.get<{ Params: { user: string } }>('/users/:user/inbox', async (request, reply) => {
      const [status, body] = state.inbox(request.params.user, request.headers)
      return reply.code(status).send(body)
    })
    app.post<{ Params: { user: string }; Body: { text: string } }>('/users/:user/inbox', async (request) =>
      state.post(request.params.user, request.body.text),
    )
    app.post<{ Params: { user: string } }>('/users/:user/revoke', async (request) => {
      state.revoked.add(request.params.user)
      return { ok: true }
    })
    app.get('/local-only', async (request, reply) =>
      request.ip === '127.0.0.1' ? { local: true } : reply.code(403).send({ error: 'forbidden' }),
    )
    app.get('/whoami', async (request) =>
      state.whoami(request.raw, fastifyIsReplay(request), request.protocol === 'https'),
    )
    app.get('/als', async () => ({ value: state.als.getStore()?.user ?? null }))
    app.post('/als', async () => ({ ok: true }))
    app.get('/loop', async () => {
      hub.notify('/loop')
      return { n: ++state.loops }
    })
    app.get('/text', async (_request, reply) => reply.type('text/plain').send('hello text'))
    app.get('/empty', async (_request, reply) => reply.code(204).send())
    app.get('/bigint', async (_request, reply) => reply.type('application/json').send(BIGINT_BODY))
    app.get('/public', { config: { listenjs: { public: true } } }, async () => ({ items: state.items.size }))
    app.get('/things', async () => [...state.things.values()])
    app.get<{ Params: { id: string } }>('/things/:id', async (request, reply) => {
      const answer = state.thing(request.params.id)
      return reply.code(answer.status).send(answer.body)
    })
    app.put<{ Params: { id: string } }>('/things/:id', async (request, reply) => {
      const answer = state.putThing(request.params.id, request.body)
      if (answer.contentLocation) reply.header('content-location', answer.contentLocation)
      return reply.code(answer.status).send(answer.body)
    })
    await app.listen({ port: options.port ?? 0, host: '127.0.0.1' })
    return { server: app.server, hub, close: () => app.close() }
  },

  async express(state, options) {
    const app = express()
    const live = expressListenjs(options.hub ?? {})
    state.notify = (path) => live.notify(path)
    const hub = live.hub
    app.use(live)
    app.use(express.json())
    app.use((req, _res, next) => {
      if (req.method === 'POST' && req.url === '/als') state.als.run({ user: 'secret' }, next)
      else next()
    })
    const json = (res: express.Response, status: number, body: unknown): void => {
      res.status(status).json(body)
    }
    app.get('/items', async (req, res) => {
      if (!expressIsReplay(req)) state.views++
      if (state.slowMs) await sleep(state.slowMs)
      res.json(state.list(req.query as { title?: string }))
    })
    app.get('/items/:id', (req, res) => {
      const item = state.items.get(req.params.id)
      if (item) res.json(item)
      else json(res, 404, { error: 'not found' })
    })
    app.post('/items/quiet', (_req, res) => {
      res.locals.listenjs = { notify: false } satisfies RouteOptions
      res.json(state.create('quiet'))
    })
    app.post('/items/burst', (_req, res) => {
      for (let i = 0; i < 10; i++) {
        state.create(`burst-${i}`)
        hub.notify('/items')
      }
      res.json({ ok: true })
    })
    app.post('/items', (req, res) => json(res, 201, state.create((req.body as { title: string }).title)))
    app.post('/elsewhere', (_req, res) => {
      res.locals.listenjs = { changes: ['/items'] } satisfies RouteOptions
      res.json(state.create('elsewhere'))
    })
    app.put('/items/:id', (req, res) => {
      const item = { id: req.params.id, title: (req.body as { title: string }).title }
      state.items.set(item.id, item)
      res.json(item)
    })
    app.patch('/items/:id', (req, res) => {
      const item = state.items.get(req.params.id)
      if (!item) return json(res, 404, { error: 'not found' })
      item.title = (req.body as { title: string }).title
      res.json(item)
    })
    app.delete('/items/:id', (req, res) => {
      if (!state.items.delete(req.params.id)) return json(res, 404, { error: 'not found' })
      res.status(204).end()
    })
    app.post('/items/:id/silently/:status', (req, res) => {
      const item = state.items.get(req.params.id)
      if (item) item.title = 'changed silently'
      json(res, Number(req.params.status), { status: Number(req.params.status) })
    })
    app.post('/items/:id/throw', (req) => {
      const item = state.items.get(req.params.id)
      if (item) item.title = 'changed then threw'
      throw new Error('handler failed')
    })
    app.get('/views', (_req, res) => res.json({ views: state.views }))
    app.get('/private', (req, res) => {
      const status = state.privateStatus(req.headers)
      if (status === 200) res.json({ secret: 'alice' })
      else json(res, status, { error: status })
    })
    app.post('/private/revoke', (_req, res) => {
      state.privateRevoked = true
      res.locals.listenjs = { changes: ['/private'] } satisfies RouteOptions
      res.json({ ok: true })
    })
    app.get('/missing', (_req, res) => json(res, 404, { error: 'not found' }))
    app.get('/users/:user/inbox', (req, res) => {
      const [status, body] = state.inbox(req.params.user, req.headers)
      json(res, status, body)
    })
    app.post('/users/:user/inbox', (req, res) => {
      res.json(state.post(req.params.user, (req.body as { text: string }).text))
    })
    app.post('/users/:user/revoke', (req, res) => {
      state.revoked.add(req.params.user)
      res.json({ ok: true })
    })
    app.get('/local-only', (req, res) => {
      if (req.ip === '127.0.0.1') res.json({ local: true })
      else json(res, 403, { error: 'forbidden' })
    })
    app.get('/whoami', (req, res) => res.json(state.whoami(req, expressIsReplay(req), req.secure)))
    app.get('/als', (_req, res) => res.json({ value: state.als.getStore()?.user ?? null }))
    app.post('/als', (_req, res) => res.json({ ok: true }))
    app.get('/loop', (_req, res) => {
      live.notify('/loop')
      res.json({ n: ++state.loops })
    })
    app.get('/text', (_req, res) => res.type('text/plain').send('hello text'))
    app.get('/empty', (_req, res) => res.status(204).end())
    app.get('/bigint', (_req, res) => res.type('application/json').send(BIGINT_BODY))
    app.get('/public', (_req, res) => {
      res.locals.listenjs = { public: true } satisfies RouteOptions
      res.json({ items: state.items.size })
    })
    const answer = (res: express.Response, { status, body, contentLocation }: Answer): void => {
      if (contentLocation) res.set('content-location', contentLocation)
      json(res, status, body)
    }
    app.all('/t/*rest', (req, res) =>
      state.trust(req, (answer) => {
        if (answer.public) res.locals.listenjs = { public: true } satisfies RouteOptions
        json(res, answer.status, answer.body)
      }),
    )
    app.get('/things', (_req, res) => res.json([...state.things.values()]))
    app.get('/things/:id', (req, res) => answer(res, state.thing(req.params.id)))
    app.put('/things/:id', (req, res) => answer(res, state.putThing(req.params.id, req.body)))
    // Express 5 answers thrown errors with 500 on its own; keep the log quiet in tests.
    app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      json(res, 500, { error: 'internal' })
    })
    return serve(app, live, options)
  },

  async koa(state, options) {
    const app = new Koa()
    const live = koaListenjs(options.hub ?? {})
    state.notify = (path) => live.notify(path)
    const router = new Router()
    app.use(async (ctx, next) => {
      try {
        await next()
      } catch {
        ctx.status = 500
        ctx.body = { error: 'internal' }
      }
    })
    app.use(bodyParser())
    // The HTTP stream is served by the middleware where it sees every request: on the app.
    app.use((ctx, next) => (live.hub.isStream(ctx.req) ? live.middleware(ctx, next) : next()))
    app.use((ctx, next) => {
      if (ctx.method === 'POST' && ctx.path === '/als') return state.als.run({ user: 'secret' }, next)
      return next()
    })
    // Mounted on the router, not the app: route-level mutations must notify with the request path.
    router.use(live.middleware)
    router.get('/items', async (ctx) => {
      if (!koaIsReplay(ctx)) state.views++
      if (state.slowMs) await sleep(state.slowMs)
      ctx.body = state.list(ctx.query as { title?: string })
    })
    router.post('/items/quiet', (ctx) => {
      ctx.state.listenjs = { notify: false } satisfies RouteOptions
      ctx.body = state.create('quiet')
    })
    router.post('/items/burst', (ctx) => {
      for (let i = 0; i < 10; i++) {
        state.create(`burst-${i}`)
        live.notify('/items')
      }
      ctx.body = { ok: true }
    })
    router.get('/items/:id', (ctx) => {
      const item = state.items.get(ctx.params.id as string)
      ctx.status = item ? 200 : 404
      ctx.body = item ?? { error: 'not found' }
    })
    router.post('/items', (ctx) => {
      ctx.status = 201
      ctx.body = state.create((ctx.request.body as { title: string }).title)
    })
    router.post('/elsewhere', (ctx) => {
      ctx.state.listenjs = { changes: ['/items'] } satisfies RouteOptions
      ctx.body = state.create('elsewhere')
    })
    router.put('/items/:id', (ctx) => {
      const item = { id: ctx.params.id as string, title: (ctx.request.body as { title: string }).title }
      state.items.set(item.id, item)
      ctx.body = item
    })
    router.patch('/items/:id', (ctx) => {
      const item = state.items.get(ctx.params.id as string)
      if (!item) {
        ctx.status = 404
        ctx.body = { error: 'not found' }
        return
      }
      item.title = (ctx.request.body as { title: string }).title
      ctx.body = item
    })
    router.delete('/items/:id', (ctx) => {
      if (!state.items.delete(ctx.params.id as string)) {
        ctx.status = 404
        ctx.body = { error: 'not found' }
        return
      }
      ctx.status = 204
    })
    router.post('/items/:id/silently/:status', (ctx) => {
      const item = state.items.get(ctx.params.id as string)
      if (item) item.title = 'changed silently'
      ctx.status = Number(ctx.params.status)
      ctx.body = { status: Number(ctx.params.status) }
    })
    router.post('/items/:id/throw', (ctx) => {
      const item = state.items.get(ctx.params.id as string)
      if (item) item.title = 'changed then threw'
      throw new Error('handler failed')
    })
    router.get('/views', (ctx) => {
      ctx.body = { views: state.views }
    })
    router.get('/private', (ctx) => {
      const status = state.privateStatus(ctx.headers)
      ctx.status = status
      ctx.body = status === 200 ? { secret: 'alice' } : { error: status }
    })
    router.post('/private/revoke', (ctx) => {
      state.privateRevoked = true
      ctx.state.listenjs = { changes: ['/private'] } satisfies RouteOptions
      ctx.body = { ok: true }
    })
    router.get('/users/:user/inbox', (ctx) => {
      const [status, body] = state.inbox(ctx.params.user as string, ctx.headers)
      ctx.status = status
      ctx.body = body
    })
    router.post('/users/:user/inbox', (ctx) => {
      ctx.body = state.post(ctx.params.user as string, (ctx.request.body as { text: string }).text)
    })
    router.post('/users/:user/revoke', (ctx) => {
      state.revoked.add(ctx.params.user as string)
      ctx.body = { ok: true }
    })
    router.get('/local-only', (ctx) => {
      ctx.status = ctx.ip === '127.0.0.1' ? 200 : 403
      ctx.body = ctx.status === 200 ? { local: true } : { error: 'forbidden' }
    })
    router.get('/missing', (ctx) => {
      ctx.status = 404
      ctx.body = { error: 'not found' }
    })
    router.get('/whoami', (ctx) => {
      ctx.body = state.whoami(ctx.req, koaIsReplay(ctx), ctx.protocol === 'https')
    })
    router.get('/als', (ctx) => {
      ctx.body = { value: state.als.getStore()?.user ?? null }
    })
    router.post('/als', (ctx) => {
      ctx.body = { ok: true }
    })
    router.get('/loop', (ctx) => {
      live.notify('/loop')
      ctx.body = { n: ++state.loops }
    })
    router.get('/text', (ctx) => {
      ctx.type = 'text/plain'
      ctx.body = 'hello text'
    })
    router.get('/empty', (ctx) => {
      ctx.status = 204
    })
    router.get('/bigint', (ctx) => {
      ctx.type = 'application/json'
      ctx.body = BIGINT_BODY
    })
    router.get('/public', (ctx) => {
      ctx.state.listenjs = { public: true } satisfies RouteOptions
      ctx.body = { items: state.items.size }
    })
    const answer = (ctx: Koa.Context, { status, body, contentLocation }: Answer): void => {
      if (contentLocation) ctx.set('content-location', contentLocation)
      ctx.status = status
      ctx.body = body
    }
    router.all(
      '/t/*rest',
      (ctx) =>
        new Promise<void>((resolve) =>
          state.trust(ctx.req, (answer) => {
            if (answer.public) ctx.state.listenjs = { public: true } satisfies RouteOptions
            ctx.status = answer.status
            ctx.body = answer.body
            resolve()
          }),
        ),
    )
    router.get('/things', (ctx) => {
      ctx.body = [...state.things.values()]
    })
    router.get('/things/:id', (ctx) => answer(ctx, state.thing(ctx.params.id as string)))
    router.put('/things/:id', (ctx) => answer(ctx, state.putThing(ctx.params.id as string, ctx.request.body)))
    app.use(router.routes())
    app.use(router.allowedMethods())
    app.silent = true
    return serve(app.callback(), live, options)
  },
}
