/**
 * What happens to a change: it is published on the backplane (every hub, this one included, acts
 * on what it receives), coalesced within a turn (or `coalesceWindowMs`), and turned into one push
 * replay per (path, group) with subscribers; `recheckAfterMs` replays once more later, a `resync`
 * replays every subscribed path once, and an explicit payload is fanned out as it is. Everything a
 * backplane delivers is outside input: bounded, and never thrown out of the hub.
 */
import { MAX_CHANGE_PATHS, type Backplane, type BackplaneMessage, type ChangeMessage } from './backplane'
import type { FanOut } from './fanout'
import { payloadFrame } from './frames'
import type { Kernel } from './kernel'
import { POLICY } from './options'
import { expandChange } from './paths'
import type { Pushes } from './pushes'
import type { Connection } from './registry'
import { credentialsKey, isInsideReplay, versionOf } from './replay'
import { epochNow, isTraceparent, type ChangeCause } from './telemetry'

/** What is pending for a changed path: who wrote it (see `Group.origin`), and the earliest cause. */
interface Pending {
  origin: string | null
  cause: ChangeCause | undefined
}

export class Changes {
  /** Paths changed since the last flush, with the connection whose own write changed them (null: several or untagged). */
  private pending = new Map<string, Pending>()
  private flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined
  private readonly recheckTimers = new Set<NodeJS.Timeout>()
  /** Paths with a resync replay pending: a flood of `resync` signals costs one replay per path. */
  private readonly resyncing = new Set<string>()
  private warnedLoop = false
  private readonly unsubscribe: () => void

  constructor(
    private readonly kernel: Kernel,
    readonly backplane: Backplane,
    private readonly pushes: Pushes,
    private readonly fanout: FanOut,
    /** The open connection of an id, to check a change's echo tag. */
    private readonly connectionOf: (id: string) => Connection | undefined,
  ) {
    this.unsubscribe = backplane.subscribe((message) => this.receiveSafely(message))
  }

  /**
   * Whether the code running now serves a replay: a change it raises is ignored (no loops), with
   * one warning.
   */
  ignoredInReplay(): boolean {
    if (!isInsideReplay()) return false
    if (!this.warnedLoop) {
      this.warnedLoop = true
      this.kernel.options.logger.warn(
        'listenjs: a change was raised while serving a replay and was ignored (no loops)',
      )
    }
    return true
  }

  /**
   * Announces a change to every hub; `captured`: what the tracer kept of the write (see
   * `Telemetry.capture`). Not checked against replays: a mutation is never a replay, even
   * when its handler waited on something a replay held (only `notify` calls made by a replay's own
   * handler are loops).
   */
  publish(paths: readonly string[], origin?: ChangeMessage['origin'], captured?: unknown): void {
    const expanded = expandChange(paths, this.kernel.options.notifyAncestors)
    const { kernel } = this
    const { telemetry } = kernel
    const trace =
      telemetry &&
      kernel.guarded(
        () => telemetry.change(expanded, captured),
        () => undefined,
      )
    const at = Math.round(epochNow() * 1000) / 1000
    const cause = trace === undefined ? { at } : { at, trace }
    // Every hub drops a change naming more paths than MAX_CHANGE_PATHS: a large one travels in parts.
    for (let i = 0; i < expanded.length; i += MAX_CHANGE_PATHS) {
      const part = expanded.slice(i, i + MAX_CHANGE_PATHS)
      this.backplane.publish(
        origin
          ? { kind: 'change', paths: part, origin, ...cause }
          : { kind: 'change', paths: part, ...cause },
      )
    }
  }

  /** Stops every timer and leaves the backplane. */
  stop(): void {
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer as NodeJS.Timeout)
      clearImmediate(this.flushTimer as NodeJS.Immediate)
      this.flushTimer = undefined
    }
    for (const timer of this.recheckTimers) clearTimeout(timer)
    this.recheckTimers.clear()
    this.resyncing.clear()
    this.unsubscribe()
  }

  private receiveSafely(message: BackplaneMessage): void {
    try {
      this.receive(message)
    } catch (error) {
      this.kernel.options.logger.error(
        { err: error },
        'listenjs: dropped a backplane message that could not be used',
      )
    }
  }

  private receive(message: BackplaneMessage): void {
    if (this.kernel.closing) return
    if (message.kind === 'payload') return this.pushPayload(message.path, message.payload)
    if (message.kind === 'resync') return this.resyncAll(message.spreadMs)
    if (!Array.isArray(message.paths) || message.paths.length > MAX_CHANGE_PATHS) {
      this.kernel.options.logger.warn('listenjs: dropped a backplane change with too many paths')
      return
    }
    const origin = this.originOf(message.origin)
    const cause = causeOf(message)
    for (const path of message.paths) {
      if (typeof path !== 'string') continue
      const known = this.pending.get(path)
      if (known === undefined) this.pending.set(path, { origin, cause })
      else {
        if (known.origin !== origin) known.origin = null
        known.cause ??= cause
      }
    }
    if (this.flushTimer !== undefined) return
    // Coalesce: everything changed within this turn (or window) costs one replay per group.
    const { coalesceWindowMs } = this.kernel.options
    this.kernel.inScope(() => {
      this.flushTimer =
        coalesceWindowMs > 0
          ? setTimeout(() => this.flush(), coalesceWindowMs)
          : setImmediate(() => this.flush())
    })
  }

  /**
   * The id to tag pushes with for a change's origin: only a connection of this hub with that id whose
   * credentials are the write's own. A copied id with other credentials tags nothing.
   */
  private originOf(origin: ChangeMessage['origin']): string | null {
    if (!origin) return null
    const connection = this.connectionOf(origin.id)
    return connection && credentialsKey(connection.request.headers) === origin.credentials ? origin.id : null
  }

  private flush(): void {
    this.flushTimer = undefined
    const changes = this.pending
    this.pending = new Map()
    this.replayPaths(changes)
    const delay = this.kernel.options.recheckAfterMs
    if (delay > 0 && !this.kernel.closing) {
      this.later(delay, () => this.replayPaths(new Map([...changes.keys()].map((path) => [path, AGAIN]))))
    }
  }

  /** Runs `fn` after `ms`, unless the hub closes first. */
  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.recheckTimers.delete(timer)
      if (!this.kernel.closing) fn()
    }, ms)
    timer.unref()
    this.recheckTimers.add(timer)
  }

  /**
   * Replays every subscribed path once, each at a random moment within `spreadMs`: after a backplane
   * outage, changes made elsewhere may have been missed. Versions make it cheap: an unchanged state
   * sends nothing.
   */
  private resyncAll(spreadMs: number): void {
    const spread =
      Number.isFinite(spreadMs) && spreadMs > 0 ? Math.min(spreadMs, POLICY.maxResyncSpreadMs) : 0
    for (const path of this.kernel.registry.paths()) {
      // A path already waiting for its resync is not queued again: a flood of signals costs one each.
      if (this.resyncing.has(path)) continue
      this.resyncing.add(path)
      this.later(Math.random() * spread, () => {
        this.resyncing.delete(path)
        this.replayPaths(new Map([[path, AGAIN]]))
      })
    }
  }

  private replayPaths(changes: ReadonlyMap<string, Pending>): void {
    for (const [path, { origin, cause }] of changes) {
      for (const resource of this.kernel.registry.affectedBy(path)) {
        for (const flight of resource.flights.values()) flight.stale = true
        // Later subscribers must not join a replay that may predate this change.
        resource.flights.clear()
        for (const group of resource.groups.values()) this.pushes.schedule(group, origin, cause)
      }
    }
  }

  private pushPayload(path: string, payload: unknown): void {
    const resources = this.kernel.registry.exact(path)
    if (resources.length === 0) return
    let json: string | undefined
    try {
      json = JSON.stringify(payload)
    } catch (error) {
      this.kernel.options.logger.error(
        { err: error, path },
        'listenjs: dropped a payload that cannot be serialized',
      )
      return
    }
    if (json === undefined) return
    const version = versionOf(json)
    const seq = this.kernel.nextSeq()
    const hold = this.kernel.moreFramesComing(false)
    // Framed once per path as subscribed (a base path makes another one).
    for (const resource of resources) {
      const frame = payloadFrame(resource.path, version, json)
      this.fanout.send(resource, resource.groups.values(), { frame, version, seq, hold })
    }
  }
}

/** A replay made again with no new change behind it (a re-check, a resync): no writer, no cause. */
const AGAIN: Pending = Object.freeze({ origin: null, cause: undefined })

/** The cause a change message carries, when it is well formed (a backplane's input is outside input). */
function causeOf(message: ChangeMessage): ChangeCause | undefined {
  const { at, trace } = message
  if (typeof at !== 'number' || !Number.isFinite(at)) return undefined
  return isTraceparent(trace) ? { at, trace } : { at }
}
