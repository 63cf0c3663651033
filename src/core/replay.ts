import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import { inject } from './inject'

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
  readonly body: Buffer
  readonly contentType: string | undefined
  readonly version: string
  /** The route declared the resource public (route option `public: true`) on this very answer. */
  readonly public: boolean
  /**
   * Other pathnames the app gave for this resource: the router's canonical path for it and the
   * answer's `Content-Location` (only those that differ from the path and are acceptable keys).
   */
  readonly aliases: readonly string[]
  readonly failure?: 'timeout' | 'too_large' | 'error'
}

/** Dispatches a request to an application, the way `http.Server` does. */
export type Dispatch = (req: IncomingMessage, res: ServerResponse) => void

/** Headers a replay forwards from the subscriber's upgrade request (plus every `x-forwarded-*`). */
const FORWARDED_HEADERS = ['host', 'cookie', 'authorization', 'accept', 'accept-language', 'user-agent']

/** What the app said about a replay it served (read when it answers). */
interface RouteReport {
  public: boolean
  aliases: readonly string[]
}

/** Replays in flight, keyed by their request: what the route said about itself. */
const replays = new WeakMap<IncomingMessage, RouteReport>()

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
  return replays.has(req)
}

/** Whether the code running now is serving a replay. */
export function isInsideReplay(): boolean {
  return insideReplay.getStore()?.active === true
}

/**
 * Records what a route said about a replay it served: whether it is public, and the other
 * pathnames it is known by (see {@link ReplayResult.aliases}).
 */
export function markReplayRoute(
  req: IncomingMessage,
  route: { public?: boolean } | undefined,
  aliases: readonly string[],
): void {
  const info = replays.get(req)
  if (!info) return
  if (route?.public === true) info.public = true
  info.aliases = aliases
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
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.startsWith('x-forwarded-') && value !== undefined) {
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

/** The version of a body: the route's strong ETag when it has one, else a strong hash of the bytes. */
export function versionOf(body: Buffer | string, etag?: string): string {
  if (etag !== undefined && etag.startsWith('"')) return etag
  return createHash('sha256').update(body).digest('base64url').slice(0, 27)
}

/** The dispatcher of an `http`/`https` server: emits `request` as the server would. */
export function dispatcherFor(server: Server): Dispatch {
  return (req, res) => {
    server.emit('request', req, res)
  }
}

/**
 * Replays `GET path` for one subscriber through the application's own request handler.
 *
 * Resolves, never rejects: a handler that throws, never answers within `timeoutMs`, or writes more
 * than `maxBodyBytes` gives a result with `failure` set and a 5xx status.
 */
export async function replayGet(
  dispatch: Dispatch,
  context: ReplayContext,
  path: string,
  limits: { timeoutMs: number; maxBodyBytes: number },
): Promise<ReplayResult> {
  let response: ServerResponse | undefined
  let failure: ReplayResult['failure']
  const route: RouteReport = { public: false, aliases: [] }

  const prepare = (req: IncomingMessage, res: ServerResponse): void => {
    response = res
    replays.set(req, route)
    let written = 0
    const write = res.write
    res.write = function boundedWrite(this: ServerResponse, ...args: Parameters<ServerResponse['write']>) {
      const [chunk, encoding] = args
      written += typeof chunk === 'string' ? Buffer.byteLength(chunk, encodingOf(encoding)) : chunk.length
      if (written > limits.maxBodyBytes) {
        failure = 'too_large'
        res.destroy()
        return false
      }
      return write.apply(this, args)
    } as ServerResponse['write']
    const end = res.end
    res.end = function boundedEnd(this: ServerResponse, ...args: unknown[]) {
      const [chunk, encoding] = args
      if (typeof chunk === 'string' || chunk instanceof Uint8Array) {
        written += typeof chunk === 'string' ? Buffer.byteLength(chunk, encodingOf(encoding)) : chunk.length
        if (written > limits.maxBodyBytes) failure = 'too_large'
      }
      return (end as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as ServerResponse['end']
  }

  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), limits.timeoutMs)
    timer.unref()
  })
  const scope = { active: true }
  const answer = insideReplay
    .run(scope, () =>
      inject(
        dispatch,
        {
          path,
          headers: context.headers,
          remoteAddress: context.remoteAddress,
          encrypted: context.encrypted,
        },
        prepare,
      ),
    )
    .catch(() => undefined)
  try {
    const res = await Promise.race([answer, timeout])
    if (res === 'timeout') {
      response?.destroy()
      return failedReplay(504, 'timeout')
    }
    if (res === undefined || failure !== undefined) return failedReplay(502, failure ?? 'error')
    return {
      status: res.status,
      body: res.body,
      contentType: headerString(res.headers['content-type']),
      version: versionOf(res.body, headerString(res.headers.etag)),
      public: route.public,
      aliases: route.aliases,
    }
  } finally {
    scope.active = false
    clearTimeout(timer)
  }
}

/** A replay that has no usable answer, counted as `status` (a 5xx). */
export function failedReplay(status: number, failure: NonNullable<ReplayResult['failure']>): ReplayResult {
  return {
    status,
    body: Buffer.alloc(0),
    contentType: undefined,
    version: '',
    public: false,
    aliases: [],
    failure,
  }
}

function headerString(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined
  return Array.isArray(value) ? String(value[0]) : String(value)
}

function encodingOf(encoding: unknown): BufferEncoding | undefined {
  return typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined
}
