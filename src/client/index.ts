/**
 * The listenjs client: `listen('/appointments', onData)` keeps `onData` called with the current state
 * of `GET /appointments`, over one WebSocket per endpoint. Runs in browsers and in Node (pass the `ws`
 * class as `WebSocket`); imports nothing from Node.
 */
import { ListenjsError } from '../core/errors'
import { DEFAULT_PATH } from '../core/protocol'
import { createConnection } from './connection'
import type { Status, WebSocketConstructor } from './connection'
import { resolveReconnect, type ReconnectOptions } from './reconnect'
import { createSubscriptions } from './subscriptions'
import type { ListenOptions, Meta, PatchSupport, ResyncInfo, Unlisten } from './types'

export { ListenjsError } from '../core/errors'
export type { ListenjsErrorCode } from '../core/errors'
export { CloseCode, SUBPROTOCOL } from '../core/protocol'
export type { ErrorCode } from '../core/protocol'
export { reconnectDefaults } from './reconnect'
export type { ReconnectOptions } from './reconnect'
export type { Status, WebSocketConstructor, WebSocketLike } from './connection'
export type { ListenOptions, Meta, PatchSupport, ResyncInfo, Unlisten } from './types'

/** Options of {@link createClient}. */
export interface ClientOptions {
  /**
   * The hub's WebSocket endpoint (`ws://`, `wss://`; `http(s)://` is turned into `ws(s)://`). In a
   * browser it may be relative (`/app/listen`, `listen`): it is resolved against the page, with
   * `wss:` on an `https:` page, so an app served under a path prefix finds its hub.
   * @default `/listen` on the page's host in a browser; required elsewhere
   */
  url?: string
  /**
   * The WebSocket class. Node users pass the `ws` package's default export.
   * @default globalThis.WebSocket
   */
  WebSocket?: WebSocketConstructor
  /**
   * How to reconnect after an unexpected close, or `false` to give up at once. After a server shutdown
   * or restart (close code 1001 or 1012) the client reconnects after a random delay below
   * `initialDelayMs`, without reporting an error. On each reconnect every path is resubscribed with the
   * version held, and only what changed meanwhile is delivered again (see {@link Client.recovered}).
   * @default {@link reconnectDefaults}
   */
  reconnect?: false | ReconnectOptions
  /**
   * `false` turns off silence detection. By default the client reconnects when it hears nothing for the
   * heartbeat interval plus timeout announced by the server.
   * @default enabled
   */
  heartbeat?: false
  /**
   * A bearer token, or a function returning one, called on each (re)connect and by
   * {@link Client.reauthenticate}. Sent as the first message (never in the URL); the hub forwards it to
   * replays as `Authorization: Bearer <token>`. A function that throws or rejects counts as a failed
   * connection and is retried with backoff. A path refused with 401 is reported at once through
   * `onError`: refresh the token and call {@link Client.reauthenticate}, which keeps every listener.
   * When the hub says the credentials expire soon (its `credentialsExpireAt`, the `reauth` message), a
   * function is called again and its token sent on the open socket; a cookie-authenticated client
   * reconnects at once instead (the browser sends its current cookies), keeping every listener.
   *
   * Without it the client is cookie-authenticated: the browser sends its cookies on each WebSocket
   * upgrade, and only then. Since a session cookie may have been rotated (a re-login) after the socket
   * opened, a path refused with 401 is not reported at once: the client closes the socket and opens a new
   * one right away (whatever `reconnect` says), resubscribing every path with the version it holds. Only
   * a path refused with 401 again on that socket is reported (`onError`, and its `ready` rejects). This
   * happens at most once per episode: further 401s are reported at once until every path resubscribed by
   * that reconnect has answered. A 403 (forbidden, not a stale session) is always reported at once.
   * @default undefined (no auth message; cookies only)
   */
  auth?: string | (() => string | Promise<string>)
  /**
   * Take changes as patches: `import { patches } from 'listenjs/client/patches'` and pass it here.
   * The client then offers protocol version 1.1, and a hub that sends patches sends a change to a
   * path whose previous state it holds as an RFC 6902 JSON Patch when that is smaller, with the
   * checksum of the new state. The patch is applied here, without touching the value listeners got
   * (unchanged parts keep their identity), and verified: one that does not give the checksum is
   * dropped and the path subscribed again without a version (its state then comes whole). Listeners
   * get whole states either way; `meta.patched` says how it came. Kept out of this module to keep
   * it small (see the README, "Patches").
   * @default undefined (whole states only)
   */
  patches?: PatchSupport
}

/** A connection to one hub endpoint, shared by every path listened through it. */
export interface Client {
  /**
   * Calls `onData` with the current state of `GET path` now and after each change. Listeners of one
   * path share one subscription; a listener added to a path whose state is known gets it in a microtask.
   * Opens the socket on first use. The returned function stops this listener; when no path is left, the
   * socket is closed (a later `listen` opens it again). Its `ready` promise settles once this listener
   * has its first value, or is refused (see {@link Unlisten.ready}).
   */
  listen<T = unknown>(path: string, onData: (data: T, meta: Meta) => void, options?: ListenOptions): Unlisten
  /** The connection's status; `closed` until the first `listen`. */
  status(): Status
  /**
   * Calls `listener` on each status change; returns the function that stops it. While sockets cannot
   * open (wrong URL, no hub on that server, an upgrade refused), `error` says why: code
   * `endpoint_not_found` (HTTP 404) or `endpoint_unreachable`, with the HTTP `status` where the
   * platform shows it (Node). The client retries as `reconnect` allows (the status says
   * `reconnecting` or `closed`); the first failure is also logged once with `console.warn`, naming
   * the URL.
   */
  onStatus(listener: (status: Status, error?: ListenjsError) => void): () => void
  /** Why the last socket could not open; `undefined` once one opens (see `onStatus`). */
  error(): ListenjsError | undefined
  /**
   * Whether the last reconnect recovered without a gap: false before any reconnect and until every
   * resubscribed path answered; then true when the server confirmed each version held (nothing changed
   * while away, nothing delivered again), false when some path was delivered again or refused.
   */
  recovered(): boolean
  /**
   * Calls `listener` once per reconnect, after every resubscribed path answered, with
   * {@link Client.recovered}'s value and the paths whose state changed while away (each delivered to its
   * listeners with `kind: 'resync'`). For apps that keep state derived from several paths. A reconnect
   * with no path listened calls nothing. Returns the function that stops the listener.
   */
  onResync(listener: (info: ResyncInfo) => void): () => void
  /**
   * Sends fresh credentials without reconnecting: calls the `auth` option again (a string is sent as it
   * is) and sends its token over the open socket. Every listener stays registered. The server checks
   * each path it holds again with the new token: an unchanged state is not delivered again, a state that
   * differs for the new credentials is delivered (`kind: 'snapshot'`), and a path the new token may not
   * see is refused through `onError` (`unauthorized`, status 401 or 403) and no longer held. Paths
   * refused as `unauthorized` earlier (an expired token) are subscribed again with the new token.
   *
   * Resolves once the token was sent, or at once when no socket is open (the next socket sends a fresh
   * token first anyway). Rejects with the auth function's error if it fails.
   * @throws ListenjsError `invalid_option` (as a rejection) when the client has no `auth` option:
   * cookie-authenticated clients reconnect by themselves on a 401 (see {@link ClientOptions.auth}).
   */
  reauthenticate(): Promise<void>
  /**
   * `{ 'X-Listenjs-Client': id }` with the id the server gave the current connection, `{}` while not
   * connected. Spread it into the headers of your own writes (`fetch(url, { method: 'POST', headers:
   * { ...client.headers(), ... } })`): the pushes they cause come with `meta.own === true`, so an
   * optimistic UI can skip re-rendering what it already shows. A push is never withheld: `own` only
   * marks it. The id changes on each reconnect, so call it for each request.
   */
  headers(): Record<string, string>
  /**
   * Drops every listener (without calling them), rejects their pending `ready` with `closed`, closes the
   * socket and clears every timer.
   */
  close(): void
}

/**
 * The endpoint `url` names: relative ones resolved against the page (none outside a browser),
 * `http(s)` turned into `ws(s)`. Undefined without a page to resolve against.
 */
function endpointOf(url: string = DEFAULT_PATH): string | undefined {
  const page = typeof location === 'undefined' || !location.host ? undefined : location.href
  const absolute = /^[a-z][a-z\d+.-]*:/i.test(url) ? url : page && new URL(url, page).href
  return absolute?.replace(/^http/i, 'ws')
}

/**
 * Creates a client. Nothing is opened until the first `listen`.
 * @throws ListenjsError `invalid_option` when there is no `url` outside a browser, no WebSocket class,
 * a URL that is not ws(s)/http(s), or a wrong `reconnect` number.
 */
export function createClient(options: ClientOptions = {}): Client {
  const url = endpointOf(options.url)
  if (!url) throw new ListenjsError('invalid_option', 'an absolute url is required outside a browser')
  if (!/^wss?:\/\//i.test(url))
    throw new ListenjsError('invalid_option', 'url must start with ws://, wss://, http:// or https://')
  const WebSocket = options.WebSocket ?? (globalThis.WebSocket as WebSocketConstructor | undefined)
  if (typeof WebSocket !== 'function') {
    throw new ListenjsError(
      'invalid_option',
      'WebSocket is required: pass a WebSocket class (e.g. the `ws` package)',
    )
  }
  const reconnect = options.reconnect === false ? false : resolveReconnect(options.reconnect)

  const subscriptions = createSubscriptions({
    send: (message) => connection.send(message),
    idle: () => connection.close(),
    id: () => connection.id(),
    reconnect: options.auth === undefined ? () => connection.reconnect() : undefined,
    patch: options.patches,
  })
  const connection = createConnection(
    {
      url,
      WebSocket,
      reconnect,
      heartbeat: options.heartbeat !== false,
      auth: options.auth,
      patches: !!options.patches,
    },
    { ready: subscriptions.resubscribe, message: subscriptions.receive, giveUp: subscriptions.clear },
  )

  return {
    listen(path, onData, listenOptions) {
      const unlisten = subscriptions.add(path, onData as (data: unknown, meta: Meta) => void, listenOptions)
      connection.open()
      return unlisten
    },
    status: connection.status,
    onStatus: connection.onStatus,
    error: connection.error,
    recovered: subscriptions.recovered,
    onResync: subscriptions.onResync,
    async reauthenticate() {
      await connection.reauthenticate()
      subscriptions.reauthorized()
    },
    headers(): Record<string, string> {
      const id = connection.id()
      return id ? { 'X-Listenjs-Client': id } : {}
    },
    close() {
      subscriptions.clear()
      connection.close()
    },
  }
}

const defaultClients = new Map<string, Client>()

/**
 * The shared client of an endpoint, created on first use: the one `listen()` uses, and `listenjs/react`
 * and `listenjs/tanstack` when given no client. One per endpoint, so one WebSocket.
 * @param url - the hub's endpoint; default: the page's (`ws(s)://location.host/listen`)
 * @throws ListenjsError `invalid_option` outside a browser without `url`, as {@link createClient}
 */
export function defaultClient(url?: string): Client {
  const endpoint = endpointOf(url) ?? ''
  let client = defaultClients.get(endpoint)
  if (!client) defaultClients.set(endpoint, (client = createClient({ url: endpoint || undefined })))
  return client
}

/**
 * Listens through a shared default client ({@link defaultClient}). A path starting with `/` uses the
 * page's endpoint (`ws(s)://location.host/listen`); an absolute `http(s)://` or `ws(s)://` URL uses its
 * own host's `/listen` endpoint, with its pathname and query as the path.
 * @throws ListenjsError `bad_path` for anything else, `invalid_option` as {@link createClient}.
 */
export function listen<T = unknown>(
  pathOrUrl: string,
  onData: (data: T, meta: Meta) => void,
  options?: ListenOptions,
): Unlisten {
  let endpoint: string | undefined
  let path = pathOrUrl
  if (!pathOrUrl.startsWith('/')) {
    const match = /^(?:http|ws)(s?):\/\/([^/?#]+)([^#]*)/i.exec(pathOrUrl)
    if (!match)
      throw new ListenjsError('bad_path', 'listen() needs a path starting with / or an absolute URL')
    endpoint = `${match[1] ? 'wss' : 'ws'}://${match[2]}/listen`
    path = match[3]?.startsWith('/') ? match[3] : '/' + (match[3] ?? '')
  }
  return defaultClient(endpoint).listen(path, onData, options)
}
