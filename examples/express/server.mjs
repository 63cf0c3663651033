// The appointments API on Express 5 with listenjs. Run `npm run build` once, then:
//   node examples/express/server.mjs        →  http://localhost:3001 (PORT to change)
import { STATUS_CODES } from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { listenjs } from 'listenjs/express'
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
  const app = express()
  const live = listenjs({ path: '/listen', ...liveOptions })
  app.use(live) // before the routes: it watches every response and pushes after successful writes
  app.use(express.json())

  const notFound = (res, id) =>
    res.status(404).json({ statusCode: 404, error: 'Not Found', message: `Appointment ${id} not found` })
  const invalid = (res, errors) =>
    res.status(400).json({
      statusCode: 400,
      error: 'Bad Request',
      message: errors.map((e) => `${e.field} ${e.message}`.trim()).join('; '),
      errors,
    })
  const check = (body, current, partial = false) => {
    const errors = validateAppointment(body, { partial })
    if (errors.length) return errors
    const range = timeRangeError({ ...current, ...body })
    return range ? [range] : []
  }

  app.get('/api/appointments', (req, res) => res.json(store.list()))
  app.post('/api/appointments', (req, res) => {
    const errors = check(req.body)
    if (errors.length) return invalid(res, errors)
    res.status(201).json(store.create(req.body))
  })
  app.get('/api/appointments/:id', (req, res) => {
    const item = store.get(req.params.id)
    return item ? res.json(item) : notFound(res, req.params.id)
  })
  for (const method of ['put', 'patch']) {
    app[method]('/api/appointments/:id', (req, res) => {
      const current = store.get(req.params.id)
      if (!current) return notFound(res, req.params.id)
      const errors = check(req.body, method === 'patch' ? current : {}, method === 'patch')
      if (errors.length) return invalid(res, errors)
      res.json(method === 'put' ? store.replace(current.id, req.body) : store.update(current.id, req.body))
    })
  }
  app.delete('/api/appointments/:id', (req, res) =>
    store.remove(req.params.id) ? res.status(204).end() : notFound(res, req.params.id),
  )

  // The same calendar page as the Fastify example, and the browser build of the client.
  app.use(express.static(path.join(dirname, '../calendar/public')))
  app.use('/listenjs', express.static(path.resolve(dirname, '../../dist')))

  // Malformed JSON and other errors as JSON, without stack traces.
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- Express needs four parameters
  app.use((err, req, res, next) => {
    const status = err.status ?? err.statusCode ?? 500
    res
      .status(status)
      .json({ statusCode: status, error: STATUS_CODES[status], message: errorMessage(err, status) })
  })

  return { app, live, store, ...lifecycle(app, live) }
}

if (isMain(import.meta.url)) await runFromCommandLine(createServer(), { name: 'Express', defaultPort: 3001 })
