import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash, hash } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import { Deadlines } from './deadlines'
import { inject, type Answer, type NoAnswer } from './inject'

/**
 * What a replay forwards of its subscriber: the headers of SPEC §2.9, the real remote address and
 * whether the connection is TLS. Two subscribers with equal contexts get equal replays.
 */
export interface ReplayContext {
  readonly headers: Readonly<Record<string, string>>
  readonly remoteAddress: string
  readonly encrypted: boolean
}

/** What a replay answered. `failure` is set when there is no usable answer (counted as a 5xx). */
export interface ReplayResult {
  readonly status: number
  /** The body, decoded as UTF-8 (what a frame carries). */
  readonly body: string
  readonly contentType: string | undefined
  readonly version: string
  /** The route declared the resource public (route option `public: true`) on this very answer. */
  readonly public: boolean
  /**
   * Other pathnames the app gave for this resource: the router's canonical path for it and the
   * answer's `Content-Location` (only those that differ from the path and are acceptable keys).
   */
  readonly aliases: readonly string[]
  /** The route template the framework matched for it (`/items/:id`), when the adapter saw one. */
  readonly route?: string
  readonly failure?: 'timeout' | 'too_large' | 'error'
}

/** Dispatches a request to an application, the way `http.Server` does. */
export type Dispatch = (req: IncomingMessage, res: ServerResponse) => void

/** Headers a replay forwards from the subscriber's upgrade request (plus every `x-forwarded-*`). */
const FORWARDED_HEADERS = ['host', 'cookie', 'authorization', 'accept', 'accept-language', 'user-agent']

/**
 * Whether `name` (lower case) is a header a replay context may carry (SPEC §2.9): what says who the
 * subscriber is and how it reached the hub. Nothing else may add one (a shared replay carries no
 * identity).
 */
export function isContextHeader(name: string): boolean {
  return FORWARDED_HEADERS.includes(name) || name.startsWith('x-forwarded-')
}

/** What the route said about a replay it served, asked when it has answered. */
export interface RouteReport {
  /** Whether the route declared the resource public on this answer. */
  readonly public: boolean
  /** The other pathnames it is known by (see {@link ReplayResult.aliases}). */
  readonly aliases: readonly string[]
  /** The route template the framework matched, if any. */
  readonly route?: string
}

/** A replay in flight: how to ask its route about it, once the tracking middleware has seen it. */
interface Replaying {
  describe?: () => RouteReport
}

/**
 * Marks a replay's request with what the route said about itself. A symbol no other module can
 * reach (a property, not a WeakMap entry: those cost the garbage collector at every replay).
 */
const REPLAY = Symbol('listenjs.replay')
type Marked = IncomingMessage & { [REPLAY]?: Replaying }

/**
 * Set while a replay's handler runs, so that changes raised by it can be ignored (no loops). The
 * store outlives the replay in whatever the handler started (a timer, a callback queued elsewhere),
 * so it is switched off when the replay ends: work that runs after it is not a replay.
 */
const insideReplay = new AsyncLocalStorage<{ active: boolean }>()

/**
 * Whether `req` is a replay made by a listenjs hub. Only the hub can mark a request, so no header
 * or client can forge it.
 */
export function isReplayRequest(req: IncomingMessage): boolean {
  return (req as Marked)[REPLAY] !== undefined
}

/** Whether the code running now is serving a replay. */
export function isInsideReplay(): boolean {
  return insideReplay.getStore()?.active === true
}

/**
 * How to ask the route that serves the replay `req` what it said about it (see {@link RouteReport}):
 * called once, when the replay has answered.
 */
export function describeReplay(req: IncomingMessage, describe: () => RouteReport): void {
  const replaying = (req as Marked)[REPLAY]
  if (replaying) replaying.describe = describe
}

/**
 * What a socket keeps of its upgrade request, for `identify`, `authorize` and `hub.disconnect`: the
 * request object itself is not retained (it would cost about a kilobyte per idle socket).
 */
export interface UpgradeRequest {
  /** The upgrade's headers as Node parsed them (lower-case names). After an `auth` message, `authorization` is `Bearer <token>`. */
  readonly headers: IncomingHttpHeaders
  /** The upgrade URL: path and query. */
  readonly url: string
  /** The TCP peer's address (behind a proxy, the proxy's; see `x-forwarded-for`). */
  readonly remoteAddress: string
  /** Whether the connection is TLS. */
  readonly encrypted: boolean
}

/** What a socket keeps of its upgrade request `req`. */
export function upgradeRequestOf(req: IncomingMessage): UpgradeRequest {
  const socket = req.socket as { remoteAddress?: string; encrypted?: boolean }
  return {
    headers: req.headers,
    url: req.url ?? '',
    // Never fall back to a loopback default: an unknown address stays unknown.
    remoteAddress: socket.remoteAddress || '0.0.0.0',
    encrypted: socket.encrypted === true,
  }
}

/** `request` with the token of an `auth` message as its credentials: `Authorization: Bearer <token>`. */
export function withToken(request: UpgradeRequest, token: string): UpgradeRequest {
  return { ...request, headers: { ...request.headers, authorization: `Bearer ${token}` } }
}

/** The replay context of a socket's upgrade request (SPEC §2.9). */
export function contextFromRequest(request: UpgradeRequest): ReplayContext {
  const headers: Record<string, string> = {}
  for (const name of FORWARDED_HEADERS) {
    const value = request.headers[name]
    if (typeof value === 'string') headers[name] = value
  }
  for (const name in request.headers) {
    const value = request.headers[name]
    if (value !== undefined && name.startsWith('x-forwarded-')) {
      headers[name] = Array.isArray(value) ? value.join(', ') : value
    }
  }
  return { headers, remoteAddress: request.remoteAddress, encrypted: request.encrypted }
}

/** A stable key for a replay context: equal contexts, equal keys. */
export function contextKey(context: ReplayContext): string {
  const names = Object.keys(context.headers).sort()
  const canonical = JSON.stringify([
    context.remoteAddress,
    context.encrypted,
    names.map((n) => [n, context.headers[n]]),
  ])
  return createHash('sha256').update(canonical).digest('base64url')
}

/**
 * A key for the credentials in `headers` (`Cookie` and `Authorization`): used to accept a client's
 * echo tag only from a write made with the same credentials as its socket.
 */
export function credentialsKey(headers: Readonly<Record<string, string | string[] | undefined>>): string {
  const cookie = headers.cookie ?? ''
  const authorization = headers.authorization ?? ''
  return createHash('sha256')
    .update(JSON.stringify([Array.isArray(cookie) ? cookie.join('; ') : cookie, authorization]))
    .digest('base64url')
}

/**
 * The version of a body: the route's strong ETag when it has one, else a strong hash of its bytes
 * (a string is hashed as UTF-8).
 */
export function versionOf(body: Buffer | string, etag?: string): string {
  if (etag !== undefined && etag.startsWith('"')) return etag
  return hash('sha256', body, 'base64url').slice(0, 27)
}

/** The dispatcher of an `http`/`https` server: emits `request` as the server would. */
export function dispatcherFor(server: Server): Dispatch {
  return (req, res) => {
    server.emit('request', req, res)
  }
}

/** What a replay is allowed: its body's size, and the timeouts it shares with the other replays. */
export interface ReplayLimits {
  readonly maxBodyBytes: number
  /** Every replay's deadline (`replayTimeoutMs`), on one timer; see {@link replayDeadlines}. */
  readonly deadlines: Deadlines<() => void>
}

/** The deadlines of replays that last `timeoutMs`: each expired replay's callback is called. */
export function replayDeadlines(
  timeoutMs: number,
  inScope?: (set: () => void) => void,
): Deadlines<() => void> {
  return new Deadlines<() => void>(timeoutMs, (expire) => expire(), inScope)
}

/**
 * Replays `GET path` for one subscriber through the application's own request handler.
 *
 * Resolves, never rejects: a handler that throws, never answers within the timeout, or writes more
 * than `maxBodyBytes` gives a result with `failure` set and a 5xx status.
 */
export function replayGet(
  dispatch: Dispatch,
  context: ReplayContext,
  path: string,
  limits: ReplayLimits,
): Promise<ReplayResult> {
  return new Promise<ReplayResult>((resolve) => {
    const replaying: Replaying = {}
    const scope = { active: true }
    let response: ServerResponse | undefined
    const finish = (result: ReplayResult): void => {
      if (!scope.active) return
      scope.active = false
      limits.deadlines.delete(expire)
      resolve(result)
    }
    const expire = (): void => {
      finish(failedReplay(504, 'timeout'))
      response?.destroy()
    }
    limits.deadlines.add(expire)
    const done = (answer: Answer | NoAnswer): void => {
      if (typeof answer === 'string') return finish(failedReplay(502, answer))
      const route = reportOf(replaying)
      finish({
        status: answer.status,
        body: answer.body,
        contentType: answer.contentType,
        version: versionOf(answer.body, answer.etag),
        public: route.public,
        aliases: route.aliases,
        ...(route.route === undefined ? {} : { route: route.route }),
      })
    }
    const mark = (req: IncomingMessage): void => {
      ;(req as Marked)[REPLAY] = replaying
    }
    insideReplay.run(scope, () => {
      response = inject(dispatch, { ...context, path }, limits.maxBodyBytes, mark, done)
    })
  })
}

const NOTHING_SAID: RouteReport = { public: false, aliases: [] }

/** What the route said of a replay; nothing when no middleware tracked it, or asking it threw. */
function reportOf(replaying: Replaying): RouteReport {
  try {
    return replaying.describe?.() ?? NOTHING_SAID
  } catch {
    return NOTHING_SAID
  }
}

/** A replay that has no usable answer, counted as `status` (a 5xx). */
export function failedReplay(status: number, failure: NonNullable<ReplayResult['failure']>): ReplayResult {
  return {
    status,
    body: '',
    contentType: undefined,
    version: '',
    public: false,
    aliases: [],
    failure,
  }
}
