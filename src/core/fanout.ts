/**
 * The ordering rule of fan-out (SPEC §2.8): a frame goes to every member of some groups that does
 * not hold its version yet, and never to one that holds the state of a replay that started after
 * it, so nobody goes back to an older state. Frames are built once per group by the caller; the
 * echo tag goes to the writer's own connection only.
 */
import type { Kernel } from './kernel'
import type { Outbox } from './outbox'
import type { Group, Resource } from './registry'

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

  /** Sends `delivery` to the members of `groups` (see the module comment); emits `push`. */
  send(resource: Resource, groups: Iterable<Group>, delivery: Delivery): void {
    const { frame, seq, hold, origin } = delivery
    let { version } = delivery
    const { path } = resource
    const { outbox } = this
    // The writer's connection id, or one no connection has.
    const originId = origin === undefined ? undefined : origin.id
    let recipients = 0
    let tagged: Buffer | undefined
    for (const group of groups) {
      for (const subscription of group.members) {
        if (subscription.seq > seq) continue
        subscription.seq = seq
        if (subscription.version === version) continue
        // Interned from the second recipient on: one user's own view is not worth interning.
        if (recipients === 1) version = lasting(version)
        subscription.version = version
        const { connection } = subscription
        if (connection.id === originId) outbox.send(connection, path, (tagged ??= origin!.frame()), hold)
        else outbox.send(connection, path, frame, hold)
        recipients++
      }
    }
    if (recipients > 0) this.kernel.emit('push', { path, version, recipients })
  }
}
