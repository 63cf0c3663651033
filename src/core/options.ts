import { ListenjsError } from './errors'
import { checkPath } from './paths'
import { DEFAULT_PATH } from './protocol'
import { resolveTrustProxy, type ResolvedTrustProxy, type TrustProxy } from './proxy'
import type { Backplane } from './backplane'
import type { Authorize, CredentialsExpireAt, Identify, Logger, OriginCheck, PathRule } from './hooks'

export { PUBLIC } from './hooks'
export type { Authorize, CredentialsExpireAt, Identify, Logger, OriginCheck, PathRule } from './hooks'

/** Bounds on what one client may ask. Each has a default in {@link DEFAULTS}. */
export interface Limits {
  /** Largest inbound message in bytes; a larger one closes the socket with 1009. @default 16384 */
  messageBytes: number
  /** Subscriptions one socket may hold; one more is refused with `limit`. @default 256 */
  subscriptionsPerSocket: number
  /** Longest subscription path (with query) in characters; longer is refused with `bad_path`. @default 2048 */
  pathLength: number
  /**
   * Messages per second a socket may send on average; bursts up to `messageBurst`. Over it the
   * socket is closed with 4429. @default 100
   */
  messagesPerSecond: number
  /** Burst allowance for `messagesPerSecond` (a reconnect resubscribing everything). @default 600 */
  messageBurst: number
  /**
   * Time a new socket has to send its first message (its `auth` or first `subscribe`); after it the
   * socket is closed with 4407. @default 10000
   */
  firstMessageMs: number
  /**
   * Replays one connection may have running at once (its snapshots and the pushes charged to it);
   * the rest wait their turn, and connections take turns. A connection whose routes hang holds at
   * most this many of the `replayConcurrency` slots. @default 4
   */
  replaysInFlightPerConnection: number
  /**
   * Open sockets per client address; more are refused at the upgrade with HTTP 429. The address is
   * the TCP peer's, or behind a trusted proxy (`trustProxy`) the forwarded client's. The default
   * lets 10,000 sockets arrive through one reverse proxy that is not declared trusted; with
   * `trustProxy` set, lower it (a few hundred still serves an office behind one NAT). @default 10000
   */
  connectionsPerAddress: number
  /**
   * Unsent bytes after which a socket counts as slow: what is pending for it collapses to the newest
   * state per path, sent when it drains. @default 524288 (512 KiB)
   */
  softPendingBytes: number
  /**
   * Unsent plus collapsed bytes after which a slow socket is closed with 4509 (it reconnects and
   * recovers from the versions it holds). @default 4194304 (4 MiB)
   */
  hardPendingBytes: number
}

/** Heartbeat timing, announced to every client in its `welcome` message. */
export interface HeartbeatOptions {
  /** Time between server pings. @default 30000 */
  intervalMs: number
  /** How long a client has to answer a ping before its socket is terminated. @default 10000 */
  timeoutMs: number
}

/**
 * Patches (`listenjs.v1.1`): a subscriber that holds the state a change starts from gets an RFC 6902
 * JSON Patch to the new one, with a checksum of the result, instead of the whole new state.
 */
export interface PatchOptions {
  /**
   * Characters of last states the hub keeps, for all groups together (one per path and group with a
   * subscriber that takes patches, only while it has one); past it, changes go as full states.
   * @default 8388608 (8 Mi)
   */
  memoryBytes: number
  /** Bodies shorter than this (characters) always go whole: a patch would save nothing. @default 512 */
  minBytes: number
}

/** Options of {@link createHub} and of every adapter. Every field is optional. */
export interface HubOptions {
  /** Path of the WebSocket endpoint; other upgrades are left alone. @default '/listen' */
  path?: string
  /**
   * The path the app is served under by a proxy that strips it (`/app`): pages listen on the URLs
   * they fetch (`/app/api/items`), and the hub replays and keys them as the app sees them
   * (`/api/items`). Behind a trusted proxy (`trustProxy`), an `X-Forwarded-Prefix` header takes its
   * place. Paths not below it are used as they are. @default '' (none)
   */
  basePath?: string
  /** Server-driven heartbeat. */
  heartbeat?: Partial<HeartbeatOptions>
  /**
   * Which browser origins may connect. Default: only the origin of the request's own Host
   * (`http(s)://<Host>`). A list of exact origins, or a function. Requests without an `Origin`
   * header (non-browser clients) are allowed.
   */
  allowedOrigins?: readonly string[] | OriginCheck
  /** Per-client bounds. */
  limits?: Partial<Limits>
  /** Whether a change to `/a/b` also changes `/a` and `/`. @default true */
  notifyAncestors?: boolean
  /** Groups subscribers whose replays are interchangeable. @default undefined (identity = forwarded request) */
  identify?: Identify
  /** Refuses subscriptions before any replay. @default undefined (only the replayed GET decides) */
  authorize?: Authorize
  /**
   * Restricts what may be subscribed to (see {@link PathRule}); other paths are refused with
   * `unauthorized` (403) before any replay. @default undefined (every path)
   */
  paths?: PathRule
  /**
   * When each socket's credentials expire (see {@link CredentialsExpireAt}). @default undefined
   * (never: no timer per socket)
   */
  credentialsExpireAt?: CredentialsExpireAt
  /**
   * Which proxies in front of the app are trusted (as Express's `trust proxy`): `true` (the
   * immediate peer, one hop), a number of hops, or the proxies' addresses. Behind a trusted proxy,
   * `limits.connectionsPerAddress` counts the client's forwarded address (`X-Forwarded-For`, read
   * from the right past the trusted hops, so a client cannot escape by sending its own), and the
   * default origin check takes the scheme
   * from `X-Forwarded-Proto` (and the host from `X-Forwarded-Host`) instead of the connection. Set
   * it when the framework trusts its proxy (Fastify `trustProxy`, Express `trust proxy`, Koa
   * `app.proxy`): listenjs cannot read those settings at the upgrade.
   * @default false
   */
  trustProxy?: TrustProxy
  /** A replay slower than this counts as a 5xx (retried with backoff). @default 10000 */
  replayTimeoutMs?: number
  /** A replay body larger than this counts as a 5xx. @default 1048576 (1 MiB) */
  maxBodyBytes?: number
  /** Replays in flight at once, for the whole hub. @default 8 */
  replayConcurrency?: number
  /** Changes within this window coalesce into one replay per group; 0 = one event-loop turn. @default 0 */
  coalesceWindowMs?: number
  /** Replay once more this long after a change, for apps reading from lagging replicas; 0 = off. @default 0 */
  recheckAfterMs?: number
  /**
   * `false` never sends patches (the hub selects `listenjs.v1` whatever the client offers).
   * @default on, with {@link DEFAULTS}`.patches`
   */
  patches?: false | Partial<PatchOptions>
  /** Carries changes between processes. @default an in-memory backplane (one process) */
  backplane?: Backplane
  /** pino-compatible logger. @default silent */
  logger?: Logger
}

/** The hub's options once defaults are applied. */
export interface ResolvedOptions {
  path: string
  basePath: string
  heartbeat: HeartbeatOptions
  allowedOrigins: readonly string[] | OriginCheck | undefined
  limits: Limits
  notifyAncestors: boolean
  identify: Identify | undefined
  authorize: Authorize | undefined
  paths: PathRule | undefined
  credentialsExpireAt: CredentialsExpireAt | undefined
  trustProxy: ResolvedTrustProxy
  replayTimeoutMs: number
  maxBodyBytes: number
  replayConcurrency: number
  coalesceWindowMs: number
  recheckAfterMs: number
  patches: PatchOptions | false
  logger: Logger
}

const noop = (): void => {}

/** A logger that drops everything; the default. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

/** Every default, in one place. */
export const DEFAULTS = {
  path: DEFAULT_PATH,
  heartbeat: { intervalMs: 30_000, timeoutMs: 10_000 },
  limits: {
    messageBytes: 16_384,
    subscriptionsPerSocket: 256,
    pathLength: 2048,
    messagesPerSecond: 100,
    messageBurst: 600,
    firstMessageMs: 10_000,
    replaysInFlightPerConnection: 4,
    connectionsPerAddress: 10_000,
    softPendingBytes: 524_288,
    hardPendingBytes: 4_194_304,
  },
  notifyAncestors: true,
  replayTimeoutMs: 10_000,
  maxBodyBytes: 1_048_576,
  replayConcurrency: 8,
  coalesceWindowMs: 0,
  recheckAfterMs: 0,
  patches: { memoryBytes: 8_388_608, minBytes: 512 },
} as const satisfies Omit<
  ResolvedOptions,
  | 'allowedOrigins'
  | 'identify'
  | 'authorize'
  | 'paths'
  | 'credentialsExpireAt'
  | 'trustProxy'
  | 'logger'
  | 'basePath'
>

/** Fixed policy, next to the defaults: what the hub does that no option changes. */
export const POLICY = {
  /** First delay before a failed push replay (5xx, 429, 408, timeout) is retried; doubled each time, with jitter. */
  retryBaseMs: 500,
  /** Longest delay between two retries of a failed push replay. */
  retryMaxMs: 30_000,
  /** How long a socket closed for being too slow (4509) may take to read its close frame. */
  slowCloseGraceMs: 5000,
  /** How long `hub.close()` waits for sockets to finish the closing handshake before terminating them. */
  closeGraceMs: 1000,
  /** The longest `spreadMs` a resync may ask for. */
  maxResyncSpreadMs: 60_000,
  /**
   * How long before its credentials expire a socket gets `reauth` (`credentialsExpireAt`); at most
   * half the lifetime left when the expiry is learned.
   */
  reauthLeadMs: 60_000,
} as const

/** Whether `value` can be a base path: `/a/b`, acceptable as a path, no query, no trailing slash. */
export function isBasePath(value: string): boolean {
  return (
    value.length > 1 && !value.endsWith('/') && !value.includes('?') && checkPath(value, 1024) === undefined
  )
}

function invalid(option: string, expected: string, got: unknown): ListenjsError {
  const shown = typeof got === 'string' ? JSON.stringify(got) : String(got)
  return new ListenjsError(
    'invalid_option',
    `listenjs: option "${option}" must be ${expected} (got ${shown})`,
  )
}

function count(option: string, value: number | undefined, fallback: number, min: number): number {
  const v = value ?? fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw invalid(option, `an integer ≥ ${min}`, v)
  }
  return v
}

/**
 * Applies defaults and checks every option.
 * @throws ListenjsError with code `invalid_option`, naming the option and what it accepts.
 */
export function resolveOptions(options: HubOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options)
  const path = options.path ?? DEFAULTS.path
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('?')) {
    throw invalid('path', 'a path starting with / and without a query', path)
  }
  const basePath = options.basePath ?? ''
  if (typeof basePath !== 'string' || (basePath !== '' && !isBasePath(basePath))) {
    throw invalid('basePath', 'a path like /app (starting with /, no query, no trailing /)', basePath)
  }
  const allowedOrigins = options.allowedOrigins
  if (
    allowedOrigins !== undefined &&
    typeof allowedOrigins !== 'function' &&
    !(Array.isArray(allowedOrigins) && allowedOrigins.every((o) => typeof o === 'string'))
  ) {
    throw invalid('allowedOrigins', 'an array of origins or a function', allowedOrigins)
  }
  if (options.identify !== undefined && typeof options.identify !== 'function') {
    throw invalid('identify', 'a function', options.identify)
  }
  if (options.authorize !== undefined && typeof options.authorize !== 'function') {
    throw invalid('authorize', 'a function', options.authorize)
  }
  if (options.credentialsExpireAt !== undefined && typeof options.credentialsExpireAt !== 'function') {
    throw invalid('credentialsExpireAt', 'a function', options.credentialsExpireAt)
  }
  const paths = options.paths
  if (
    paths !== undefined &&
    typeof paths !== 'function' &&
    !(Array.isArray(paths) && paths.every((p) => typeof p === 'string' && p.startsWith('/')))
  ) {
    throw invalid('paths', 'an array of path prefixes starting with / or a function', paths)
  }
  const trust = options.trustProxy
  if (
    trust !== undefined &&
    typeof trust !== 'boolean' &&
    !(typeof trust === 'number' && Number.isInteger(trust) && trust >= 0) &&
    !(Array.isArray(trust) && trust.every((a) => typeof a === 'string' && a !== ''))
  ) {
    throw invalid('trustProxy', 'a boolean, a number of hops ≥ 0 or a list of proxy addresses', trust)
  }
  if (options.notifyAncestors !== undefined && typeof options.notifyAncestors !== 'boolean') {
    throw invalid('notifyAncestors', 'a boolean', options.notifyAncestors)
  }
  const patches = options.patches
  if (patches !== undefined && patches !== false && (typeof patches !== 'object' || patches === null)) {
    throw invalid('patches', 'false or an object', patches)
  }
  const hb = options.heartbeat ?? {}
  const limits = options.limits ?? {}
  const d = DEFAULTS.limits
  return {
    path,
    basePath,
    heartbeat: {
      intervalMs: count('heartbeat.intervalMs', hb.intervalMs, DEFAULTS.heartbeat.intervalMs, 1),
      timeoutMs: count('heartbeat.timeoutMs', hb.timeoutMs, DEFAULTS.heartbeat.timeoutMs, 1),
    },
    allowedOrigins,
    limits: {
      messageBytes: count('limits.messageBytes', limits.messageBytes, d.messageBytes, 64),
      subscriptionsPerSocket: count(
        'limits.subscriptionsPerSocket',
        limits.subscriptionsPerSocket,
        d.subscriptionsPerSocket,
        1,
      ),
      pathLength: count('limits.pathLength', limits.pathLength, d.pathLength, 1),
      messagesPerSecond: count('limits.messagesPerSecond', limits.messagesPerSecond, d.messagesPerSecond, 1),
      messageBurst: count('limits.messageBurst', limits.messageBurst, d.messageBurst, 1),
      firstMessageMs: count('limits.firstMessageMs', limits.firstMessageMs, d.firstMessageMs, 1),
      replaysInFlightPerConnection: count(
        'limits.replaysInFlightPerConnection',
        limits.replaysInFlightPerConnection,
        d.replaysInFlightPerConnection,
        1,
      ),
      connectionsPerAddress: count(
        'limits.connectionsPerAddress',
        limits.connectionsPerAddress,
        d.connectionsPerAddress,
        1,
      ),
      softPendingBytes: count('limits.softPendingBytes', limits.softPendingBytes, d.softPendingBytes, 0),
      hardPendingBytes: count('limits.hardPendingBytes', limits.hardPendingBytes, d.hardPendingBytes, 1),
    },
    notifyAncestors: options.notifyAncestors ?? DEFAULTS.notifyAncestors,
    identify: options.identify,
    authorize: options.authorize,
    paths,
    credentialsExpireAt: options.credentialsExpireAt,
    trustProxy: resolveTrustProxy(trust),
    replayTimeoutMs: count('replayTimeoutMs', options.replayTimeoutMs, DEFAULTS.replayTimeoutMs, 1),
    maxBodyBytes: count('maxBodyBytes', options.maxBodyBytes, DEFAULTS.maxBodyBytes, 1),
    replayConcurrency: count('replayConcurrency', options.replayConcurrency, DEFAULTS.replayConcurrency, 1),
    coalesceWindowMs: count('coalesceWindowMs', options.coalesceWindowMs, DEFAULTS.coalesceWindowMs, 0),
    recheckAfterMs: count('recheckAfterMs', options.recheckAfterMs, DEFAULTS.recheckAfterMs, 0),
    patches:
      patches === false
        ? false
        : {
            memoryBytes: count('patches.memoryBytes', patches?.memoryBytes, DEFAULTS.patches.memoryBytes, 0),
            minBytes: count('patches.minBytes', patches?.minBytes, DEFAULTS.patches.minBytes, 0),
          },
    logger: options.logger ?? silentLogger,
  }
}
