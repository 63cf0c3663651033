// The appointments calendar: a plain Fastify REST API plus one line of listenjs.
// No route calls listenjs: every successful POST/PUT/PATCH/DELETE under /api/appointments
// pushes the fresh GET /api/appointments to every open page.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import listenjs from 'listenjs/fastify'
import { createStore, timeRangeError, TEXT_MAX, TITLE_MAX } from './store.mjs'

const dirname = path.dirname(fileURLToPath(import.meta.url))

const fields = {
  title: { type: 'string', minLength: 1, maxLength: TITLE_MAX },
  start: { type: 'string', format: 'date-time' },
  end: { type: 'string', format: 'date-time' },
  location: { type: 'string', maxLength: TEXT_MAX },
  notes: { type: 'string', maxLength: TEXT_MAX },
}
const required = ['title', 'start', 'end']

const fullBody = { type: 'object', properties: fields, required, additionalProperties: false }
const partialBody = { type: 'object', properties: fields, additionalProperties: false }
const appointment = {
  type: 'object',
  properties: { id: { type: 'string' }, ...fields },
  required: ['id', ...required],
}
const params = {
  type: 'object',
  properties: { id: { type: 'string', minLength: 1, maxLength: 64 } },
  required: ['id'],
}

function badRequest(reply, errors) {
  const message = errors.map((e) => (e.field ? `${e.field} ${e.message}` : e.message)).join('; ')
  return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message, errors })
}

/** The list's path; an appointment's canonical path is `${LIST}/<id>`. */
const LIST = '/api/appointments'
const itemPath = (id) => `${LIST}/${encodeURIComponent(id)}`

/**
 * Names the appointment an answer is about by its canonical path (RFC 9110 Content-Location): a
 * write then reaches the listeners of that path, and a listener of that path is reached by writes,
 * whatever spelling of the path the request used. A created one is also named by `Location` (201).
 */
function named(reply, item, created = false) {
  reply.header('content-location', itemPath(item.id))
  if (created) reply.header('location', itemPath(item.id))
  return item
}

function notFound(reply, id) {
  return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Appointment ${id} not found` })
}

/** Turns an Ajv error into the wording the form shows under the field. */
function friendlyMessage({ keyword, params, message }) {
  switch (keyword) {
    case 'required':
      return 'is required'
    case 'additionalProperties':
      return 'is not an allowed property'
    case 'minLength':
      return params.limit === 1 ? 'must not be empty' : `must be at least ${params.limit} characters`
    case 'maxLength':
      return `must be at most ${params.limit} characters`
    case 'format':
      return 'must be an ISO 8601 date-time, e.g. 2025-01-31T09:30:00.000Z'
    case 'type':
      return `must be a ${params.type}`
    default:
      return message
  }
}

/** Rules JSON schema cannot express: a non-blank title, end after start. */
function semanticErrors(item) {
  const errors = []
  if (item.title.trim() === '') errors.push({ field: 'title', message: 'must not be blank' })
  const range = timeRangeError(item)
  if (range) errors.push(range)
  return errors
}

/**
 * Builds the calendar app without listening, so tests can start it on port 0:
 *   const app = buildApp(); await app.listen({ port: 0 })
 * Options: `store` (default: a fresh seeded in-memory store; or the Redis store of redis-store.mjs,
 * whose calls are async: every call is awaited, so either works), `logger` (Fastify logger option),
 * `listenjs` (extra listenjs hub options, e.g. `{ backplane: redisBackplane() }` for several processes),
 * `https` (Fastify's `https` option, `{ key, cert }`: the page then connects over `wss://`).
 */
export function buildApp({ store = createStore(), logger = false, listenjs: liveOptions = {}, https } = {}) {
  const app = Fastify({
    logger,
    ...(https ? { https } : {}),
    // Reject unknown properties and wrong types with a 400 instead of silently dropping or coercing them.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
  })
  app.decorate('store', store)

  app.register(listenjs, { path: '/listen', ...liveOptions })

  // The page, and the browser build of the listenjs client (run `npm run build` first).
  app.register(fastifyStatic, { root: path.join(dirname, 'public'), prefix: '/' })
  app.register(fastifyStatic, {
    root: path.resolve(dirname, '../../dist'),
    prefix: '/listenjs/',
    decorateReply: false,
  })

  // Validation errors as { statusCode, error, message, errors: [{ field, message }] } for the form.
  app.setErrorHandler((error, request, reply) => {
    if (!error.validation) throw error
    if (error.validationContext !== 'body') {
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: error.message })
    }
    return badRequest(
      reply,
      error.validation.map((v) => ({
        field: v.params?.missingProperty ?? v.params?.additionalProperty ?? v.instancePath.replace(/^\//, ''),
        message: friendlyMessage(v),
      })),
    )
  })

  app.get(
    LIST,
    { schema: { response: { 200: { type: 'array', items: appointment } } } },
    async () => await store.list(),
  )

  app.post(LIST, { schema: { body: fullBody, response: { 201: appointment } } }, async (request, reply) => {
    const errors = semanticErrors(request.body)
    if (errors.length) return badRequest(reply, errors)
    return reply.code(201).send(named(reply, await store.create(request.body), true))
  })

  app.get(`${LIST}/:id`, { schema: { params, response: { 200: appointment } } }, async (request, reply) => {
    const item = await store.get(request.params.id)
    return item ? named(reply, item) : notFound(reply, request.params.id)
  })

  app.put(
    `${LIST}/:id`,
    { schema: { params, body: fullBody, response: { 200: appointment } } },
    async (request, reply) => {
      const { id } = request.params
      if (!(await store.get(id))) return notFound(reply, id)
      const errors = semanticErrors(request.body)
      if (errors.length) return badRequest(reply, errors)
      // Deleted meanwhile (by another request, or another process): a 404 all the same.
      const item = await store.replace(id, request.body)
      return item ? named(reply, item) : notFound(reply, id)
    },
  )

  app.patch(
    `${LIST}/:id`,
    { schema: { params, body: partialBody, response: { 200: appointment } } },
    async (request, reply) => {
      const { id } = request.params
      const current = await store.get(id)
      if (!current) return notFound(reply, id)
      const errors = semanticErrors({ ...current, ...request.body })
      if (errors.length) return badRequest(reply, errors)
      const item = await store.update(id, request.body)
      return item ? named(reply, item) : notFound(reply, id)
    },
  )

  app.delete(`${LIST}/:id`, { schema: { params } }, async (request, reply) => {
    const { id } = request.params
    if (!(await store.remove(id))) return notFound(reply, id)
    // No body to name, but the header still tells listenjs which appointment is gone.
    reply.header('content-location', itemPath(id))
    return reply.code(204).send()
  })

  return app
}
