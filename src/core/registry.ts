import { pathnameOf } from './paths'
import type { ReplayContext, UpgradeRequest } from './replay'

/**
 * What the hub needs of a socket. The core never imports a socket library: one file
 * (`endpoint.ts`) binds this to `ws`.
 */
export interface HubSocket {
  /**
   * Sends one text frame (the buffer holds UTF-8 JSON). A socket's first frame in a turn is written
   * at once unless `hold` says more are likely to follow; held frames, and every later frame of the
   * turn, leave together in one write when the turn ends.
   */
  send(frame: Buffer, hold?: boolean): void
  /** Starts the closing handshake. */
  close(code: number, reason: string): void
  /** Destroys the socket at once. */
  terminate(): void
  /** Bytes given to `send` that have not reached the kernel yet. */
  bufferedAmount(): number
}

/** One open socket. */
export interface Connection {
  readonly id: string
  readonly socket: HubSocket
  /** What is kept of the upgrade request (with the token of the last `auth`), for `identify` and replays. */
  request: UpgradeRequest
  /** The key of the replay context of `request`: equal keys, interchangeable replays. */
  contextKey: string
  readonly subscriptions: Map<string, Subscription>
  awaitingPong: boolean
  /** Subscriptions to check again with new credentials at the end of this turn. */
  recheck: Set<Subscription> | undefined
  /** Whether the socket sent a message yet (else it is closed after `limits.firstMessageMs`). */
  spoke: boolean
  tokens: number
  tokensAt: number
  closed: boolean
  /** While the socket is slow: the newest frame per path, sent in this order when it drains. */
  parked: Map<string, Buffer> | undefined
  parkedBytes: number
}

/** One socket's subscription to one path (with query). */
export interface Subscription {
  readonly connection: Connection
  readonly path: string
  readonly resource: Resource
  /** The identity group key this subscription joins once its snapshot is delivered. */
  readonly identity: string
  /** The group it is in; undefined while its snapshot is pending. */
  group: Group | undefined
  /**
   * The version last sent to this subscriber (or held by it when it resubscribed); a frame with the
   * same version is not sent again.
   */
  version: string | undefined
  /**
   * The start number of the replay whose state this subscriber holds: the result of a replay that
   * started earlier is never sent to it, so it never goes back to an older state.
   */
  seq: number
}

/**
 * Subscribers of one path whose replays are interchangeable. A group has at most one replay in
 * flight; a change during it marks the group dirty so one more replay follows.
 */
export interface Group {
  readonly key: string
  readonly resource: Resource
  readonly members: Set<Subscription>
  state: 'idle' | 'queued' | 'running'
  dirty: boolean
  /**
   * The connection whose own write caused the changes the next replay answers: `undefined` when
   * none is pending, `null` when several (or an untagged one) did.
   */
  origin: string | null | undefined
  attempts: number
  retryTimer: NodeJS.Timeout | undefined
}

/** A snapshot replay shared by the subscribers with one replay context that arrive while it is on. */
export interface SnapshotFlight {
  readonly subscribers: Set<Subscription>
  readonly context: ReplayContext
  /** A change reached the path after this replay was queued: its result may be old. */
  stale: boolean
}

/** Everything subscribed to one path with one query string. */
export interface Resource {
  readonly path: string
  readonly pathname: string
  readonly groups: Map<string, Group>
  /** Subscriptions waiting for their snapshot. */
  readonly pending: Set<Subscription>
  /** Snapshot replays not yet started or in flight, by context key. */
  readonly flights: Map<string, SnapshotFlight>
}

/**
 * The two-way index of subscriptions: path → resource → groups → subscriptions, and (on each
 * connection) path → subscription, so fan-out and cleanup are both proportional to their answer.
 * Every registry is a Map, never a plain object.
 */
export class Registry {
  private readonly resources = new Map<string, Resource>()
  private readonly byPathname = new Map<string, Set<Resource>>()

  /** Resources with at least one subscription (live or pending). */
  get size(): number {
    return this.resources.size
  }

  /** The resource of `path`, created when missing. */
  resource(path: string): Resource {
    let resource = this.resources.get(path)
    if (!resource) {
      const pathname = pathnameOf(path)
      resource = { path, pathname, groups: new Map(), pending: new Set(), flights: new Map() }
      this.resources.set(path, resource)
      let variants = this.byPathname.get(pathname)
      if (!variants) this.byPathname.set(pathname, (variants = new Set()))
      variants.add(resource)
    }
    return resource
  }

  /** Every subscribed path (query included). */
  paths(): string[] {
    return [...this.resources.keys()]
  }

  /** The resource of exactly `path` (query included), if anyone subscribes to it. */
  get(path: string): Resource | undefined {
    return this.resources.get(path)
  }

  /**
   * The resources a change to `path` reaches: every query variant of a path without a query, or
   * exactly the given variant.
   */
  affectedBy(path: string): Iterable<Resource> {
    if (path.includes('?')) {
      const resource = this.resources.get(path)
      return resource ? [resource] : []
    }
    return this.byPathname.get(path) ?? []
  }

  /** The group `key` of `resource`, created when missing. */
  group(resource: Resource, key: string): Group {
    let group = resource.groups.get(key)
    if (!group) {
      group = {
        key,
        resource,
        members: new Set(),
        state: 'idle',
        dirty: false,
        origin: undefined,
        attempts: 0,
        retryTimer: undefined,
      }
      resource.groups.set(key, group)
    }
    return group
  }

  /** Takes `subscription` out of every index; drops its group and resource when they become empty. */
  remove(subscription: Subscription): void {
    const { connection, path, resource, group } = subscription
    if (connection.subscriptions.get(path) === subscription) connection.subscriptions.delete(path)
    resource.pending.delete(subscription)
    for (const flight of resource.flights.values()) flight.subscribers.delete(subscription)
    if (group) {
      group.members.delete(subscription)
      subscription.group = undefined
      if (group.members.size === 0) {
        clearTimeout(group.retryTimer)
        group.retryTimer = undefined
        resource.groups.delete(group.key)
      }
    }
    this.dropIfEmpty(resource)
  }

  /** Forgets `resource` when nothing subscribes to it any more. */
  dropIfEmpty(resource: Resource): void {
    if (resource.groups.size > 0 || resource.pending.size > 0) return
    if (this.resources.get(resource.path) !== resource) return
    this.resources.delete(resource.path)
    const variants = this.byPathname.get(resource.pathname)
    variants?.delete(resource)
    if (variants?.size === 0) this.byPathname.delete(resource.pathname)
  }
}
