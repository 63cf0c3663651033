// The appointments API on Fastify with listenjs, its metrics exported to Prometheus through the
// OpenTelemetry SDK. Run `npm run build` once, then:
//   node examples/observability/server.mjs   →  the app on http://localhost:3003 (PORT),
//                                                 its metrics on http://localhost:9464/metrics (METRICS_PORT)
// PORT=0 / METRICS_PORT=0 pick free ports; both URLs are printed. HOST (default localhost) is where
// both listen.
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import { metrics } from '@opentelemetry/api'
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import listenjs from 'listenjs/fastify'
import { instrument } from 'listenjs/otel'
import { createStore, timeRangeError, validateAppointment } from '../calendar/store.mjs'

const dirname = path.dirname(fileURLToPath(import.meta.url))
const port = Number(process.env.PORT || 3003)
const metricsPort = Number(process.env.METRICS_PORT || 9464)
const host = process.env.HOST || 'localhost'
const METRICS_PATH = '/metrics'

/**
 * A Prometheus exporter serving `GET /metrics` on `port`; resolves with it and the port it listens
 * on. The exporter's own server takes any port but 0 (it reads 0 as "unset" and binds 9464) and does
 * not say which port it bound, so for port 0 it is kept from listening, and its request handler is
 * served from a server of ours on a free port.
 */
async function startPrometheus(port, host) {
  if (port !== 0) {
    let exporter
    await new Promise((resolve, reject) => {
      exporter = new PrometheusExporter({ port, host, endpoint: METRICS_PATH }, (error) =>
        error ? reject(error) : resolve(),
      )
    })
    return { exporter, port, close: async () => {} } // the provider's shutdown stops its server
  }
  const exporter = new PrometheusExporter({ preventServerStart: true })
  const server = http.createServer((request, response) => {
    if (new URL(request.url ?? '/', 'http://localhost').pathname === METRICS_PATH) {
      exporter.getMetricsRequestHandler(request, response)
    } else {
      response.statusCode = 404
      response.end()
    }
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, resolve)
  })
  return {
    exporter,
    port: server.address().port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

// 1. The OpenTelemetry SDK, with Prometheus as its reader, registered globally before instrument().
let prometheus
try {
  prometheus = await startPrometheus(metricsPort, host)
} catch (error) {
  console.error(`Cannot serve the metrics on ${host}:${metricsPort}: ${error.message}`)
  process.exit(1)
}
const provider = new MeterProvider({ readers: [prometheus.exporter] })
metrics.setGlobalMeterProvider(provider)

// 2. The app: a plain REST API plus listenjs, as in the other examples.
const store = createStore()
const app = Fastify()
await app.register(listenjs, { path: '/listen' })

// 3. One line: the hub's gauges, counters and histograms on the global meter provider.
const stopMetrics = instrument(app.listenjs) // or instrument(hub, { meter: provider.getMeter('listenjs') })

// The calendar page and the browser client, to watch the metrics move while you edit.
app.register(fastifyStatic, { root: path.join(dirname, '../calendar/public'), prefix: '/' })
app.register(fastifyStatic, {
  root: path.resolve(dirname, '../../dist'),
  prefix: '/listenjs/',
  decorateReply: false,
})

const LIST = '/api/appointments'
const notFound = (reply, id) =>
  reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Appointment ${id} not found` })
const invalid = (reply, errors) =>
  reply.code(400).send({
    statusCode: 400,
    error: 'Bad Request',
    message: errors.map((e) => `${e.field} ${e.message}`.trim()).join('; '),
    errors,
  })
/** The validation errors of `body` (merged into `current` for a PATCH); empty when it is valid. */
const check = (body, current = {}, partial = false) => {
  const errors = validateAppointment(body, { partial })
  if (errors.length) return errors
  const range = timeRangeError({ ...current, ...body })
  return range ? [range] : []
}

app.get(LIST, () => store.list())
app.post(LIST, (request, reply) => {
  const errors = check(request.body)
  return errors.length ? invalid(reply, errors) : reply.code(201).send(store.create(request.body))
})
app.get(`${LIST}/:id`, (request, reply) => store.get(request.params.id) ?? notFound(reply, request.params.id))
app.put(`${LIST}/:id`, (request, reply) => {
  const { id } = request.params
  if (!store.get(id)) return notFound(reply, id)
  const errors = check(request.body)
  return errors.length ? invalid(reply, errors) : store.replace(id, request.body)
})
app.patch(`${LIST}/:id`, (request, reply) => {
  const { id } = request.params
  const current = store.get(id)
  if (!current) return notFound(reply, id)
  const errors = check(request.body, current, true)
  return errors.length ? invalid(reply, errors) : store.update(id, request.body)
})
app.delete(`${LIST}/:id`, (request, reply) =>
  store.remove(request.params.id) ? reply.code(204).send() : notFound(reply, request.params.id),
)

try {
  await app.listen({ port, host })
} catch (error) {
  console.error(error)
  process.exit(1)
}
console.log(`Appointments (Fastify) on http://localhost:${app.server.address().port}`)
console.log(`Prometheus metrics on http://localhost:${prometheus.port}${METRICS_PATH}`)

let closing = false
async function shutdown() {
  if (closing) return
  closing = true
  setTimeout(() => process.exit(1), 5000).unref()
  try {
    await app.close() // open pages get a "going away" close: counted in listenjs_closes_total
    stopMetrics()
    await provider.shutdown() // stops the exporter's own server, if it has one
    await prometheus.close()
    process.exit(0)
  } catch (error) {
    console.error(error)
    process.exit(1)
  }
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
