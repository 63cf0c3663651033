import type { IncomingMessage } from 'node:http'
import type { Context, DefaultState, Middleware } from 'koa'
import type { Hub } from '../core/hub'
import type { AttachableServer, RouteMatch, RouteOptions } from '../core/types'
import { createHub } from '../node'
import type { HubOptions } from '../core/options'
import { isReplayRequest } from '../core/replay'

declare module 'koa' {
  interface DefaultState {
    /** listenjs options of this request: `{ notify?, changes?, public? }`, read when the response ends. */
    listenjs?: RouteOptions
  }
}

/** What {@link listenjs} returns for Koa. */
export interface KoaListenjs {
  /** `app.use(middleware)`, or `router.use(middleware)` on an `@koa/router` router. */
  readonly middleware: Middleware
  /** The hub: `notify`, `stats`, events, `close`. */
  readonly hub: Hub
  /** Serves the WebSocket endpoint on `server` and replays through it; returns `server`. */
  attach<S extends AttachableServer>(server: S): S
  /** Same as `hub.notify(path, payload?)`. */
  notify(path: string, payload?: unknown): void
}

/**
 * Creates listenjs for Koa: `app.use(live.middleware)` makes every successful POST, PUT, PATCH and
 * DELETE notify its path (per-request options in `ctx.state.listenjs`), then
 * `live.attach(app.listen(3000))` serves the WebSocket endpoint.
 * @throws ListenjsError `invalid_option` when an option is wrong
 */
export function listenjs(options: HubOptions = {}): KoaListenjs {
  const hub = createHub(options)
  const middleware: Middleware = (ctx, next) => {
    // The HTTP stream (for networks that block WebSockets) on the endpoint's path: served here.
    if (hub.isStream(ctx.req)) {
      ctx.respond = false
      hub.stream(ctx.req, ctx.res, (ctx.request as { body?: unknown }).body)
      return Promise.resolve()
    }
    hub.track(
      ctx.req,
      ctx.res,
      ctx.originalUrl,
      () => (ctx.state as DefaultState).listenjs,
      () => routeOf(ctx),
    )
    return next()
  }
  return {
    middleware,
    hub,
    attach: (server) => {
      hub.attach(server)
      return server
    },
    notify: (path, payload) => hub.notify(path, payload),
  }
}
export default listenjs

/**
 * The route @koa/router matched: `ctx._matchedRoute` is its template with every router prefix, and
 * nothing resets it or `ctx.params` before the response ends, wherever this middleware is mounted.
 */
function routeOf(ctx: Context): RouteMatch | undefined {
  const { _matchedRoute: template, params } = ctx as { _matchedRoute?: unknown; params?: unknown }
  if (typeof template !== 'string') return undefined
  return { template, params: typeof params === 'object' && params !== null ? { ...params } : {} }
}

/** Whether the request of `ctx` is a replay made by listenjs (to keep it out of counters, logs, rate limits). */
export function isReplay(ctx: Context | IncomingMessage): boolean {
  return isReplayRequest('req' in ctx ? ctx.req : ctx)
}

export type { HubOptions, RouteOptions }
