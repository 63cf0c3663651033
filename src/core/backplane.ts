/**
 * A backplane carries changes between hub processes. The hub publishes every change through it and
 * acts on what it receives from it, its own changes included, so one process and many processes
 * take the same path. The default keeps everything in memory, for one process.
 */

/**
 * A change to one or more paths (each already expanded with its ancestors when asked). `origin`
 * names the connection whose own write caused it, with a hash of the write's credentials: a hub
 * tags pushes with the id only for the connection of that id whose credentials hash the same.
 */
export interface ChangeMessage {
  readonly kind: 'change'
  readonly paths: readonly string[]
  readonly origin?: { readonly id: string; readonly credentials: string }
  /** When it was published (ms since the epoch): the start of the write-to-push latency. */
  readonly at?: number
  /** The W3C `traceparent` of the change's span, when a tracer is set (see `hub.setTelemetry`). */
  readonly trace?: string
}

/** An explicit payload for exactly one path and query (`notify(path, payload)`). */
export interface PayloadMessage {
  readonly kind: 'payload'
  readonly path: string
  readonly payload: unknown
}

/**
 * Given by a backplane to its own hub only (it never travels), when it is connected again after an
 * outage: changes may have been missed, so the hub re-checks every path its subscribers hold,
 * spread over `spreadMs` so that many processes do not replay at once.
 */
export interface ResyncMessage {
  readonly kind: 'resync'
  readonly spreadMs: number
}

/**
 * The most paths one change message may name. A hub drops a larger one from any backplane, and
 * publishes its own large changes in parts of at most this many.
 */
export const MAX_CHANGE_PATHS = 1024

/** What a hub publishes: a change or a payload (a `resync` never travels). */
export type PublishedMessage = ChangeMessage | PayloadMessage

/** What travels on a backplane, and the `resync` signal a backplane gives its hub. */
export type BackplaneMessage = ChangeMessage | PayloadMessage | ResyncMessage

/** How a backplane is doing: `memory` for the in-process one. */
export type BackplaneStatus = 'memory' | 'connecting' | 'connected' | 'disconnected' | 'closed'

/** The contract between a hub and a backplane. */
export interface Backplane {
  /** Sends `message` to every hub on the backplane, this one included. Must not throw. */
  publish(message: PublishedMessage): void
  /** Registers the hub's handler; returns the function that removes it. */
  subscribe(handler: (message: BackplaneMessage) => void): () => void
  /** Releases connections and timers; called by `hub.close()`. */
  close?(): Promise<void>
  /** Its state, shown in `hub.stats().backplane`. @default 'memory' when absent */
  status?(): BackplaneStatus
  /** Its message counters, shown in `hub.stats().backplaneMessages`, when it keeps them. */
  stats?(): BackplaneCounters
}

/**
 * A backplane's message counters since it started: published; dropped (not sent: unreachable, or
 * over a bound); received; malformed (dropped on arrival: invalid, or over a bound); and outages.
 */
export interface BackplaneCounters {
  readonly published: number
  readonly dropped: number
  readonly received: number
  readonly malformed: number
  readonly outages: number
}

/** The default backplane: one process, delivered synchronously to the handlers of this object. */
export function memoryBackplane(): Backplane {
  const handlers = new Set<(message: BackplaneMessage) => void>()
  return {
    status: () => 'memory',
    publish(message) {
      for (const handler of handlers) handler(message)
    },
    subscribe(handler) {
      handlers.add(handler)
      return () => handlers.delete(handler)
    },
  }
}
