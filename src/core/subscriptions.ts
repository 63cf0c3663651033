/**
 * Subscribing (SPEC §2.2): a path is checked (shape, the `paths` option, the per-socket bound), the
 * `authorize` hook may refuse it, and its first state is a snapshot replay made with the
 * subscriber's own request, shared only by subscribers with the very same request that arrive while
 * it waits. The answer joins the subscription to its group, or refuses it; a 404 or 410 for a
 * subscription that waits for its resource (`missing: 'wait'`) joins it as `gone`. Re-authentication
 * and unsubscribing live here too.
 */
import { dataFrame, errorFrame, goneFrame, subscribedFrame } from './frames'
import type { Kernel } from './kernel'
import { PUBLIC, type Authorize } from './options'
import type { Outbox } from './outbox'
import { checkPath, pathnameOf } from './paths'
import type { ErrorCode } from './protocol'
import { GONE, refusal, type Pushes } from './pushes'
import type { Connection, Resource, SnapshotFlight, Subscription } from './registry'
import type { UpgradeRequest } from './replay'
import type { ReplayOutcome } from './types'
import { belowPrefix } from './proxy'
import { groupFor, groupKey, ownKeyOf } from './sharing'

export class Subscriptions {
  constructor(
    private readonly kernel: Kernel,
    private readonly outbox: Outbox,
    private readonly pushes: Pushes,
  ) {}

  /**
   * Subscribes `connection` to `path`; `heldVersion` is the state a reconnecting client holds; `wait`:
   * a missing resource is answered `gone` and the subscription kept (`missing: 'wait'`).
   */
  subscribe(connection: Connection, path: string, heldVersion: string | undefined, wait = false): void {
    if (connection.subscriptions.has(path)) return
    const { limits } = this.kernel.options
    const reason = checkPath(path, limits.pathLength)
    if (reason !== undefined) return this.refuse(connection, 'bad_path', reason, path)
    // The app's path for it: below the base path the app is served under, without it.
    const target = belowPrefix(path, connection.prefix)
    if (!this.pathAllowed(target, connection.request)) {
      return this.refuse(connection, 'unauthorized', 'path not allowed', path, 403)
    }
    if (connection.subscriptions.size >= limits.subscriptionsPerSocket) {
      return this.refuse(
        connection,
        'limit',
        `at most ${limits.subscriptionsPerSocket} subscriptions per socket`,
        path,
      )
    }
    const { registry, options } = this.kernel
    const resource = registry.resource(path, target)
    const identity = this.identityOf(connection, target)
    const subscription: Subscription = {
      connection,
      // Strings kept per subscription are shared: the resource's path, and the key of the group of
      // this identity when the resource has one already.
      path: resource.path,
      resource,
      identity: resource.groups.get(identity)?.key ?? identity,
      wait,
      group: undefined,
      flight: undefined,
      version: heldVersion,
      seq: 0,
    }
    registry.add(subscription)
    if (options.authorize) void this.authorizeThenJoin(subscription, options.authorize, target)
    else this.joinSnapshot(subscription)
  }

  /** Ends a subscription (the client asked, or the app refused it), dropping what waited for it. */
  unsubscribe(subscription: Subscription): void {
    this.kernel.registry.remove(subscription)
    this.outbox.forget(subscription.connection, subscription.path)
    this.kernel.emit('unsubscribe', { id: subscription.connection.id, path: subscription.path })
  }

  /**
   * New credentials: every path the socket holds is checked again with them (an unchanged one
   * answers `subscribed`). Its subscriptions leave their groups and snapshot replays at once, in this
   * turn, so that no replay made with the new credentials can serve a group the old ones joined,
   * and no replay made with the old ones reaches it; replays nobody waits for any more are dropped.
   */
  reauthenticate(connection: Connection, request: UpgradeRequest): void {
    connection.request = request
    connection.ownKey = ownKeyOf(request)
    const held = [...connection.subscriptions.values()]
    for (const subscription of held) this.kernel.registry.remove(subscription)
    for (const { path, version, wait } of held) this.subscribe(connection, path, version, wait)
  }

  /** Sends an error about `path` to one socket; the socket stays open. */
  private refuse(
    connection: Connection,
    code: ErrorCode,
    message: string,
    path: string,
    status?: number,
  ): void {
    this.outbox.send(connection, path, errorFrame(code, message, path, status))
  }

  /** Whether the `paths` option lets anyone subscribe to `path` (SPEC §5: replays bypass a proxy's rules). */
  private pathAllowed(path: string, request: UpgradeRequest): boolean {
    const { paths, logger } = this.kernel.options
    if (paths === undefined) return true
    if (typeof paths === 'function') {
      try {
        return paths(path, request) === true
      } catch (error) {
        logger.error({ err: error, path }, 'listenjs: paths threw; refusing the subscription')
        return false
      }
    }
    const pathname = pathnameOf(path)
    return paths.some(
      (prefix) =>
        pathname === prefix ||
        (pathname.startsWith(prefix) && (prefix.endsWith('/') || pathname.charCodeAt(prefix.length) === 47)),
    )
  }

  /** The key of the group a subscription of `connection` to `path` belongs in (see `sharing.ts`). */
  private identityOf(connection: Connection, path: string): string {
    const { identify, logger } = this.kernel.options
    if (identify) {
      try {
        const chosen = identify(path, connection.request)
        if (chosen === PUBLIC) return groupKey.public(connection.publicKey)
        if (typeof chosen === 'string') return groupKey.identified(connection.publicKey, chosen)
      } catch (error) {
        logger.error({ err: error, path }, 'listenjs: identify threw; using the default identity')
      }
    }
    return connection.ownKey
  }

  /** Runs the `authorize` hook, then the snapshot replay, or refuses with 403 and no replay at all. */
  private async authorizeThenJoin(
    subscription: Subscription,
    authorize: Authorize,
    target: string,
  ): Promise<void> {
    const { connection, path, resource } = subscription
    let allowed = false
    try {
      allowed = (await this.kernel.inScope(() => authorize(target, connection.request))) === true
    } catch (error) {
      this.kernel.options.logger.error(
        { err: error, path },
        'listenjs: authorize threw; refusing the subscription',
      )
    }
    // Unsubscribed, disconnected or re-authenticated meanwhile.
    if (!resource.pending.has(subscription)) return
    if (allowed) return this.joinSnapshot(subscription)
    this.kernel.registry.remove(subscription)
    this.refuse(connection, 'unauthorized', 'not authorized', path, 403)
  }

  /**
   * Queues a snapshot replay for a new subscription, or joins one already waiting for the same
   * replay context (a reconnect storm costs one replay per context, not one per socket). The
   * snapshot is always made with the subscriber's own request, and charged to its connection.
   */
  private joinSnapshot(subscription: Subscription): void {
    const { resource, connection } = subscription
    const key = connection.ownKey
    subscription.flight = resource.flights.get(key)
    if (subscription.flight) {
      subscription.flight.subscribers.add(subscription)
      return
    }
    const flight: SnapshotFlight = {
      key,
      subscribers: new Set([subscription]),
      context: connection.context,
      stale: false,
      ticket: undefined,
    }
    subscription.flight = flight
    resource.flights.set(key, flight)
    // The job may start at once; cancelling a started job does nothing.
    flight.ticket = this.kernel.queue.push(connection, () => this.runSnapshot(resource, flight))
  }

  private async runSnapshot(resource: Resource, flight: SnapshotFlight): Promise<void> {
    const { kernel } = this
    const { registry, options } = kernel
    flight.ticket = undefined
    if (flight.subscribers.size === 0 || kernel.closing) {
      if (resource.flights.get(flight.key) === flight) resource.flights.delete(flight.key)
      return
    }
    const seq = kernel.nextSeq()
    const trace = kernel.traceReplay(resource.path, 'snapshot')
    const started = performance.now()
    const result = await kernel.replay(flight.context, resource.target, trace)
    const answeredAt = performance.now()
    const durationMs = answeredAt - started
    if (resource.flights.get(flight.key) === flight) resource.flights.delete(flight.key)
    if (kernel.closing) return
    const { status } = result
    const ok = status >= 200 && status <= 299
    const missing = status === 404 || status === 410
    if (ok) registry.aliasAll(resource, result.aliases)
    const version = ok ? registry.version(resource, result.version) : result.version
    let frame: Buffer | undefined
    let gone: Buffer | undefined
    // What became of it, for the `replay` event: the answer's, once a subscriber took it.
    let outcome: ReplayOutcome | undefined
    const hold = kernel.moreFramesComing(true)
    for (const subscription of flight.subscribers) {
      if (!resource.pending.delete(subscription)) continue
      subscription.flight = undefined
      const { connection, path } = subscription
      if (!ok && !(missing && subscription.wait)) {
        registry.remove(subscription)
        const [code, message] = refusal(status, true)
        this.refuse(connection, code, message, path, status)
        outcome ??= code === 'failed' ? 'failed' : 'refused'
        continue
      }
      // An absence an `identify` group may not share puts it in its own group, as after a split; it
      // goes back to the shared one when its own replay answers 2xx (see `groupFor`).
      const group = groupFor(registry, subscription, result, options.trustProxy)
      registry.join(subscription, group)
      subscription.seq = seq
      if (!ok) {
        // Waiting for the resource: it holds `gone`, so whatever state comes next is news.
        subscription.version = GONE
        this.outbox.send(connection, path, (gone ??= goneFrame(path, status)), hold)
        outcome = 'gone'
      } else {
        // What the next change is a patch from, for the members that take patches (a group that
        // keeps a state has some).
        const patches = connection.patches || group.last !== undefined
        kernel.states.keep(group, version, result.body, result.contentType, seq, patches)
        if (subscription.version === version) {
          // A resubscription holding the current state: confirm it, send nothing again.
          subscription.version = version
          this.outbox.send(connection, path, subscribedFrame(path, version), hold)
          outcome ??= 'unchanged'
        } else {
          subscription.version = version
          frame ??= dataFrame(path, version, result.body, result.contentType, true)
          this.outbox.send(connection, path, frame, hold)
          outcome = 'changed'
        }
      }
      kernel.emit('subscribe', { id: connection.id, path })
      // A change reached the path while this replay was on: its answer may predate the change.
      if (flight.stale) this.pushes.schedule(group, null)
    }
    registry.dropIfEmpty(resource)
    if (outcome === undefined) return
    const event = { path: resource.path, kind: 'snapshot', outcome, status, durationMs } as const
    kernel.replayed(event, result.route, answeredAt, trace)
  }
}
