/**
 * The listenjs wire protocol, version 1 (`listenjs.v1`), shared by the server and the client.
 *
 * Every frame is a JSON text frame holding one object with a `type`. PROTOCOL.md describes each
 * message; this file is its executable form. It imports nothing from Node, so the browser client can
 * use it as it is.
 */

/** The WebSocket subprotocol both sides must agree on. */
export const SUBPROTOCOL = 'listenjs.v1'

/**
 * Version 1.1: version 1 plus the `patch` message. A client that can apply patches offers it before
 * `listenjs.v1`; a server that selects it may send patches on that socket (PROTOCOL.md, "Patches").
 */
export const SUBPROTOCOL_PATCHES = 'listenjs.v1.1'

/** Where the hub serves its WebSocket endpoint unless told otherwise, and where clients look for it. */
export const DEFAULT_PATH = '/listen'

/**
 * Close codes used by listenjs. 1000–1015 are the standard codes; 4xxx are listenjs's own.
 * {@link retryPolicy} says what a client does after each.
 */
export const CloseCode = {
  /** The client closed because nothing is listened any more. */
  Normal: 1000,
  /** The server is shutting down (`hub.close()`); reconnect at once, with jitter. */
  GoingAway: 1001,
  /** An inbound message was larger than the server accepts (sent by `ws` itself). */
  MessageTooBig: 1009,
  /** The server hit an unexpected error handling this socket's message (logged); reconnect with backoff. */
  InternalError: 1011,
  /** The server is restarting (`hub.close({ restart: true })`); reconnect at once, with jitter. */
  ServiceRestart: 1012,
  /** A frame was not a valid listenjs message (not JSON, binary, unknown type, wrong field types). */
  BadMessage: 4400,
  /**
   * The app closed this connection (`hub.disconnect`), e.g. because its user logged out; the client
   * reconnects with backoff, with the credentials it has then, and every path is checked again.
   */
  Revoked: 4403,
  /** The client offered no `listenjs.v1` subprotocol; retrying cannot help. */
  UnsupportedProtocol: 4406,
  /** The client sent nothing within `limits.firstMessageMs` of connecting. */
  FirstMessageTimeout: 4407,
  /**
   * Used by the client on its own socket: it heard nothing from the server for the announced
   * `intervalMs + timeoutMs`. (A client that does not answer the server's pings is terminated by the
   * server, with no close frame: the client sees 1006.)
   */
  HeartbeatTimeout: 4408,
  /** The client sent messages faster than the server allows. */
  TooManyMessages: 4429,
  /**
   * The client fell too far behind (its unsent bytes passed the hub's hard limit); reconnect with
   * backoff and recover from the versions held.
   */
  SlowConsumer: 4509,
} as const

/** One of the values of {@link CloseCode}. */
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode]

/**
 * What a client does after the socket closed with `code`:
 * - `now`: reconnect at once (with a little jitter so that many clients do not arrive together);
 * - `backoff`: reconnect after the usual exponential backoff;
 * - `slow`: reconnect after the maximum backoff delay (the server closed it for abuse);
 * - `never`: do not reconnect; report the error.
 */
export function retryPolicy(code: number): 'now' | 'backoff' | 'slow' | 'never' {
  switch (code) {
    case CloseCode.GoingAway:
    case CloseCode.ServiceRestart:
      return 'now'
    case 1002: // protocol error (a malformed WebSocket frame)
    case 1007: // a text frame that is not UTF-8
    case 1008: // policy violation (e.g. too many fragments)
    case CloseCode.MessageTooBig:
    case CloseCode.BadMessage:
    case CloseCode.TooManyMessages:
      return 'slow'
    case CloseCode.UnsupportedProtocol:
      return 'never'
    default:
      return 'backoff'
  }
}

/**
 * Why a subscription was refused or ended, in the `code` field of an `error` message.
 * - `unauthorized`: the replayed GET answered 401 or 403;
 * - `not_found`: the replayed GET answered 404 or 410 when subscribing (unless it asked `missing: 'wait'`);
 * - `failed`: the replayed GET answered another non-2xx status, timed out or was too large;
 * - `bad_path`: the path is not acceptable (see PROTOCOL.md, "Paths");
 * - `limit`: a per-socket bound was reached (too many subscriptions);
 * - `bad_message`: a message was understood as JSON but not as a listenjs message.
 */
export type ErrorCode = 'unauthorized' | 'not_found' | 'failed' | 'bad_path' | 'limit' | 'bad_message'

/** Error codes after which the client does not subscribe the path again until the app listens again. */
export const PERMANENT_ERRORS: readonly ErrorCode[] = ['unauthorized', 'not_found', 'bad_path', 'limit']

// ---------------------------------------------------------------------------------------------
// Client → server

/**
 * Starts a subscription to `path` (a path with an optional query string, e.g. `/a?week=48`). A client
 * that already holds a state of the path (after a reconnect) sends its `version`: when the current
 * state has that version the server answers `subscribed` instead of sending the state again.
 * `missing: 'wait'` keeps a subscription to a path that answers 404 or 410: the answer is `gone`
 * instead of an `error` `not_found`, and `data` follows once the resource exists.
 */
export interface SubscribeMessage {
  readonly type: 'subscribe'
  readonly path: string
  readonly version?: string
  readonly missing?: 'wait'
}

/** Ends the subscription to `path`. Unknown paths are ignored. */
export interface UnsubscribeMessage {
  readonly type: 'unsubscribe'
  readonly path: string
}

/** Sets the bearer token forwarded to replays as `Authorization: Bearer <token>`. */
export interface AuthMessage {
  readonly type: 'auth'
  readonly token: string
}

/** Answers a server `ping`. */
export interface PongMessage {
  readonly type: 'pong'
}

/** Every message a client may send. */
export type ClientMessage = SubscribeMessage | UnsubscribeMessage | AuthMessage | PongMessage

// ---------------------------------------------------------------------------------------------
// Server → client

/**
 * First message on every connection: the connection's `id` (unguessable; the client tags its own
 * HTTP writes with it in the `X-Listenjs-Client` header to recognise their echo) and the heartbeat
 * the server will drive.
 */
export interface WelcomeMessage {
  readonly type: 'welcome'
  readonly id: string
  readonly heartbeat: { readonly intervalMs: number; readonly timeoutMs: number }
}

/** The header a client puts on its own HTTP writes so that their pushes carry its id as `origin`. */
export const CLIENT_HEADER = 'x-listenjs-client'

/** Confirms a subscription whose current state has the `version` the client sent: nothing changed. */
export interface SubscribedMessage {
  readonly type: 'subscribed'
  readonly path: string
  readonly version: string
}

/** The server checks the client is alive; the client answers `pong`. */
export interface PingMessage {
  readonly type: 'ping'
}

/**
 * The socket's credentials expire soon (the hub's `credentialsExpireAt`): the client sends a fresh
 * `auth`, or, without a token (cookie session), reconnects. Otherwise, at expiry, every subscription
 * is checked again with the expired credentials.
 */
export interface ReauthMessage {
  readonly type: 'reauth'
}

/**
 * A state of `path`. Exactly one of `json` (a parsed JSON body; `null` for an empty body) or `text`
 * (a body of another content type) is present. `snapshot` is true on the first delivery of a
 * subscription. `origin` is the id of the connection whose own HTTP write caused this change, when
 * exactly one did.
 */
export interface DataMessage {
  readonly type: 'data'
  readonly path: string
  readonly version: string
  readonly snapshot?: boolean
  readonly origin?: string
  readonly json?: unknown
  readonly text?: string
}

/** One operation of an RFC 6902 JSON Patch, of the three kinds a `patch` message carries. */
export type PatchOp =
  | { readonly op: 'add'; readonly path: string; readonly value: unknown }
  | { readonly op: 'remove'; readonly path: string }
  | { readonly op: 'replace'; readonly path: string; readonly value: unknown }

/**
 * A new state of `path` as an RFC 6902 JSON Patch of the state of version `from`, which the client
 * holds (`listenjs.v1.1` only). `sum` is the checksum of the resulting state (see `checksum.ts`): a
 * client whose result has another sum, or that does not hold `from`, subscribes again without a
 * version. `origin` as in {@link DataMessage}.
 */
export interface PatchMessage {
  readonly type: 'patch'
  readonly path: string
  readonly version: string
  readonly from: string
  readonly sum: number
  readonly origin?: string
  readonly ops: readonly PatchOp[]
}

/**
 * The resource at `path` answered 404 or 410 after a change, or when a subscription that asked to
 * wait (`missing: 'wait'`) was made; the subscription stays.
 */
export interface GoneMessage {
  readonly type: 'gone'
  readonly path: string
  readonly status: number
}

/**
 * A subscription was refused or ended (when `path` is set), or a message was not understood.
 * `message` is a short fixed text, never an internal detail.
 */
export interface ErrorMessage {
  readonly type: 'error'
  readonly code: ErrorCode
  readonly message: string
  readonly path?: string
  readonly status?: number
}

/** Every message a server may send. */
export type ServerMessage =
  | WelcomeMessage
  | PingMessage
  | ReauthMessage
  | DataMessage
  | PatchMessage
  | SubscribedMessage
  | GoneMessage
  | ErrorMessage

// ---------------------------------------------------------------------------------------------
// Parsing

/** The result of parsing a frame: the message, or why it is not one. */
export type Parsed<T> =
  { readonly ok: true; readonly message: T } | { readonly ok: false; readonly reason: string }

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason }
}

function decode(data: unknown): Record<string, unknown> | string {
  if (typeof data !== 'string') return 'frames must be JSON text'
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return 'frame is not valid JSON'
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'frame must be a JSON object'
  return value as Record<string, unknown>
}

/**
 * Parses a frame received by the server. Accepts only the exact shapes of {@link ClientMessage};
 * anything else yields `{ ok: false, reason }` with a short reason that is safe to send back.
 */
export function parseClientMessage(data: unknown): Parsed<ClientMessage> {
  const value = decode(data)
  if (typeof value === 'string') return fail(value)
  switch (value.type) {
    case 'subscribe':
      if (typeof value.path !== 'string') return fail('subscribe needs a string path')
      if (value.version !== undefined && typeof value.version !== 'string')
        return fail('version must be a string')
      if (value.missing !== undefined && value.missing !== 'wait') return fail('missing must be "wait"')
      return {
        ok: true,
        message: {
          type: 'subscribe',
          path: value.path,
          ...(value.version === undefined ? {} : { version: value.version }),
          ...(value.missing === undefined ? {} : { missing: 'wait' }),
        },
      }
    case 'unsubscribe':
      if (typeof value.path !== 'string') return fail('unsubscribe needs a string path')
      return { ok: true, message: { type: 'unsubscribe', path: value.path } }
    case 'auth':
      // RFC 6750 token characters only: the token becomes a header value in every replay.
      if (typeof value.token !== 'string' || !/^[A-Za-z0-9\-._~+/]+=*$/.test(value.token))
        return fail('auth needs a bearer token (RFC 6750 characters)')
      return { ok: true, message: { type: 'auth', token: value.token } }
    case 'pong':
      return { ok: true, message: { type: 'pong' } }
    default:
      return fail('unknown message type')
  }
}

/** The string fields each server message must have. */
const SHAPES = new Map<unknown, readonly string[]>([
  ['welcome', ['id']],
  ['ping', []],
  ['reauth', []],
  ['data', ['path', 'version']],
  ['patch', ['path', 'version']],
  ['subscribed', ['path', 'version']],
  ['gone', ['path']],
  ['error', ['code']],
])

/**
 * Reads a frame received by the client: the message, or `undefined` for anything else (not JSON, a
 * missing field, an unknown type: a newer server can add messages, and older clients ignore them).
 * Lean on purpose: it is part of the browser bundle.
 */
export function parseServerMessage(data: unknown): ServerMessage | undefined {
  let value: Record<string, unknown> | null | undefined
  try {
    value = typeof data === 'string' ? (JSON.parse(data) as Record<string, unknown> | null) : undefined
  } catch {
    return undefined
  }
  const needs = value && SHAPES.get(value.type)
  if (!needs?.every((field) => typeof value![field] === 'string')) return undefined
  const heartbeat = value!.heartbeat as { intervalMs?: unknown; timeoutMs?: unknown } | undefined
  return value!.type !== 'welcome' ||
    (typeof heartbeat?.intervalMs === 'number' && typeof heartbeat.timeoutMs === 'number')
    ? (value as unknown as ServerMessage)
    : undefined
}
