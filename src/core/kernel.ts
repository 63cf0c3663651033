/**
 * What every part of a hub shares: its options, the subscription registry, the replay queue, the
 * async scope replays and timers run in, the event sink and the replay itself. Each part
 * (`connections`, `subscriptions`, `changes`, `pushes`, `fanout`, `outbox`, `heartbeat`) gets this
 * and the parts it calls, and owns its own state.
 */
import { AsyncResource } from 'node:async_hooks'
import type { ChangeCause, PushReport, ReplayTrace, Telemetry } from './telemetry'
import type { HubEvents, ReplayEvent } from './types'
import type { ResolvedOptions } from './options'
import { Registry } from './registry'
import {
  failedReplay,
  isContextHeader,
  replayDeadlines,
  replayGet,
  type Dispatch,
  type ReplayContext,
  type ReplayLimits,
  type ReplayResult,
} from './replay'
import { FairQueue } from './scheduler'
import { States } from './states'

/** Emits a hub event; a listener that throws is logged, never rethrown. */
export type Emit = <K extends keyof HubEvents>(event: K, ...args: HubEvents[K]) => void

/** See the module comment. */
export class Kernel {
  readonly registry: Registry
  /** Last states, for patches. */
  readonly states: States
  readonly queue: FairQueue
  /** The async context the hub was created in; replays and timers run in it, not in a request's. */
  readonly scope = new AsyncResource('listenjs.hub')
  /** Where replays go: the request handler of the first attached server. */
  dispatch: Dispatch | undefined
  /** The tracer set with `hub.setTelemetry`, if any. */
  telemetry: Telemetry | undefined
  /** Set once `close()` was called. */
  closing = false
  /** Replays completed since the hub started. */
  replays = 0
  /** Numbers every replay in the order replays start (see `Subscription.seq`). */
  private seq = 0
  /** The body bound and the timeouts of every replay. */
  private readonly limits: ReplayLimits

  constructor(
    readonly options: ResolvedOptions,
    readonly emit: Emit,
  ) {
    const states = (this.states = new States(options.patches))
    this.registry = new Registry((group) => states.release(group))
    this.queue = new FairQueue(
      options.replayConcurrency,
      options.limits.replaysInFlightPerConnection,
      (job) => this.scope.runInAsyncScope(job),
    )
    this.limits = {
      maxBodyBytes: options.maxBodyBytes,
      deadlines: replayDeadlines(options.replayTimeoutMs, (set) => this.inScope(set)),
    }
  }

  /** The next replay's start number. */
  nextSeq(): number {
    return ++this.seq
  }

  /**
   * Whether other replays are running or waiting: their frames may reach the same sockets in this
   * turn, so a socket's frames are held to leave together. Otherwise each is written at once, and
   * the kernel starts sending while the fan-out goes on. `inQueue`: the caller is itself a replay.
   * `owner`: only that connection's replays count (those of a group are charged to one of its
   * members, so a group's other changes queue there; a thousand users' own views, each charged to
   * its own connection, are each written at once instead of all held to the end of the turn).
   */
  moreFramesComing(inQueue: boolean, owner?: object): boolean {
    const pending = owner === undefined ? this.queue.inFlight + this.queue.size : this.queue.pendingIn(owner)
    return pending > (inQueue ? 1 : 0)
  }

  /**
   * Replays `GET path` with `context` through the attached server, inside `trace` when there is one;
   * never rejects.
   */
  replay(context: ReplayContext, path: string, trace?: ReplayTrace): Promise<ReplayResult> {
    const { dispatch, options } = this
    if (!dispatch) {
      options.logger.error({ path }, 'listenjs: cannot replay before attach(server)')
      return Promise.resolve(failedReplay(503, 'error'))
    }
    let started: Promise<ReplayResult> | undefined
    const request = trace?.headers ? this.withHeaders(context, trace) : context
    const run = (): Promise<ReplayResult> => (started = replayGet(dispatch, request, path, this.limits))
    // A tracer that throws around the dispatch never makes it run twice.
    const answer = trace
      ? this.guarded(
          () => trace.run(run),
          () => started ?? run(),
        )
      : run()
    return answer.then((result) => {
      this.replays++
      if (result.failure) options.logger.warn({ path, failure: result.failure }, 'listenjs: replay failed')
      return result
    })
  }

  /**
   * `context` with the headers `trace` adds (lower-cased): never one a replay context may carry
   * (credentials, `Host`, forwarding), present or not, so a tracer can give a shared replay no
   * identity.
   */
  private withHeaders(context: ReplayContext, trace: ReplayTrace): ReplayContext {
    const extra = this.guarded(
      () => trace.headers?.(),
      () => ({}),
    )
    const headers: Record<string, string> = { ...context.headers }
    for (const [name, value] of Object.entries(extra)) {
      const key = name.toLowerCase()
      if (typeof value === 'string' && !isContextHeader(key)) headers[key] = value
    }
    return { ...context, headers }
  }

  /** The trace of a replay about to start, when a tracer is set (see {@link Telemetry.replay}). */
  traceReplay(path: string, kind: ReplayEvent['kind'], cause?: ChangeCause): ReplayTrace | undefined {
    const { telemetry } = this
    return (
      telemetry &&
      this.guarded(
        () => telemetry.replay(path, kind, cause),
        () => undefined,
      )
    )
  }

  /**
   * Emits the `replay` event, with the `route` that answered when the adapter saw one, and ends the
   * replay's trace.
   */
  replayed(
    replay: Omit<ReplayEvent, 'route'>,
    route: string | undefined,
    answeredAt: number,
    trace?: ReplayTrace,
    push?: PushReport,
  ): void {
    const event: ReplayEvent = route === undefined ? replay : { ...replay, route }
    this.emit('replay', event)
    if (trace)
      this.guarded(
        () => trace.end(event, answeredAt, push),
        () => undefined,
      )
  }

  /**
   * `fn()`, or `otherwise()` when it throws or gives nothing: a tracer is the app's code, and a
   * failing one is logged, never allowed to stop a replay.
   */
  guarded<T>(fn: () => T | undefined, otherwise: () => T): T {
    try {
      const value = fn()
      if (value !== undefined) return value
    } catch (error) {
      this.options.logger.error({ err: error }, 'listenjs: the tracer threw; its span is left out')
    }
    return otherwise()
  }

  /** Runs `fn` in the hub's async scope (timers set there do not keep a request's context). */
  inScope<T>(fn: () => T): T {
    return this.scope.runInAsyncScope(fn)
  }
}
