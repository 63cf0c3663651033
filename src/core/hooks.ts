/**
 * The app's hooks into a hub (who shares a replay, who may subscribe, when credentials expire, which
 * origins and paths are allowed) and the logger: the function types of `HubOptions`.
 */
import type { UpgradeRequest } from './replay'

/**
 * A pino-compatible logger. Only these four methods are used; each is called either as
 * `(object, message)` or `(message)`. The default logger is silent.
 */
export interface Logger {
  debug(obj: object | string, msg?: string): void
  info(obj: object | string, msg?: string): void
  warn(obj: object | string, msg?: string): void
  error(obj: object | string, msg?: string): void
}

/** Returned by `identify` to declare that a resource looks the same to everyone. */
export const PUBLIC: unique symbol = Symbol.for('listenjs.public')

/**
 * Groups subscribers whose replays are interchangeable. Called once per subscription with what the
 * socket keeps of its upgrade request (headers, url, address) and the subscription path. Return:
 * - a string: subscribers of the path with the same string share one replay per change
 *   (e.g. the session's user id). Only widen groups when the GET route really answers the same to
 *   all of them;
 * - {@link PUBLIC}: one replay serves every subscriber of the path;
 * - `undefined`: the default identity (everything the replay forwards, see PROTOCOL.md).
 */
export type Identify = (path: string, request: UpgradeRequest) => string | typeof PUBLIC | undefined

/** Decides whether a browser page from `origin` may connect (`request`: the upgrade, as for `authorize`). */
export type OriginCheck = (origin: string, request: UpgradeRequest) => boolean

/**
 * Decides, before any replay, whether the socket of `request` may subscribe to `path`. Return (or
 * resolve) `true` to go on; anything else, or a throw, refuses the subscription with `unauthorized`
 * (status 403). The replayed GET still decides after it: this is an extra, cheaper gate.
 */
export type Authorize = (path: string, request: UpgradeRequest) => boolean | Promise<boolean>

/**
 * When the credentials of a socket expire: epoch milliseconds, a `Date`, or `undefined` (never).
 * Called with what the socket keeps of its upgrade request when it opens, and again after each `auth`
 * message (with the new token in `Authorization`): read a JWT's `exp`, or a session's end from the
 * store. Some time before (`POLICY.reauthLeadMs`, at most half the remaining lifetime) the socket gets
 * a `reauth` message; at expiry, unless an `auth` moved it later, every subscription of the socket is
 * checked again by replay with its current credentials. A time already past asks at once; a hook that
 * throws is logged and counts as "no expiry".
 */
export type CredentialsExpireAt = (request: UpgradeRequest) => number | Date | undefined

/**
 * Which paths may be subscribed to: path prefixes matched segment by segment (`'/api'` allows
 * `/api` and `/api/…`, not `/apix`), or a function of the path (with query) and the upgrade
 * request that returns `true` to allow. Replays go straight to the app's handler: a front proxy's
 * path rules never see them.
 */
export type PathRule = readonly string[] | ((path: string, request: UpgradeRequest) => boolean)
