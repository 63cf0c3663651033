/**
 * Push replays: one replay per changed (path, group), queued once however many changes arrive, and
 * what is done with its answer (SPEC §2.5): data for the group, `gone`, refusal, or a retry with
 * backoff; and, for a shared group, a split into its members' own groups when the answer is not
 * everyone's (see `sharing.ts`).
 */
import type { FanOut } from './fanout'
import { dataFrame, errorFrame, goneFrame } from './frames'
import type { Kernel } from './kernel'
import { POLICY } from './options'
import type { Outbox } from './outbox'
import type { ErrorCode } from './protocol'
import type { Group, Subscription } from './registry'
import type { ReplayResult } from './replay'
import type { ChangeCause } from './telemetry'
import type { ReplayOutcome } from './types'
import { groupFor, groupKey, verdict } from './sharing'

/** What a push replay delivers for: its writer, its cause, the connection charged, and what it sent. */
interface PushContext {
  readonly origin: string | null
  readonly cause: ChangeCause | undefined
  readonly owner: object
  /** Filled by `deliver`: how many subscribers got the state, and how many as a patch. */
  readonly sent: { recipients: number; patched: number }
}

/** The version a subscriber holds after `gone`. */
export const GONE = 'gone'

export class Pushes {
  constructor(
    private readonly kernel: Kernel,
    private readonly outbox: Outbox,
    private readonly fanout: FanOut,
    /** Ends a subscription the app refused (the subscriptions part owns that). */
    private readonly end: (subscription: Subscription) => void,
  ) {}

  /**
   * Queues one replay of `group` (once: a group already waiting is not queued again; one running
   * is replayed once more when it ends). `origin`: the connection whose own write changed it.
   */
  schedule(group: Group, origin: string | null, cause?: ChangeCause): void {
    if (this.kernel.closing || group.members.size === 0) return
    group.origin = group.origin === undefined || group.origin === origin ? origin : null
    group.cause ??= cause
    if (group.state === 'running') {
      group.dirty = true
      return
    }
    if (group.state === 'queued') return
    clearTimeout(group.retryTimer)
    group.retryTimer = undefined
    group.state = 'queued'
    // Charged to a member's connection: one connection's many groups take one turn at a time.
    const first = group.members.values().next().value as Subscription
    group.ticket = this.kernel.queue.push(first.connection, () => this.run(group, first.connection))
  }

  /** Replays `group`; `owner` is the connection its replay is charged to. */
  private async run(group: Group, owner: object): Promise<void> {
    group.ticket = undefined
    const first = group.members.values().next()
    if (first.done || this.kernel.closing) {
      group.state = 'idle'
      return
    }
    group.state = 'running'
    group.dirty = false
    const origin = group.origin ?? null
    const { cause } = group
    group.origin = undefined
    group.cause = undefined
    const { kernel } = this
    const seq = kernel.nextSeq()
    // Public groups use their own request (no member's); the others a member's current one, which
    // is the group's: a socket whose credentials change leaves its groups at once.
    const context = group.context ?? first.value.connection.context
    const { path, target } = group.resource
    const trace = kernel.traceReplay(path, 'push', cause)
    const started = performance.now()
    const result = await kernel.replay(context, target, trace)
    const answeredAt = performance.now()
    group.state = 'idle'
    if (kernel.closing || group.members.size === 0) return
    const sent = { recipients: 0, patched: 0 }
    const outcome = this.deliver(group, result, seq, { origin, cause, owner, sent })
    const { status, route } = result
    const event = { path, kind: 'push', outcome, status, durationMs: answeredAt - started } as const
    kernel.replayed(event, route, answeredAt, trace, sent)
    if (group.dirty) this.schedule(group, null)
  }

  /** Acts on a push replay's answer, once the group may take it; `seq` numbers the replay. */
  private deliver(group: Group, result: ReplayResult, seq: number, push: PushContext): ReplayOutcome {
    const { resource } = group
    const { path } = resource
    const { status } = result
    const { origin, cause, owner } = push
    if (status >= 500 || status === 429 || status === 408) {
      this.retryLater(group, result, origin, cause)
      return 'retried'
    }
    group.attempts = 0
    if (verdict(group.kind, result) === 'split') {
      this.split(group, origin, cause)
      return 'split'
    }
    const hold = this.kernel.moreFramesComing(true, owner)
    if (status >= 200 && status <= 299) {
      this.kernel.registry.aliasAll(resource, result.aliases)
      const { version, body, contentType } = result
      const { states } = this.kernel
      const { recipients, patched, patches } = this.fanout.send(resource, [group], {
        frame: dataFrame(path, version, body, contentType, false),
        version,
        seq,
        hold,
        origin:
          origin === null
            ? undefined
            : { id: origin, frame: () => dataFrame(path, version, body, contentType, false, origin) },
        patch: states.patch(group, path, version, body),
        route: result.route,
        changedAt: cause?.at,
      })
      push.sent.recipients = recipients
      push.sent.patched = patched
      states.keep(group, version, body, contentType, seq, patches)
      if (group.kind === 'own') this.regroup(group, result)
      return recipients > 0 ? 'changed' : 'unchanged'
    }
    this.kernel.states.release(group)
    if (status === 404 || status === 410) {
      // After `gone`, the same body as before the deletion is news again: its version is 'gone'.
      this.fanout.send(resource, [group], { frame: goneFrame(path, status), version: GONE, seq, hold })
      return 'gone'
    }
    // 401/403 and any other answer that will not become state: those subscribers are told and dropped.
    const [code, message] = refusal(status, false)
    const frame = errorFrame(code, message, path, status)
    for (const subscription of [...group.members]) {
      if (subscription.seq > seq) continue
      this.outbox.send(subscription.connection, path, frame)
      this.end(subscription)
    }
    return code === 'unauthorized' ? 'refused' : 'failed'
  }

  /** 5xx, 429, 408 or no answer: the subscription stays, and the replay is retried with backoff. */
  private retryLater(
    group: Group,
    result: ReplayResult,
    origin: string | null,
    cause: ChangeCause | undefined,
  ): void {
    group.attempts++
    this.kernel.options.logger.error(
      { path: group.resource.path, status: result.status, failure: result.failure, attempt: group.attempts },
      'listenjs: a push replay failed; retrying',
    )
    const backoff = Math.min(POLICY.retryMaxMs, POLICY.retryBaseMs * 2 ** (group.attempts - 1))
    const delay = backoff * (0.5 + Math.random() / 2)
    this.kernel.inScope(() => {
      group.retryTimer = setTimeout(() => {
        group.retryTimer = undefined
        this.schedule(group, origin, cause)
      }, delay)
      group.retryTimer.unref()
    })
  }

  /**
   * A shared answer that is not everyone's: each member moves to the group of its own request and
   * is replayed with it. Nothing of the shared answer is sent.
   */
  private split(group: Group, origin: string | null, cause: ChangeCause | undefined): void {
    const { registry } = this.kernel
    const moved = new Set<Group>()
    for (const subscription of [...group.members]) {
      const own = registry.group(group.resource, groupKey.own(subscription.connection.contextKey))
      registry.join(subscription, own)
      moved.add(own)
    }
    for (const own of moved) this.schedule(own, origin, cause)
  }

  /**
   * After an answer made with a member's own request: members that were moved out of a shared group
   * go back to it (their identity's, or the route-public group when this answer said public).
   */
  private regroup(group: Group, result: ReplayResult): void {
    const { registry, options } = this.kernel
    for (const subscription of [...group.members]) {
      if (subscription.identity === group.key && !result.public) continue
      const target = groupFor(registry, subscription, result, options.trustProxy)
      if (target !== group) registry.join(subscription, target)
    }
  }
}

/** The error code and fixed message for a replay status that refuses or ends a subscription. */
export function refusal(status: number, subscribing: boolean): [ErrorCode, string] {
  if (status === 401 || status === 403) return ['unauthorized', 'not authorized']
  if (subscribing && (status === 404 || status === 410)) return ['not_found', 'not found']
  return ['failed', `the resource answered ${status}`]
}
