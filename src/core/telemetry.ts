/**
 * The seam a tracer plugs into (`listenjs/otel` is one): the core imports no tracing library, and
 * without a tracer set it does nothing more than before. A change carries its cause with it on the
 * backplane (when it was published, and the trace context of its span), so a replay on any process
 * can say which write it serves, and how long after it its push went out.
 */
import type { ReplayEvent } from './types'

/** What a change carries of its cause: when it was published, and its span's W3C `traceparent`. */
export interface ChangeCause {
  /** Milliseconds since the epoch, on the publishing process's clock. */
  readonly at: number
  /** The `traceparent` of the change's span, when a tracer made one that is sampled or recording. */
  readonly trace?: string
}

/** What a push replay's answer became, for its trace (the `push` after the replay). */
export interface PushReport {
  /** Subscribers the new state was sent to. */
  readonly recipients: number
  /** How many of them got it as a patch. */
  readonly patched: number
}

/** One replay's trace: started before the `GET` is dispatched, ended once its answer was used. */
export interface ReplayTrace {
  /** Runs the dispatch of the replay's `GET` with its span active (the app's handler sees it). */
  run<T>(fn: () => T): T
  /**
   * Headers the replay's request carries besides its subscriber's (a `traceparent`: the app's own
   * HTTP instrumentation, which starts from the request's headers, then continues the replay's
   * trace). Never a header a replay context may carry (`Cookie`, `Authorization`, `Host`, `Accept`,
   * `Accept-Language`, `User-Agent`, `X-Forwarded-*`): those are dropped.
   */
  headers?(): Readonly<Record<string, string>>
  /**
   * The replay is over: `event` is what the hub emits as `replay`; `answeredAt` the
   * `performance.now()` of its answer; `push` what was sent after it (push replays that sent a state).
   */
  end(event: ReplayEvent, answeredAt: number, push?: PushReport): void
}

/** A tracer for a hub's work, set with `hub.setTelemetry`. Its methods must not throw (they are guarded). */
export interface Telemetry {
  /**
   * Called when a tracked write starts, in its request's async context; what it returns is given to
   * {@link Telemetry.change} if the write succeeds (the write's own context, cheaper to keep than to
   * re-enter).
   */
  capture?(): unknown
  /**
   * A change this process publishes: `captured` is what `capture` returned at the start of the write
   * that caused it; a `notify` call is in its caller's async context, with nothing captured. Returns
   * the `traceparent` to carry with it, if any.
   */
  change(paths: readonly string[], captured?: unknown): string | undefined
  /** A replay is about to be dispatched; `cause`: the change it serves (pushes), when known. */
  replay(path: string, kind: ReplayEvent['kind'], cause?: ChangeCause): ReplayTrace
}

/** W3C trace context: `version-traceid-parentid-flags`, lower-case hex. */
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/

/** Whether `value` is a `traceparent` a hub accepts from a backplane (version 00 only). */
export function isTraceparent(value: unknown): value is string {
  return typeof value === 'string' && TRACEPARENT.test(value)
}

/** Milliseconds since the epoch, with the precision of `performance.now()`. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now()
}
