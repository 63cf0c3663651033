import type { ErrorCode } from './protocol'

/**
 * Every code a {@link ListenjsError} can carry:
 * - the protocol's subscription codes ({@link ErrorCode}): `unauthorized`, `not_found`, `failed`,
 *   `bad_path`, `limit`, `bad_message`;
 * - `invalid_option`: a hub or client option is wrong (thrown at construction);
 * - `closed`: the client gave up on the connection (closed by the app, or a close code after which
 *   retrying cannot help), or the hub is closed (`attach` after `close`);
 * - `endpoint_not_found`, `endpoint_unreachable`: the client's socket could not open (HTTP 404 at the
 *   endpoint URL; anything else), reported by `client.error()` and status listeners while it retries.
 */
export type ListenjsErrorCode =
  ErrorCode | 'invalid_option' | 'closed' | 'endpoint_not_found' | 'endpoint_unreachable'

/** The one error class of listenjs, on the server and in the client. */
export class ListenjsError extends Error {
  // `declare`: assigned in the constructor only, so no field definitions are emitted (the browser
  // client's bundle, built for ES2020, would carry a helper to define them).
  /** What went wrong, as a stable string to switch on. */
  declare readonly code: ListenjsErrorCode
  /** The HTTP status of the replayed GET, when the error comes from one. */
  declare readonly status: number | undefined
  /** The subscription path the error is about, if any. */
  declare readonly path: string | undefined

  /**
   * @param code - one of {@link ListenjsErrorCode}
   * @param message - a human-readable message (never shown to other users)
   * @param details - the HTTP `status`, the `path`, and the underlying `cause`
   */
  constructor(
    code: ListenjsErrorCode,
    message: string,
    details: { status?: number; path?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'ListenjsError'
    this.code = code
    this.status = details.status
    this.path = details.path
  }
}
