import type { ChangeCause } from './telemetry'
import { pathnameOf } from './paths'
import type { ReplayContext, UpgradeRequest } from './replay'
import type { Ticket } from './scheduler'
import type { LastState } from './states'
import type { HubSocket } from './socket'
import { kindOf, type GroupKind } from './sharing'

/** One open socket. */
export interface Connection {
  readonly id: string
  readonly socket: HubSocket
  /** What is kept of the upgrade request (with the token of the last `auth`), for `identify` and replays. */
  request: UpgradeRequest
  /** The replay context of `request` (SPEC §2.9), made from it when asked for. */
  readonly context: ReplayContext
  /** The key of `context`: equal keys, interchangeable replays. */
  readonly contextKey: string
  /**
   * The key of the group of its own request (`groupKey.own(contextKey)`): one string per socket,
   * shared by the identity of each of its subscriptions (and the key its snapshot flights are filed
   * under); set again with `request` when the credentials change.
   */
  ownKey: string
  /** The key of what may change a public body for this socket (Host, scheme); see `sharing.ts`. */
  publicKey: string
  /**
   * The path the app is served under for this socket (`basePath`, or a trusted proxy's
   * `X-Forwarded-Prefix`), or `''`: subscribed paths below it are replayed without it.
   */
  readonly prefix: string
  readonly subscriptions: Map<string, Subscription>
  /** The socket speaks `listenjs.v1.1`: it may get patches. */
  readonly patches: boolean
  awaitingPong: boolean
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
  /** The path (and query) as subscribed: `resource.path`, the same string for every subscriber. */
  readonly path: string
  readonly resource: Resource
  /**
   * The key of the group this subscription belongs in (see `sharing.ts`); it may sit in its `own`
   * group for a while when a shared answer could not be shared. The connection's `ownKey`, or the key
   * of the resource's group of that identity when there is one: a string shared, not one per
   * subscription.
   */
  readonly identity: string
  /**
   * It asked to wait for a missing resource (`missing: 'wait'`): a snapshot answering 404 or 410
   * keeps it (as `gone`) instead of refusing it.
   */
  readonly wait: boolean
  /** The group it is in; undefined while its snapshot is pending. */
  group: Group | undefined
  /** The snapshot replay it waits for; undefined once delivered. */
  flight: SnapshotFlight | undefined
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
  readonly kind: GroupKind
  readonly resource: Resource
  /** The request public groups are replayed with (no member's); others use a member's. */
  readonly context: ReplayContext | undefined
  readonly members: Set<Subscription>
  state: 'idle' | 'queued' | 'running'
  dirty: boolean
  /**
   * The connection whose own write caused the changes the next replay answers: `undefined` when
   * none is pending, `null` when several (or an untagged one) did.
   */
  origin: string | null | undefined
  /** The earliest change the next replay answers, when one carried its cause (for telemetry). */
  cause: ChangeCause | undefined
  attempts: number
  retryTimer: NodeJS.Timeout | undefined
  /** Its queued replay, cancelled when the last member leaves. */
  ticket: Ticket | undefined
  /** Its last state, kept for patches while a member takes them (see `states.ts`). */
  last: LastState | undefined
}

/** A snapshot replay shared by the subscribers with one replay context that arrive while it is on. */
export interface SnapshotFlight {
  /** The key it is filed under in `Resource.flights`: its subscribers' `ownKey` (their context's). */
  readonly key: string
  readonly subscribers: Set<Subscription>
  readonly context: ReplayContext
  /** A change reached the path after this replay was queued: its result may be old. */
  stale: boolean
  /** Its queued replay, cancelled when the last subscriber leaves. */
  ticket: Ticket | undefined
}

/** Everything subscribed to one path with one query string. */
export interface Resource {
  /** Its key in the registry. */
  readonly key: string
  /** The path (and query) as subscribed: what frames name. */
  readonly path: string
  /** The app's path for it (`path` without the base path it was subscribed with): what is replayed. */
  readonly target: string
  readonly pathname: string
  readonly groups: Map<string, Group>
  /** Subscriptions waiting for their snapshot. */
  readonly pending: Set<Subscription>
  /** Snapshot replays not yet started or in flight, by context key. */
  readonly flights: Map<string, SnapshotFlight>
  /** Other pathnames that reach it: the router's canonical path and `Content-Location` of its GET. */
  aliases: Set<string> | undefined
  /**
   * The version its last snapshot answered: the subscribers that get an equal version keep this one
   * string, not one each (see {@link Registry.version}).
   */
  version: string | undefined
}

/** The most aliases one resource keeps (each is what the app itself said about the path). */
const MAX_ALIASES = 4

/**
 * The two-way index of subscriptions: path → resource → groups → subscriptions, and (on each
 * connection) path → subscription, so fan-out and cleanup are both proportional to their answer.
 * Every registry is a Map, never a plain object.
 */
export class Registry {
  private readonly resources = new Map<string, Resource>()
  private readonly byPathname = new Map<string, Set<Resource>>()
  private subscriptions = 0

  /** `dropped`: called with each group that loses its last member. */
  constructor(private readonly dropped: (group: Group) => void = () => {}) {}

  /** Subscriptions, live or waiting for their snapshot. */
  get count(): number {
    return this.subscriptions
  }

  /** Resources with at least one subscription (live or pending). */
  get size(): number {
    return this.resources.size
  }

  /**
   * The resource subscribed to as `path`, replayed as `target` (the app's path for it: `path` without
   * the connection's base path), created when missing.
   */
  resource(path: string, target: string = path): Resource {
    // A space cannot be in a valid path: the key of a prefixed resource cannot be anyone's path.
    const key = target === path ? path : `${path} ${target}`
    let resource = this.resources.get(key)
    if (!resource) {
      const pathname = pathnameOf(target)
      resource = {
        key,
        path,
        target,
        pathname,
        groups: new Map(),
        pending: new Set(),
        flights: new Map(),
        aliases: undefined,
        version: undefined,
      }
      this.resources.set(key, resource)
      this.index(pathname, resource)
    }
    return resource
  }

  /**
   * `version`, answered by a snapshot replay of `resource`, as the string its subscribers keep: the
   * one kept already when it is equal (every subscriber of a shared resource then holds one string,
   * where each snapshot replay made its own), else `version`, kept for the next snapshot.
   */
  version(resource: Resource, version: string): string {
    if (resource.version === version) return resource.version
    resource.version = version
    return version
  }

  /** Indexes a new subscription: on its connection and as waiting for its snapshot. */
  add(subscription: Subscription): void {
    subscription.connection.subscriptions.set(subscription.path, subscription)
    subscription.resource.pending.add(subscription)
    this.subscriptions++
  }

  /**
   * Makes changes to `pathname` reach `resource` too (the router's canonical path for it, or the
   * `Content-Location` of its GET). A resource keeps a few such aliases at most.
   */
  alias(resource: Resource, pathname: string): void {
    if (pathname === resource.pathname || resource.aliases?.has(pathname)) return
    if (this.resources.get(resource.key) !== resource) return
    resource.aliases ??= new Set()
    if (resource.aliases.size >= MAX_ALIASES) return
    resource.aliases.add(pathname)
    this.index(pathname, resource)
  }

  /** {@link Registry.alias} for each of `pathnames`. */
  aliasAll(resource: Resource, pathnames: readonly string[]): void {
    for (const pathname of pathnames) this.alias(resource, pathname)
  }

  private index(pathname: string, resource: Resource): void {
    let variants = this.byPathname.get(pathname)
    if (!variants) this.byPathname.set(pathname, (variants = new Set()))
    variants.add(resource)
  }

  private unindex(pathname: string, resource: Resource): void {
    const variants = this.byPathname.get(pathname)
    variants?.delete(resource)
    if (variants?.size === 0) this.byPathname.delete(pathname)
  }

  /** Every subscribed app path (query included), once each. */
  paths(): string[] {
    return [...new Set([...this.resources.values()].map((resource) => resource.target))]
  }

  /** The resources replayed as exactly `path` (query included), whatever base path they were subscribed with. */
  exact(path: string): Resource[] {
    const variants = this.byPathname.get(pathnameOf(path))
    return variants ? [...variants].filter((resource) => resource.target === path) : []
  }

  /**
   * The resources a change to the app path `path` reaches: every query variant of a path without a
   * query (and every resource aliased to it), or exactly the given variant.
   */
  affectedBy(path: string): Iterable<Resource> {
    if (path.includes('?')) return this.exact(path)
    return this.byPathname.get(path) ?? []
  }

  /**
   * The group `key` of `resource`, created when missing. `context`: the request a public group is
   * replayed with (ignored for other kinds and for an existing group).
   */
  group(resource: Resource, key: string, context?: () => ReplayContext): Group {
    let group = resource.groups.get(key)
    if (!group) {
      const kind = kindOf(key)
      group = {
        key,
        kind,
        resource,
        context: kind === 'public' || kind === 'route' ? context?.() : undefined,
        members: new Set(),
        state: 'idle',
        dirty: false,
        origin: undefined,
        cause: undefined,
        attempts: 0,
        retryTimer: undefined,
        ticket: undefined,
        last: undefined,
      }
      resource.groups.set(key, group)
    }
    return group
  }

  /** Puts a subscription whose snapshot was delivered (or that moves) in `group`. */
  join(subscription: Subscription, group: Group): void {
    if (subscription.group === group) return
    if (subscription.group) this.leaveGroup(subscription, subscription.group)
    group.members.add(subscription)
    subscription.group = group
  }

  /**
   * Takes `subscription` out of every index and counts it gone; drops its group and resource when
   * they become empty, cancelling their queued replays. Removing it twice does nothing.
   */
  remove(subscription: Subscription): void {
    const { connection, path, resource, group } = subscription
    if (connection.subscriptions.get(path) !== subscription) return
    connection.subscriptions.delete(path)
    this.subscriptions--
    resource.pending.delete(subscription)
    const flight = subscription.flight
    subscription.flight = undefined
    if (flight && flight.subscribers.delete(subscription) && flight.subscribers.size === 0) {
      // Nobody waits for this snapshot any more: it never runs.
      flight.ticket?.cancel()
      if (resource.flights.get(flight.key) === flight) resource.flights.delete(flight.key)
    }
    if (group) this.leaveGroup(subscription, group)
    this.dropIfEmpty(resource)
  }

  private leaveGroup(subscription: Subscription, group: Group): void {
    group.members.delete(subscription)
    subscription.group = undefined
    if (group.members.size > 0) return
    clearTimeout(group.retryTimer)
    group.retryTimer = undefined
    group.ticket?.cancel()
    group.ticket = undefined
    this.dropped(group)
    if (group.resource.groups.get(group.key) === group) group.resource.groups.delete(group.key)
  }

  /** Forgets `resource` when nothing subscribes to it any more. */
  dropIfEmpty(resource: Resource): void {
    if (resource.groups.size > 0 || resource.pending.size > 0) return
    if (this.resources.get(resource.key) !== resource) return
    this.resources.delete(resource.key)
    this.unindex(resource.pathname, resource)
    for (const alias of resource.aliases ?? []) this.unindex(alias, resource)
  }
}
