/**
 * Which paths a request changes (SPEC §2.3). A successful mutation is keyed every way the app knows
 * it: the request-target as sent (absolute-form reduced to its path), the route the framework
 * matched filled with its decoded params, and the response's `Content-Location` (and `Location` on
 * a 201). A replay's answer tells the same of the subscribed path, so that its subscription is
 * reached by those keys too. A path that cannot be a key notifies its nearest acceptable ancestor.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Changes } from './changes'
import type { Kernel } from './kernel'
import { headerValue, writtenHeader } from './inject'
import { fillRoute, headerPath, nearestKeyable, requestTargetPath } from './keys'
import { checkPath, pathnameOf } from './paths'
import { CLIENT_HEADER } from './protocol'
import { credentialsKey, describeReplay, isReplayRequest } from './replay'
import type { RouteMatch, RouteOptions } from './types'

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** The most routes warned about once for an unkeyable change path (the set stays bounded). */
const MAX_WARNED_ROUTES = 1000
/** The most writes warned about for never passing the middleware (then one last warning). */
const MAX_UNTRACKED_WARNINGS = 20

export class Tracking {
  /** Marks a request this hub tracks (a property: cheaper than a WeakSet entry per request). */
  private readonly tracked = Symbol('listenjs.tracked')
  /** Routes already warned about for a change path that could not be keyed. */
  private readonly warnedRoutes = new Set<string>()
  /** Writes already warned about for never passing the middleware. */
  private readonly untracked = new Set<string>()

  constructor(
    private readonly kernel: Kernel,
    private readonly changes: Changes,
  ) {}

  /**
   * Called for every request the attached server receives: a successful write that never passed
   * `track` (the Express or Koa middleware mounted after the routes, or not at all) changes nothing
   * for any subscriber, so it is reported with `process.emitWarning` (code
   * `LISTENJS_UNTRACKED_WRITE`), once per method and path, at most 20 times.
   */
  watch(req: IncomingMessage, res: ServerResponse): void {
    if (!MUTATIONS.has(req.method ?? '') || this.untracked.size > MAX_UNTRACKED_WARNINGS) return
    res.once('finish', () => {
      if (isTracked(req, this.tracked) || res.statusCode < 200 || res.statusCode > 299) return
      const write = `${req.method} ${pathnameOf(requestTargetPath(req.url ?? '/')).slice(0, 200)}`
      if (this.untracked.has(write) || this.untracked.size > MAX_UNTRACKED_WARNINGS) return
      this.untracked.add(write)
      const last =
        this.untracked.size > MAX_UNTRACKED_WARNINGS ? ' (further such warnings are not shown)' : ''
      process.emitWarning(
        `listenjs: ${write} answered ${res.statusCode} without passing the listenjs middleware, so no ` +
          'subscriber was told. Mount it before your routes: Express app.use(live), Koa ' +
          `app.use(live.middleware), or call hub.track(req, res, …) for each request.${last}`,
        { code: 'LISTENJS_UNTRACKED_WRITE' },
      )
    })
  }

  /**
   * Watches one HTTP request: when a POST, PUT, PATCH or DELETE on it ends with a 2xx status (on
   * `finish`, or on `close` once the status was sent), its path changes, keyed every way the app
   * knows it (SPEC §2.3): the request-target as sent (absolute-form reduced to its path), the route
   * the framework matched filled with its decoded params, and the response's `Content-Location`
   * (and `Location` on a 201). `route` and `routed` are read when the response ends, so a handler can
   * still set its options. The adapters call this for every request; calling it twice for one
   * request does nothing.
   * @param path - the request-target as the client sent it (the query is ignored)
   * @param routed - the route the framework matched, if any; called when the headers are written
   */
  track(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    route: () => RouteOptions | undefined,
    routed?: () => RouteMatch | undefined,
  ): void {
    if (isTracked(req, this.tracked)) return
    const replay = isReplayRequest(req)
    if (!replay && !MUTATIONS.has(req.method ?? '')) return
    ;(req as unknown as Record<symbol, boolean>)[this.tracked] = true
    const pathname = pathnameOf(requestTargetPath(path))
    // What the router matched and the headers the app set are read when the headers are written,
    // from inside the handler that answers: by `finish`, a router may have restored its params, and
    // headers given to `writeHead` itself (as Fastify does) are not kept where `getHeader` sees them.
    // Node writes every response's headers through `writeHead`, explicitly or not.
    let answered: { match: RouteMatch | undefined; headers: unknown } | undefined
    const writeHead = res.writeHead
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      answered ??= { match: routed?.(), headers: args.find((a) => typeof a === 'object' && a !== null) }
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as ServerResponse['writeHead']
    const keys = (): string[] => this.keysOf(req, res, pathname, answered?.match, answered?.headers)
    if (replay) {
      // What the router and the answer say this path is: the subscription is reached by those too.
      describeReplay(req, () => ({
        public: route()?.public === true,
        aliases: keys().filter(
          (key) => key !== pathname && checkPath(key, this.kernel.options.limits.pathLength) === undefined,
        ),
        route: answered?.match?.template,
      }))
      return
    }
    // What a tracer keeps of the write's async context, for its change's span.
    const { kernel } = this
    const { telemetry } = kernel
    const captured =
      telemetry?.capture &&
      kernel.guarded(
        () => telemetry.capture?.(),
        () => undefined,
      )
    let done = false
    const ended = (): void => {
      if (done) return
      done = true
      const status = res.statusCode
      if (status < 200 || status > 299 || !(res.writableFinished || res.headersSent)) return
      const options = route()
      const paths = options?.notify === false ? [] : keys()
      if (options?.changes) paths.push(...options.changes)
      if (paths.length === 0) return
      const tag = req.headers[CLIENT_HEADER]
      const template = answered?.match?.template
      this.changes.publish(
        paths.map((key) => this.keyable(key, req.method, template)),
        typeof tag === 'string' ? { id: tag, credentials: credentialsKey(req.headers) } : undefined,
        captured,
      )
    }
    res.once('finish', ended)
    res.once('close', ended)
  }

  /** The paths a request's answer is known by: as sent, as routed, and as its headers name it. */
  private keysOf(
    req: IncomingMessage,
    res: ServerResponse,
    pathname: string,
    match: RouteMatch | undefined,
    written: unknown,
  ): string[] {
    const keys = [pathname]
    const canonical = match && fillRoute(match.template, match.params)
    if (canonical !== undefined && canonical !== pathname) keys.push(canonical)
    const host = req.headers.host
    const header = (name: string): string | undefined =>
      headerValue(res.getHeader(name) ?? writtenHeader(written, name))
    const location = headerPath(header('content-location'), pathname, host)
    if (location !== undefined) keys.push(location)
    if (res.statusCode === 201) {
      const created = headerPath(header('location'), pathname, host)
      if (created !== undefined) keys.push(created)
    }
    return keys
  }

  /**
   * `path` when it can be a key, else its nearest ancestor that can: no successful write is dropped.
   * Warned about once per route, since the app (or a client) writes to paths nobody can listen to.
   */
  private keyable(path: string, method: string | undefined, template: string | undefined): string {
    if (checkPath(path, this.kernel.options.limits.pathLength) === undefined) return path
    const key = nearestKeyable(path, this.kernel.options.limits.pathLength)
    const routeName = `${method ?? ''} ${template ?? '(no route)'}`
    if (!this.warnedRoutes.has(routeName) && this.warnedRoutes.size < MAX_WARNED_ROUTES) {
      this.warnedRoutes.add(routeName)
      this.kernel.options.logger.warn(
        { route: routeName, path: path.slice(0, 200), notified: key },
        'listenjs: a change path cannot be a key (control characters, encoded / or \\, dot segments or too long); its nearest acceptable ancestor was notified instead',
      )
    }
    return key
  }
}

function isTracked(req: IncomingMessage, mark: symbol): boolean {
  return (req as unknown as Record<symbol, boolean | undefined>)[mark] === true
}
