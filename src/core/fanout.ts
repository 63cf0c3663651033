/**
 * The ordering rule of fan-out (SPEC §2.8): a frame goes to every member of some groups that does
 * not hold its version yet, and never to one that holds the state of a replay that started after
 * it, so nobody goes back to an older state. Frames are built once per group by the caller; the
 * echo tag goes to the writer's own connection only.
 */
import type { Kernel } from './kernel'
import type { Outbox } from './outbox'
import type { Group, Resource } from './registry'
import type { Patch } from './states'
import { epochNow } from './telemetry'
import type { PushEvent } from './types'

/** What one fan-out sends. */
export interface Delivery {
  /** The frame everyone gets. */
  readonly frame: Buffer
  /** The state's version: a subscriber holding it gets nothing. */
  readonly version: string
  /** The start number of the replay (or payload) that produced it. */
  readonly seq: number
  /** More frames are likely in this turn (see `HubSocket.send`). */
  readonly hold: boolean
  /** The connection whose own write caused it, and the frame that tells it so. */
  readonly origin?: { readonly id: string; readonly frame: () => Buffer }
  /** A patch to it, for the members that take patches and hold its `from` state. */
  readonly patch?: Patch
  /** The route template that answered its replay, for the `push` event. */
  readonly route?: string | undefined
  /** When the change that caused it was published (ms since the epoch), for the `push` event. */
  readonly changedAt?: number | undefined
}

/**
 * The same string, as V8 keeps it for good (interned, so never in the young generation). Every
 * recipient's subscription keeps the version it was sent: with a fresh string, each of those
 * thousands of writes is a pointer from an old object to a young one, which the write barrier
 * records and every scavenge then visits until the string is promoted.
 */
function lasting(text: string): string {
  return Object.keys({ [text]: 0 })[0] ?? text
}

export class FanOut {
  constructor(
    private readonly kernel: Kernel,
    private readonly outbox: Outbox,
  ) {}

  /**
   * Sends `delivery` to the members of `groups` (see the module comment), as a patch to those that
   * can take it; emits `push`. Returns how many got it, and whether a member takes patches (the
   * state is worth keeping).
   */
  send(
    resource: Resource,
    groups: Iterable<Group>,
    delivery: Delivery,
  ): { recipients: number; patched: number; patches: boolean } {
    const { frame, seq, hold, origin, patch } = delivery
    let { version } = delivery
    const { path } = resource
    const { outbox } = this
    // The writer's connection id, or one no connection has.
    const originId = origin === undefined ? undefined : origin.id
    let recipients = 0
    let patched = 0
    let patches = false
    let tagged: Buffer | undefined
    for (const group of groups) {
      for (const subscription of group.members) {
        const { connection } = subscription
        patches ||= connection.patches
        if (subscription.seq > seq) continue
        subscription.seq = seq
        const held = subscription.version
        if (held === version) continue
        // Interned from the second recipient on: one user's own view is not worth interning.
        if (recipients === 1) version = lasting(version)
        subscription.version = version
        recipients++
        const own = connection.id === originId
        const whole = own ? (tagged ??= origin!.frame()) : frame
        const patchFrame =
          patch !== undefined && connection.patches && held === patch.from
            ? patch.frame(own ? originId : undefined)
            : undefined
        if (patchFrame === undefined) outbox.send(connection, path, whole, hold)
        else {
          outbox.send(connection, path, patchFrame, hold, whole)
          patched++
        }
      }
    }
    if (recipients > 0) this.kernel.emit('push', pushEvent(path, version, recipients, patched, delivery))
    return { recipients, patched, patches }
  }
}

/** The `push` event of a delivery sent to `recipients` subscribers. */
function pushEvent(
  path: string,
  version: string,
  recipients: number,
  patched: number,
  { route, changedAt }: Delivery,
): PushEvent {
  const event: { -readonly [K in keyof PushEvent]: PushEvent[K] } = { path, version, recipients, patched }
  if (route !== undefined) event.route = route
  if (changedAt !== undefined) event.sinceChangeMs = Math.max(0, epochNow() - changedAt)
  return event
}
