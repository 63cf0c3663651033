/**
 * The public types of what a listener gets: the value's {@link Meta}, the options of one `listen`
 * call, the function that stops it, what a reconnect recovered, and the patch support a client takes.
 */
import type { ListenjsError } from '../core/errors'
import type { PatchMessage } from '../core/protocol'

/** What comes with each delivered value. */
export interface Meta {
  /** The path as given to `listen`. */
  readonly path: string
  /** The server's version of this state (a strong hash of the body, or the route's strong ETag). */
  readonly version: string
  /**
   * True on the first delivery to a listener and on a resync after a reconnect (`kind` is `snapshot`
   * or `resync`), false for live changes.
   */
  readonly snapshot: boolean
  /**
   * Why this value is delivered:
   * - `snapshot`: the first value this `listen` call gets (the subscription's snapshot, or the state
   *   already known when another listener of the path subscribed earlier);
   * - `change`: a live push after a change of the resource;
   * - `resync`: after a reconnect, the state changed while the client was away (the version it held is
   *   no longer current). When nothing changed, nothing is delivered again.
   */
  readonly kind: 'snapshot' | 'change' | 'resync'
  /**
   * True when this push was caused by this client's own HTTP write, made with the
   * {@link Client.headers} of the current connection (the frame's `origin` equals the connection id).
   * An optimistic UI can skip re-rendering; the value is delivered either way.
   */
  readonly own: boolean
  /**
   * True when the state arrived as a patch (`createClient({ patches })`), applied here and verified
   * against its checksum: the value is the whole new state either way.
   */
  readonly patched: boolean
}

/** Callbacks of one `listen` call besides the data callback. */
export interface ListenOptions {
  /**
   * The subscription was refused or ended (`unauthorized`, `not_found`, `failed`, `bad_path`, `limit`),
   * or the client gave up on the connection (`closed`, after which this listener is dropped). A client
   * without an `auth` option reports a 401 only if it comes again after one fresh socket (see
   * `ClientOptions.auth`).
   * @default undefined (errors are not reported)
   */
  onError?: (error: ListenjsError) => void
  /**
   * The resource answered 404 or 410 after a change, or (with `missing: 'wait'`) when subscribing; the
   * subscription stays, and data follows if the resource comes back. @default undefined
   */
  onGone?: (info: { path: string; status: number }) => void
  /**
   * `'wait'`: a path that does not exist yet (404 or 410) is not refused: `onGone` is called and the
   * subscription stays, across reconnects, until the resource exists and `onData` gets it. Listeners
   * of one path share its subscription: once one of them waits, they all get `onGone` instead of a
   * `not_found` refusal. @default undefined (a missing resource is refused with `not_found`)
   */
  missing?: 'wait'
}

/**
 * Applies a `patch` message to `state` and verifies the checksum of the result: the new state, or
 * `undefined` when the patch does not apply or the result's checksum is not `patch.sum`. The one
 * `listenjs/client/patches` exports as `patches` is what {@link ClientOptions.patches} takes.
 */
export type PatchSupport = (state: unknown, patch: Pick<PatchMessage, 'ops' | 'sum'>) => unknown

/** Stops one `listen` call. Calling it again does nothing. */
export interface Unlisten {
  (): void
  /**
   * Settles once for this `listen` call: resolves right after its first value was delivered to it
   * (for a path whose state is already known, right after it gets that state), or its first `onGone`
   * (a missing resource the subscription waits for, with `missing: 'wait'`); rejects with the
   * {@link ListenjsError} refusing the path, or with code `closed` when the client gives up, is
   * closed, or this listener is stopped first. Awaiting it is optional: a rejection nobody observes
   * is not reported as unhandled.
   */
  readonly ready: Promise<void>
}

/** What {@link Subscriptions.onResync} listeners receive once per reconnect. */
export interface ResyncInfo {
  /** True when every resubscribed path was confirmed unchanged (nothing was delivered again). */
  recovered: boolean
  /** The paths whose state changed while away, delivered with `kind: 'resync'`. */
  changed: string[]
}
