// The appointments API on Koa 3 + @koa/router with listenjs. Run `npm run build` once, then:
//   node examples/koa/server.mjs        →  http://localhost:3002 (PORT to change)
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { STATUS_CODES } from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Koa from 'koa'
import { Router } from '@koa/router'
import { bodyParser } from '@koa/bodyparser'
import { listenjs } from 'listenjs/koa'
import { isMain, lifecycle, runFromCommandLine } from '../run.mjs'
import { createStore, timeRangeError, validateAppointment } from '../calendar/store.mjs'

const dirname = path.dirname(fileURLToPath(import.meta.url))

const errorMessage = (err, status) =>
  err instanceof SyntaxError ? 'Body is not valid JSON' : status < 500 ? err.message : STATUS_CODES[status]

/**
 * Builds the app without listening. `start(port)` listens, attaches the WebSocket endpoint and
 * resolves with the http.Server; `close()` stops both. Use port 0 in tests.
 */
export function createServer({ store = createStore(), listenjs: liveOptions = {} } = {}) {
  const app = new Koa()
  const live = listenjs({ path: '/listen', ...liveOptions })
  const router = new Router({ prefix: '/api/appointments' })

  const fail = (ctx, status, message, errors) => {
    ctx.status = status
    ctx.body = { statusCode: status, error: STATUS_CODES[status], message, errors }
  }
  const notFound = (ctx) => fail(ctx, 404, `Appointment ${ctx.params.id} not found`)
  const validate = (ctx, current, partial = false) => {
    let errors = validateAppointment(ctx.request.body, { partial })
    if (!errors.length) errors = [timeRangeError({ ...current, ...ctx.request.body })].filter(Boolean)
    if (errors.length) fail(ctx, 400, errors.map((e) => `${e.field} ${e.message}`.trim()).join('; '), errors)
    return errors.length === 0
  }

  router
    .get('/', (ctx) => {
      ctx.body = store.list()
    })
    .post('/', (ctx) => {
      if (!validate(ctx, {})) return
      ctx.status = 201
      ctx.body = store.create(ctx.request.body)
    })
    .get('/:id', (ctx) => {
      const item = store.get(ctx.params.id)
      if (!item) return notFound(ctx)
      ctx.body = item
    })
    .put('/:id', (ctx) => {
      if (!store.get(ctx.params.id)) return notFound(ctx)
      if (validate(ctx, {})) ctx.body = store.replace(ctx.params.id, ctx.request.body)
    })
    .patch('/:id', (ctx) => {
      const current = store.get(ctx.params.id)
      if (!current) return notFound(ctx)
      if (validate(ctx, current, true)) ctx.body = store.update(ctx.params.id, ctx.request.body)
    })
    .delete('/:id', (ctx) => {
      if (!store.remove(ctx.params.id)) return notFound(ctx)
      ctx.status = 204
    })

  // Errors (e.g. malformed JSON) as JSON, without stack traces.
  app.use(async (ctx, next) => {
    try {
      await next()
    } catch (err) {
      const status = err.status ?? err.statusCode ?? 500
      fail(ctx, status, errorMessage(err, status))
      if (status >= 500) ctx.app.emit('error', err, ctx)
    }
  })
  app.use(live.middleware) // before the routes: it pushes after successful writes
  app.use(bodyParser())
  app.use(router.routes())
  app.use(router.allowedMethods())
  app.use(serveStatic('/listenjs/', path.resolve(dirname, '../../dist')))
  app.use(serveStatic('/', path.join(dirname, '../calendar/public')))

  return { app, live, store, ...lifecycle(app, live) }
}

const TYPES = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.map': 'application/json',
}

/** A tiny static file server for the demo page (koa-static would do the same). */
function serveStatic(prefix, root) {
  return async (ctx, next) => {
    if (ctx.body !== undefined || ctx.method !== 'GET' || !ctx.path.startsWith(prefix)) return next()
    const relative = decodeURIComponent(ctx.path.slice(prefix.length)) || 'index.html'
    const file = path.resolve(root, relative)
    if (!file.startsWith(root + path.sep)) return next()
    const info = await stat(file).catch(() => null)
    if (!info?.isFile()) return next()
    ctx.type = TYPES[path.extname(file)] ?? 'application/octet-stream'
    ctx.length = info.size
    ctx.body = createReadStream(file)
  }
}

if (isMain(import.meta.url)) await runFromCommandLine(createServer(), { name: 'Koa', defaultPort: 3002 })
