import type { IncomingMessage } from 'node:http'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Hub } from '../core/hub'
import type { RouteMatch, RouteOptions } from '../core/types'
import { createHub } from '../node'
import type { HubOptions } from '../core/options'
import { isReplayRequest } from '../core/replay'

declare module 'fastify' {
  interface FastifyInstance {
    /** The listenjs hub: `notify`, `stats`, events. */
    listenjs: Hub
  }
  interface FastifyContextConfig {
    /** listenjs options of this route: `{ notify?, changes?, public? }`. */
    listenjs?: RouteOptions
  }
  interface FastifyRequest {
    /**
     * listenjs options of this request, set by a handler at run time (`request.listenjs = { public:
     * true }`); they replace the route's `config.listenjs`. Read when the response ends.
     */
    listenjs?: RouteOptions
  }
}

/** The route Fastify matched (`routeOptions.url` includes the prefix), or undefined on a 404. */
function routeOf(request: FastifyRequest): RouteMatch | undefined {
  const template = request.routeOptions.url
  const params = request.params
  if (template === undefined || typeof params !== 'object' || params === null) return undefined
  return { template, params: params as Readonly<Record<string, unknown>> }
}

const plugin: FastifyPluginAsync<HubOptions> = async (app, options) => {
  // Fastify mixes its own registration options into the plugin's; pick listenjs's own.
  const {
    prefix: _prefix,
    logLevel: _logLevel,
    ...hubOptions
  } = options as HubOptions & {
    prefix?: string
    logLevel?: string
  }
  const hub = createHub(hubOptions)
  app.decorate('listenjs', hub)
  // A value, not a reference, so every request starts without options of its own.
  app.decorateRequest('listenjs', undefined)
  // The HTTP stream (for networks that block WebSockets) on the endpoint's path: not a write.
  app.route({
    method: ['POST', 'OPTIONS'],
    url: hub.options.path,
    handler: (request, reply) => {
      reply.hijack()
      hub.stream(request.raw, reply.raw, request.body)
    },
  })
  app.addHook('onRequest', (request, reply, done) => {
    if (hub.isStream(request.raw)) return done()
    hub.track(
      request.raw,
      reply.raw,
      request.raw.url ?? '/',
      () => request.listenjs ?? request.routeOptions.config.listenjs,
      () => routeOf(request),
    )
    done()
  })
  hub.attach(app.server)
  app.addHook('preClose', async () => {
    await hub.close()
  })
}

/**
 * The listenjs Fastify plugin: `await app.register(listenjs, options)`. Attaches to `app.server`,
 * decorates `app.listenjs` with the {@link Hub}, and makes every successful POST, PUT, PATCH and
 * DELETE notify its path. Per-route options go in the route's `config.listenjs`, per-request ones
 * in `request.listenjs`. Sockets are closed in `preClose`.
 * @throws ListenjsError `invalid_option` at registration when an option is wrong
 */
const listenjs = fp(plugin, { fastify: '5.x', name: 'listenjs' })
export default listenjs
export { listenjs }

/** Whether `request` is a replay made by listenjs (to keep it out of counters, logs, rate limits). */
export function isReplay(request: FastifyRequest | IncomingMessage): boolean {
  return isReplayRequest('raw' in request ? request.raw : request)
}

export type { HubOptions, RouteOptions }
