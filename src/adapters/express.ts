import type { IncomingMessage } from 'node:http'
import type { Request, RequestHandler } from 'express'
import type { Hub } from '../core/hub'
import type { AttachableServer, RouteMatch, RouteOptions } from '../core/types'
import { createHub } from '../node'
import type { HubOptions } from '../core/options'
import { isReplayRequest } from '../core/replay'

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- Express types its locals this way
  namespace Express {
    interface Locals {
      /** listenjs options of this request: `{ notify?, changes?, public? }`, read when the response ends. */
      listenjs?: RouteOptions
    }
  }
}

/** The Express middleware returned by {@link listenjs}, with its hub. */
export interface ExpressListenjs extends RequestHandler {
  /** The hub: `notify`, `stats`, events, `close`. */
  readonly hub: Hub
  /** Serves the WebSocket endpoint on `server` and replays through it; returns `server`. */
  attach<S extends AttachableServer>(server: S): S
  /** Same as `hub.notify(path, payload?)`. */
  notify(path: string, payload?: unknown): void
}

/**
 * Creates the listenjs Express middleware: `app.use(live)` makes every successful POST, PUT, PATCH
 * and DELETE notify its path (per-request options in `res.locals.listenjs`), then
 * `live.attach(app.listen(3000))` serves the WebSocket endpoint.
 * @throws ListenjsError `invalid_option` when an option is wrong
 */
export function listenjs(options: HubOptions = {}): ExpressListenjs {
  const hub = createHub(options)
  const middleware: RequestHandler = (req, res, next) => {
    // The HTTP stream (for networks that block WebSockets) on the endpoint's path: served here.
    if (hub.isStream(req)) return hub.stream(req, res, (req as { body?: unknown }).body)
    hub.track(
      req,
      res,
      req.originalUrl ?? req.url,
      () => res.locals.listenjs,
      () => routeOf(req),
    )
    next()
  }
  return Object.assign(middleware, {
    hub,
    attach: <S extends AttachableServer>(server: S): S => {
      hub.attach(server)
      return server
    },
    notify: (path: string, payload?: unknown) => hub.notify(path, payload),
  })
}
export default listenjs

/**
 * The route Express matched: the mount path as the client wrote it (escaped, so that no character
 * of it reads as template syntax) followed by the route's path, or undefined outside a route.
 */
function routeOf(req: Request): RouteMatch | undefined {
  const path: unknown = (req.route as { path?: unknown } | undefined)?.path
  if (typeof path !== 'string') return undefined
  return { template: req.baseUrl.replace(/[\\:*?(){}]/g, '\\$&') + path, params: { ...req.params } }
}

/** Whether `req` is a replay made by listenjs (to keep it out of counters, logs, rate limits). */
export function isReplay(req: IncomingMessage): boolean {
  return isReplayRequest(req)
}

export type { HubOptions, RouteOptions }
