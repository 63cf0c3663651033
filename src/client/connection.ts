/**
 * The client's socket: opening it, authenticating, the silence timer and reconnecting with backoff.
 * What is subscribed lives in `subscriptions.ts`; this file only knows when the socket is ready for it.
 */
import { ListenjsError } from '../core/errors'
import {
  CloseCode,
  SUBPROTOCOL,
  SUBPROTOCOL_PATCHES,
  parseServerMessage,
  retryPolicy,
} from '../core/protocol'
import type { ReconnectOptions } from './reconnect'
import type {
  ClientMessage,
  DataMessage,
  ErrorMessage,
  GoneMessage,
  PatchMessage,
  SubscribedMessage,
} from '../core/protocol'

/**
 * Where a client's connection is: `closed` until something is listened, `connecting` for the first
 * socket, `open` once a socket is open, `reconnecting` between an unexpected close and the next open,
 * and `closed` again after `close()`, when nothing is listened any more, or when the client gives up.
 */
export type Status = 'connecting' | 'open' | 'reconnecting' | 'closed'

// A method-style signature is compared bivariantly, so the browser's `(ev: MessageEvent) => any` and
// `ws`'s `(event: WebSocket.MessageEvent) => void` both fit without naming either library's types.
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack']

/**
 * The part of a WebSocket the client uses. The browser's `WebSocket` and the `ws` package's class
 * both satisfy it.
 */
export interface WebSocketLike {
  /** 1 when open, as in the WebSocket standard. */
  readonly readyState: number
  /** The subprotocol the server selected. */
  readonly protocol: string
  /** Sends one text frame. */
  send(data: string): void
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void
  /** Called once the socket is open. */
  onopen: Handler<unknown> | null
  /** Called for each frame; `data` is a string for text frames. */
  onmessage: Handler<{ readonly data: unknown }> | null
  /** Called once the socket is closed, with the close code. */
  onclose: Handler<{ readonly code: number }> | null
  /** Called on a socket error; a close always follows. */
  onerror: Handler<unknown> | null
}

/**
 * A constructor such as the browser's `WebSocket` or the `ws` package's default export. `protocols`
 * lists `listenjs.v1.1` before `listenjs.v1` when the client takes patches.
 */
export type WebSocketConstructor = new (url: string, protocols: string | string[]) => WebSocketLike

/** What a connection needs; see `ClientOptions` for the meaning of each field. */
export interface ConnectionConfig {
  readonly url: string
  readonly WebSocket: WebSocketConstructor
  readonly reconnect: Required<ReconnectOptions> | false
  readonly heartbeat: boolean
  readonly auth: string | (() => string | Promise<string>) | undefined
  /** Offer `listenjs.v1.1`: the client applies patches. */
  readonly patches: boolean
}

/** What a connection tells the subscriptions. */
export interface ConnectionEvents {
  /**
   * A socket is open and authenticated: send every subscription now. `reconnect` is true when an
   * earlier socket of this connection was ready before (the subscriptions held values on it).
   */
  ready(reconnect: boolean): void
  /** A `data`, `subscribed`, `gone` or `error` message arrived. */
  message(message: DataMessage | PatchMessage | SubscribedMessage | GoneMessage | ErrorMessage): void
  /** The client gave up after a close with `code` (reconnect off, retries exhausted, or `never`). */
  giveUp(code: number): void
}

/** One client's socket over time. */
export interface ClientConnection {
  /** Opens a socket unless one is open or coming; status `closed` → `connecting`. */
  open(): void
  /** Sends `message` when a socket is open and authenticated; otherwise drops it (`ready` resends). */
  send(message: ClientMessage): void
  /** Closes the socket with 1000, clears every timer; status → `closed`. Idempotent. */
  close(): void
  /**
   * Closes the current socket with 1000 and opens a new one in the next macrotask, without backoff
   * and whatever the reconnect options; status → `reconnecting`. The new socket's `ready` is a reconnect.
   */
  reconnect(): void
  /**
   * Calls the `auth` option again and sends its token on the socket when it is ready; does nothing
   * more when it is not (the next socket sends a fresh token first anyway).
   * @throws ListenjsError `invalid_option` (as a rejection) when there is no `auth` option.
   */
  reauthenticate(): Promise<void>
  /** The current status. */
  status(): Status
  /** The id from the current socket's `welcome`; undefined while there is none. */
  id(): string | undefined
  /** Why the last socket could not open (`endpoint_not_found`, `endpoint_unreachable`); cleared when one opens. */
  error(): ListenjsError | undefined
  /**
   * Calls `listener` on each status change until the returned function is called; `error` is set
   * while sockets cannot open (see `error()`).
   */
  onStatus(listener: (status: Status, error?: ListenjsError) => void): () => void
}

/**
 * Calls `fn` with `args`; if it throws, rethrows asynchronously so that one failing app callback
 * neither stops the others nor breaks the client.
 */
export function callSafely<A extends unknown[]>(fn: ((...args: A) => void) | undefined, ...args: A): void {
  try {
    fn?.(...args)
  } catch (error) {
    setTimeout(() => {
      throw error
    })
  }
}

const noop = (): void => {}

/** How long a timer that fired late waits for frames queued while the page was frozen. */
const GRACE_MS = 3000

// The page's events, in browsers only (Node has no `document`).
const page: Document | undefined = typeof document === 'undefined' ? undefined : document
const on = (listen: boolean, event: string, fn: () => void, target: EventTarget | undefined): void =>
  target?.[listen ? 'addEventListener' : 'removeEventListener'](event, fn)

/** Creates a connection that opens on {@link ClientConnection.open}; nothing happens before. */
export function createConnection(config: ConnectionConfig, events: ConnectionEvents): ClientConnection {
  const statusListeners = new Set<(status: Status, error?: ListenjsError) => void>()
  // Why the last socket could not open (cleared when one opens), and whether that was said yet.
  let failure: ListenjsError | undefined
  let warned = false
  let current: Status = 'closed'
  let socket: WebSocketLike | undefined
  let ready = false
  // True once a socket of this connection was ready: the next ready socket is a reconnect.
  let again = false
  let id: string | undefined
  let attempt = 0
  let silenceMs = 0
  // When the last frame arrived (Date.now()).
  let heard = 0
  // An `offline` event came since the socket opened: it may have died with the old network.
  let offline = false
  let silenceTimer: ReturnType<typeof setTimeout> | undefined
  let retryTimer: ReturnType<typeof setTimeout> | undefined

  function setStatus(next: Status): void {
    if (next === current) return
    current = next
    for (const listener of [...statusListeners]) callSafely(listener, next, failure)
  }

  function write(ws: WebSocketLike, message: ClientMessage): void {
    if (ws.readyState === 1) ws.send(JSON.stringify(message))
  }

  // Forgets the current socket: its late events are ignored and its timers cleared. `onerror` stays a
  // function because `ws` throws an error event that has no listener.
  function release(code?: number): void {
    clearTimeout(silenceTimer)
    clearTimeout(retryTimer)
    ready = false
    id = undefined
    if (!socket) return
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = noop
    if (code) socket.close(code)
    socket = undefined
  }

  // A socket can die without a close event (sleeping laptop, dropped NAT entry): hearing nothing for
  // a whole heartbeat period plus its timeout means the server is gone. Silence is measured from the
  // last frame heard, never from timers alone: a background tab's timers fire late, and a frozen
  // page's timer may run before the frames queued meanwhile, so a late timer first waits a grace.
  function armSilence(delay = silenceMs): void {
    if (!silenceMs || !config.heartbeat) return
    clearTimeout(silenceTimer)
    const due = Date.now() + delay
    silenceTimer = setTimeout(() => {
      const now = Date.now()
      const quiet = now - heard
      if (now - due > 1000) armSilence(GRACE_MS)
      else if (quiet >= silenceMs) lost(CloseCode.HeartbeatTimeout, true)
      else armSilence(silenceMs - quiet)
    }, delay)
  }

  // The network is back or the page is visible again: a reconnect waiting for its backoff goes now,
  // and a socket that went through an `offline` event or stayed silent too long is replaced now.
  function wake(): void {
    if (current === 'reconnecting' && !socket) {
      clearTimeout(retryTimer)
      retryTimer = setTimeout(connect)
    } else if (ready && (offline || (silenceMs && Date.now() - heard >= silenceMs))) api.reconnect()
    offline = false
  }
  const goneOffline = (): void => {
    offline = true
  }
  const becameVisible = (): void => {
    if (page?.visibilityState === 'visible') wake()
  }
  function watchPage(listen: boolean): void {
    on(listen, 'online', wake, page && globalThis)
    on(listen, 'offline', goneOffline, page && globalThis)
    on(listen, 'visibilitychange', becameVisible, page)
  }

  function send(message: ClientMessage): void {
    if (ready && socket) write(socket, message)
  }

  function connect(): void {
    silenceMs = 0
    offline = false
    const ws = (socket = new config.WebSocket(
      config.url,
      config.patches ? [SUBPROTOCOL_PATCHES, SUBPROTOCOL] : SUBPROTOCOL,
    ))
    let opened = false
    let httpStatus: number | undefined
    // Node's `ws` says why an upgrade was refused; browsers never do.
    ws.onerror = (event) => {
      const refused = /Unexpected server response: (\d{3})/.exec(
        String((event as { message?: unknown })?.message),
      )
      if (refused) httpStatus = Number(refused[1])
    }
    ws.onclose = (event) => {
      if (!opened) unreachable(httpStatus)
      lost(event.code)
    }
    ws.onmessage = (event) => {
      heard = Date.now()
      const message = parseServerMessage(event.data)
      if (!message) return
      if (message.type === 'welcome') {
        attempt = 0
        id = message.id
        silenceMs = message.heartbeat.intervalMs + message.heartbeat.timeoutMs
        armSilence()
      } else if (message.type === 'ping') write(ws, { type: 'pong' })
      // The credentials expire soon: a fresh token, or for a cookie session a new socket (the browser
      // sends its cookies again). If the token getter fails, the server's check at expiry decides.
      else if (message.type !== 'reauth') events.message(message)
      else if (config.auth) api.reauthenticate().catch(noop)
      else api.reconnect()
    }
    ws.onopen = async () => {
      opened = true
      failure = undefined
      warned = false
      setStatus('open')
      const auth = config.auth
      try {
        if (auth !== undefined) {
          const token = typeof auth === 'string' ? auth : await auth()
          if (socket === ws) write(ws, { type: 'auth', token })
        }
      } catch {
        // A token getter that fails is treated like a lost connection: try again with backoff.
        if (socket === ws) lost(1000, true)
        return
      }
      // A status listener or the token getter may have closed this socket meanwhile.
      if (socket !== ws) return
      ready = true
      events.ready(again)
      again = true
    }
  }

  // The socket never opened: a wrong URL, a server without the hub attached, a refused upgrade. Said
  // once (until a socket opens) on the console, and to code through `error()` and status listeners.
  function unreachable(status: number | undefined): void {
    failure = new ListenjsError(
      status === 404 ? 'endpoint_not_found' : 'endpoint_unreachable',
      `listenjs: cannot open ${config.url}${status ? ` (HTTP ${status})` : ''}`,
      { status },
    )
    if (warned) return
    warned = true
    // eslint-disable-next-line no-console -- the one place a misconfiguration must show without code
    console.warn(`${failure.message}: is the hub attached to that server, on that path?`)
  }

  // The socket closed (or was closed by us with `code`) without the app asking for it.
  function lost(code: number, closeSocket?: boolean): void {
    release(closeSocket ? code : undefined)
    const policy = retryPolicy(code)
    const reconnect = config.reconnect
    if (!reconnect || policy === 'never' || attempt >= reconnect.retries) {
      attempt = 0
      watchPage(false)
      setStatus('closed')
      events.giveUp(code)
      return
    }
    const cap = Math.min(reconnect.maxDelayMs, reconnect.initialDelayMs * reconnect.factor ** attempt)
    const delay =
      policy === 'now'
        ? Math.random() * reconnect.initialDelayMs
        : policy === 'slow'
          ? reconnect.maxDelayMs
          : reconnect.jitter
            ? Math.random() * cap
            : cap
    attempt++
    setStatus('reconnecting')
    retryTimer = setTimeout(connect, delay)
  }

  const api: ClientConnection = {
    open() {
      if (current !== 'closed') return
      again = false
      watchPage(true)
      setStatus('connecting')
      connect()
    },
    send,
    close() {
      release(1000)
      attempt = 0
      watchPage(false)
      setStatus('closed')
    },
    reconnect() {
      release(1000)
      // Set before the status change, so that a status listener calling `close()` clears it.
      retryTimer = setTimeout(connect)
      setStatus('reconnecting')
    },
    async reauthenticate() {
      const auth = config.auth
      if (auth === undefined) throw new ListenjsError('invalid_option', 'no auth option')
      // The token is awaited only when there is a ready socket to send it on; `send` checks again after.
      if (ready) send({ type: 'auth', token: typeof auth === 'string' ? auth : await auth() })
    },
    status: () => current,
    error: () => failure,
    id: () => id,
    onStatus(listener) {
      const entry = (status: Status, error?: ListenjsError): void => listener(status, error)
      statusListeners.add(entry)
      return () => statusListeners.delete(entry)
    },
  }
  return api
}
