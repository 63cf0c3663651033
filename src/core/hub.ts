import { AsyncResource } from 'node:async_hooks'
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import type { Backplane, BackplaneMessage, BackplaneStatus, ChangeMessage } from './backplane'
import { memoryBackplane } from './backplane'
import { createEndpoint, type Endpoint } from './endpoint'
import { ListenjsError } from './errors'
import {
  dataFrame,
  errorFrame,
  goneFrame,
  payloadFrame,
  PING_FRAME,
  subscribedFrame,
  welcomeFrame,
} from './frames'
import { resolveOptions, PUBLIC, type Authorize, type HubOptions, type ResolvedOptions } from './options'
import { checkPath, expandChange, pathnameOf } from './paths'
import { CLIENT_HEADER, CloseCode, parseClientMessage, type ErrorCode } from './protocol'
import { ReplayQueue } from './queue'
import {
  Registry,
  type Connection,
  type Group,
  type HubSocket,
  type Resource,
  type SnapshotFlight,
  type Subscription,
} from './registry'
import {
  contextFromRequest,
  contextKey,
  credentialsKey,
  dispatcherFor,
  failedReplay,
  isInsideReplay,
  isReplayRequest,
  markReplayRoute,
  replayGet,
  upgradeRequestOf,
  versionOf,
  withToken,
  type Dispatch,
  type ReplayContext,
  type ReplayResult,
  type UpgradeRequest,
} from './replay'

/**
 * What a route may say about itself: Fastify route `config.listenjs`, Express `res.locals.listenjs`,
 * Koa `ctx.state.listenjs`.
 */
export interface RouteOptions {
  /** `false`: a successful mutation on this route changes nothing by itself. @default true */
  notify?: boolean
  /** More paths this route changes (each with its ancestors when `notifyAncestors` is on). */
  changes?: readonly string[]
  /** On a GET route: the answer is the same for everyone, so one replay serves every subscriber. */
  public?: boolean
}

/**
 * The route a framework matched for a request: its template as declared (`/items/:id`, prefixes
 * included) and the decoded params. The hub fills the template to key a change the way the router
 * saw it, whatever spelling the client used.
 */
export interface RouteMatch {
  readonly template: string
  readonly params: Readonly<Record<string, unknown>>
}

/** An `http` or `https` server the hub can attach to. */
export type AttachableServer = Server | HttpsServer

/** Counters returned by {@link Hub.stats}. */
export interface HubStats {
  /** Open sockets. */
  connections: number
  /** Subscriptions, live or waiting for their snapshot. */
  subscriptions: number
  /** Distinct paths (with query) subscribed to. */
  resources: number
  /** Frames sent to sockets since the hub started (data, gone and error). */
  messagesSent: number
  /** Replays completed since the hub started. */
  replays: number
  /** Replays running now. */
  replaysInFlight: number
  /** Replays waiting for a slot. */
  replaysQueued: number
  /** Bytes waiting to be written to sockets, unsent and collapsed (slow consumers), summed over sockets. */
  pendingBytes: number
  /** States that replaced an older unsent state of the same path for a slow socket. */
  collapsed: number
  /** Sockets closed with 4509 because they fell behind past `limits.hardPendingBytes`. */
  slowClosed: number
  /** The backplane's state: `memory` (one process), or `connected`/`disconnected`/… for Redis. */
  backplane: BackplaneStatus
}

/** Payload of the `connect` event. */
export interface ConnectEvent {
  readonly id: string
  readonly remoteAddress: string
}
/** Payload of the `subscribe` and `unsubscribe` events. */
export interface SubscriptionEvent {
  readonly id: string
  readonly path: string
}
/** Payload of the `push` event: a state sent to `recipients` subscribers of `path`. */
export interface PushEvent {
  readonly path: string
  readonly version: string
  readonly recipients: number
}
/** Payload of the `disconnect` event. */
export interface DisconnectEvent {
  readonly id: string
  readonly code: number
}

/** The hub's events, for observing it across the stack. Listeners that throw are logged, not rethrown. */
export interface HubEvents {
  connect: [ConnectEvent]
  subscribe: [SubscriptionEvent]
  unsubscribe: [SubscriptionEvent]
  push: [PushEvent]
  disconnect: [DisconnectEvent]
}

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const PUBLIC_GROUP = 'public'
const MAX_RETRY_DELAY_MS = 30_000
/** How long a socket closed for being too slow may take to read its close frame. */
const SLOW_CLOSE_GRACE_MS = 5000
/** The version a subscriber holds after `gone`. */
const GONE = 'gone'

/**
 * The framework-neutral heart of listenjs: WebSocket endpoint, subscriptions, replays and fan-out.
 * Create it with {@link createHub}, or let an adapter create it.
 */
export class Hub extends EventEmitter<HubEvents> {
  /** The options in force, defaults applied. */
  readonly options: ResolvedOptions
  private readonly registry = new Registry()
  private readonly connections = new Map<string, Connection>()
  private readonly queue: ReplayQueue
  private readonly backplane: Backplane
  private readonly unsubscribeBackplane: () => void
  private readonly endpoint: Endpoint
  private readonly attached = new Map<
    AttachableServer,
    (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  >()
  /** The async context the hub was created in; replays and timers run in it, not in a request's. */
  private readonly scope = new AsyncResource('listenjs.hub')
  private dispatch: Dispatch | undefined
  /** Paths changed since the last flush, with the connection whose own write changed them (null: several or untagged). */
  private pendingChanges = new Map<string, string | null>()
  /** Numbers every replay in the order replays start (see `Subscription.seq`). */
  private seq = 0
  private flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined
  private readonly recheckTimers = new Set<NodeJS.Timeout>()
  private heartbeatTimer: NodeJS.Timeout | undefined
  /** Sockets that have not sent a message yet, with their deadline, oldest first. */
  private readonly silent = new Map<Connection, number>()
  private silentTimer: NodeJS.Timeout | undefined
  private pongTimer: NodeJS.Timeout | undefined
  private readonly tracked = new WeakSet<IncomingMessage>()
  private warnedLoop = false
  private closing: Promise<void> | undefined
  private counters = { messagesSent: 0, replays: 0, subscriptions: 0, collapsed: 0, slowClosed: 0 }

  /**
   * @param options - see {@link HubOptions}; every field has a default
   * @throws ListenjsError `invalid_option` when an option is wrong
   */
  constructor(options: HubOptions = {}) {
    super()
    this.options = resolveOptions(options)
    this.queue = new ReplayQueue(this.options.replayConcurrency, (job) => this.scope.runInAsyncScope(job))
    this.backplane = options.backplane ?? memoryBackplane()
    this.unsubscribeBackplane = this.backplane.subscribe((message) => this.receive(message))
    this.endpoint = createEndpoint<Connection>(this.options, {
      open: (socket, request) => this.connect(socket, request),
      message: (connection, data, isBinary) => this.onMessage(connection, data, isBinary),
      ping: (connection) => {
        if (this.takeToken(connection)) return true
        this.closeConnection(connection, CloseCode.TooManyMessages, 'too many pings')
        return false
      },
      drained: (connection) => this.flushParked(connection),
      closed: (connection, code) => this.dropConnection(connection, code),
    })
  }

  // -------------------------------------------------------------------------------------------
  // Public API

  /**
   * Serves the WebSocket endpoint on `server` (upgrades on `options.path` only; other upgrades are
   * left to other listeners) and replays GETs through its request handler. The first attached
   * server is the one replays go to. Attaching the same server twice does nothing.
   * @returns the hub, for chaining
   */
  attach(server: AttachableServer): this {
    if (this.attached.has(server)) return this
    if (this.closing) throw new ListenjsError('closed', 'listenjs: the hub is closed')
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      this.endpoint.handleUpgrade(req, socket, head, server)
    }
    this.attached.set(server, onUpgrade)
    server.on('upgrade', onUpgrade)
    this.dispatch ??= dispatcherFor(server as Server)
    this.startHeartbeat()
    return this
  }

  /**
   * Marks `path` changed (and its ancestors, unless `notifyAncestors` is off), as a successful
   * mutation would: every subscriber gets a fresh replay. With `payload`, sends `payload` as-is to
   * every subscriber of exactly that path and query instead; this bypasses per-user views and counts
   * as the last state sent. Called while serving a replay, it does nothing (and warns once).
   * @throws ListenjsError `bad_path` when the path is not acceptable; a TypeError when the payload
   *   cannot be serialized to JSON
   */
  notify(path: string, payload?: unknown): void {
    const reason = checkPath(path, this.options.limits.pathLength)
    if (reason !== undefined) throw new ListenjsError('bad_path', `listenjs: ${reason}`, { path })
    if (this.ignoredInReplay()) return
    if (payload === undefined) {
      this.publishChange([path])
      return
    }
    const json = JSON.stringify(payload)
    if (json === undefined) throw new TypeError('listenjs: notify payload must be serializable to JSON')
    this.backplane.publish({ kind: 'payload', path, payload })
  }

  /**
   * Watches one HTTP request: when a POST, PUT, PATCH or DELETE on it ends with a 2xx status (on
   * `finish`, or on `close` once the status was sent), its path changes. `route` is read when the
   * response ends, so a handler can still set its options. The adapters call this for every request;
   * calling it twice for one request does nothing.
   * @param path - the request's path as the client sent it (the query is ignored)
   */
  track(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    route: () => RouteOptions | undefined,
    _routed?: () => RouteMatch | undefined,
  ): void {
    if (this.tracked.has(req)) return
    this.tracked.add(req)
    if (isReplayRequest(req)) {
      res.once('finish', () => markReplayRoute(req, route()))
      return
    }
    if (!MUTATIONS.has(req.method ?? '')) return
    let done = false
    const ended = (): void => {
      if (done) return
      done = true
      const status = res.statusCode
      if (status < 200 || status > 299 || !(res.writableFinished || res.headersSent)) return
      const options = route()
      const paths = [...(options?.notify === false ? [] : [pathnameOf(path)]), ...(options?.changes ?? [])]
      const valid = paths.filter((p) => checkPath(p, this.options.limits.pathLength) === undefined)
      if (valid.length === 0) return
      const tag = req.headers[CLIENT_HEADER]
      this.publishChange(
        valid,
        typeof tag === 'string' ? { id: tag, credentials: credentialsKey(req.headers) } : undefined,
      )
    }
    res.once('finish', ended)
    res.once('close', ended)
  }

  /**
   * Closes every socket for which `predicate` returns true, e.g. those of a user who logged out:
   * `hub.disconnect((c) => sessionOf(c.request) === sid)`. The client reconnects with backoff, with
   * the credentials it has then, and each path is checked again.
   * @param code - the close code; by default 4403 (`CloseCode.Revoked`)
   * @returns how many sockets were closed
   */
  disconnect(
    predicate: (connection: { readonly id: string; readonly request: UpgradeRequest }) => boolean,
    code: number = CloseCode.Revoked,
  ): number {
    let closed = 0
    for (const connection of [...this.connections.values()]) {
      if (connection.closed || !predicate({ id: connection.id, request: connection.request })) continue
      this.closeConnection(connection, code, 'disconnected by the app')
      closed++
    }
    return closed
  }

  /** Counters for monitoring. */
  stats(): HubStats {
    return {
      connections: this.connections.size,
      subscriptions: this.counters.subscriptions,
      resources: this.registry.size,
      messagesSent: this.counters.messagesSent,
      replays: this.counters.replays,
      replaysInFlight: this.queue.inFlight,
      replaysQueued: this.queue.size,
      pendingBytes: [...this.connections.values()].reduce(
        (sum, c) => sum + c.socket.bufferedAmount() + c.parkedBytes,
        0,
      ),
      collapsed: this.counters.collapsed,
      slowClosed: this.counters.slowClosed,
      backplane: this.backplane.status?.() ?? 'memory',
    }
  }

  /**
   * Closes every socket (1001 going away, or 1012 when `restart` is true, which clients treat as
   * "reconnect soon"), stops every timer, detaches from every server and closes the backplane.
   * Resolves when every socket has closed (sockets that do not finish the closing handshake within
   * one second are terminated). Calling it again returns the same promise.
   */
  close(options: { restart?: boolean } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.restart === true ? CloseCode.ServiceRestart : CloseCode.GoingAway)
    return this.closing
  }

  // -------------------------------------------------------------------------------------------
  // Sockets

  private connect(socket: HubSocket, req: IncomingMessage): Connection {
    const request = upgradeRequestOf(req)
    const connection: Connection = {
      id: randomUUID(),
      socket,
      request,
      contextKey: contextKey(request),
      subscriptions: new Map(),
      awaitingPong: false,
      recheck: undefined,
      spoke: false,
      tokens: this.options.limits.messageBurst,
      tokensAt: Date.now(),
      closed: false,
      parked: undefined,
      parkedBytes: 0,
    }
    this.connections.set(connection.id, connection)
    this.expectFirstMessage(connection)
    const { intervalMs, timeoutMs } = this.options.heartbeat
    socket.send(welcomeFrame(connection.id, intervalMs, timeoutMs))
    this.safeEmit('connect', { id: connection.id, remoteAddress: request.remoteAddress })
    return connection
  }

  /**
   * Closes `connection` with 4407 unless it sends a message within `limits.firstMessageMs`. Every
   * deadline is the same span after its socket opened, so one timer serves all of them, set for the
   * oldest.
   */
  private expectFirstMessage(connection: Connection): void {
    const ms = this.options.limits.firstMessageMs
    this.silent.set(connection, Date.now() + ms)
    if (this.silentTimer) return
    const expire = (): void => {
      this.silentTimer = undefined
      const now = Date.now()
      for (const [waiting, deadline] of this.silent) {
        if (deadline > now) {
          this.silentTimer = setTimeout(expire, deadline - now).unref()
          return
        }
        this.silent.delete(waiting)
        this.closeConnection(waiting, CloseCode.FirstMessageTimeout, 'no message')
      }
    }
    this.scope.runInAsyncScope(() => {
      this.silentTimer = setTimeout(expire, ms).unref()
    })
  }

  private onMessage(connection: Connection, data: Buffer, isBinary: boolean): void {
    if (connection.closed) return
    if (!connection.spoke) {
      connection.spoke = true
      this.silent.delete(connection)
    }
    connection.awaitingPong = false
    if (!this.takeToken(connection)) {
      this.closeConnection(connection, CloseCode.TooManyMessages, 'too many messages')
      return
    }
    const parsed = parseClientMessage(isBinary ? data : data.toString('utf8'))
    if (!parsed.ok) {
      connection.socket.send(errorFrame('bad_message', parsed.reason))
      this.closeConnection(connection, CloseCode.BadMessage, 'bad message')
      return
    }
    const message = parsed.message
    switch (message.type) {
      case 'subscribe':
        this.subscribe(connection, message.path, message.version)
        return
      case 'unsubscribe': {
        const subscription = connection.subscriptions.get(message.path)
        if (subscription) this.unsubscribe(subscription)
        return
      }
      case 'auth':
        // New credentials re-check every path the socket holds: that work is paid for in rate-limit
        // tokens, one per subscription, so a flood of `auth` messages is cut off, not served.
        if (!this.takeToken(connection, connection.subscriptions.size)) {
          this.closeConnection(connection, CloseCode.TooManyMessages, 'too many messages')
          return
        }
        connection.request = withToken(connection.request, message.token)
        connection.contextKey = contextKey(connection.request)
        this.recheck(connection)
        return
      case 'pong':
        return
    }
  }

  /**
   * Checks the paths `connection` holds again with its current credentials, once per turn however
   * many `auth` messages arrived in it (unchanged ones answer `subscribed`). Subscriptions made after
   * the `auth` already use the new credentials and are left alone.
   */
  private recheck(connection: Connection): void {
    if (connection.subscriptions.size === 0) return
    const due = connection.recheck ?? new Set()
    for (const subscription of connection.subscriptions.values()) due.add(subscription)
    if (connection.recheck) return
    connection.recheck = due
    this.scope.runInAsyncScope(() =>
      setImmediate(() => {
        connection.recheck = undefined
        if (connection.closed || this.closing) return
        for (const subscription of due) {
          if (connection.subscriptions.get(subscription.path) !== subscription) continue
          this.counters.subscriptions--
          this.registry.remove(subscription)
          this.subscribe(connection, subscription.path, subscription.version)
        }
      }),
    )
  }

  /** A token bucket per socket: `messagesPerSecond` on average, bursts up to `messageBurst`. */
  private takeToken(connection: Connection, cost = 1): boolean {
    const { messagesPerSecond, messageBurst } = this.options.limits
    const now = Date.now()
    connection.tokens = Math.min(
      messageBurst,
      connection.tokens + ((now - connection.tokensAt) * messagesPerSecond) / 1000,
    )
    connection.tokensAt = now
    if (connection.tokens < cost) return false
    connection.tokens -= cost
    return true
  }

  private dropConnection(connection: Connection, code: number): void {
    if (!this.connections.delete(connection.id)) return
    connection.closed = true
    this.silent.delete(connection)
    connection.parked = undefined
    connection.parkedBytes = 0
    for (const subscription of [...connection.subscriptions.values()]) {
      this.counters.subscriptions--
      this.registry.remove(subscription)
    }
    this.safeEmit('disconnect', { id: connection.id, code })
  }

  private closeConnection(connection: Connection, code: number, reason: string): void {
    if (connection.closed) return
    connection.closed = true
    connection.socket.close(code, reason)
  }

  /**
   * Sends a frame about `path` to one socket. A socket with more than `softPendingBytes` unsent is
   * slow: its frames wait, newest per path, until it drains (a slow consumer gets the latest state,
   * not a queue of old ones); past `hardPendingBytes` it is closed with 4509. `hold`: more frames
   * are likely to follow in this turn (see `HubSocket.send`).
   */
  private send(connection: Connection, path: string, frame: Buffer, hold = false): void {
    if (connection.closed) return
    const { softPendingBytes, hardPendingBytes } = this.options.limits
    let parked = connection.parked
    if (parked === undefined && connection.socket.bufferedAmount() <= softPendingBytes) {
      connection.socket.send(frame, hold)
      this.counters.messagesSent++
      return
    }
    parked ??= connection.parked = new Map()
    const older = parked.get(path)
    if (older) {
      parked.delete(path)
      connection.parkedBytes -= older.length
      this.counters.collapsed++
    }
    parked.set(path, frame)
    connection.parkedBytes += frame.length
    if (connection.socket.bufferedAmount() + connection.parkedBytes > hardPendingBytes) {
      this.options.logger.warn({ id: connection.id }, 'listenjs: closing a socket that fell too far behind')
      this.counters.slowClosed++
      connection.parked = undefined
      connection.parkedBytes = 0
      this.closeConnection(connection, CloseCode.SlowConsumer, 'too far behind')
      // Its close frame waits behind what is unsent: a client that reads again gets it; one that
      // never does is cut off after a grace period.
      setTimeout(() => connection.socket.terminate(), SLOW_CLOSE_GRACE_MS).unref()
    }
  }

  /** Sends what waited for a slow socket, oldest path first, while it stays under the soft limit. */
  private flushParked(connection: Connection): void {
    const parked = connection.parked
    if (parked === undefined || connection.closed) return
    const soft = this.options.limits.softPendingBytes
    for (const [path, frame] of parked) {
      if (connection.socket.bufferedAmount() > soft) return
      parked.delete(path)
      connection.parkedBytes -= frame.length
      connection.socket.send(frame)
      this.counters.messagesSent++
    }
    connection.parked = undefined
  }

  private refuse(
    connection: Connection,
    code: ErrorCode,
    message: string,
    path: string,
    status?: number,
  ): void {
    this.send(connection, path, errorFrame(code, message, path, status))
  }

  // -------------------------------------------------------------------------------------------
  // Subscriptions

  private subscribe(connection: Connection, path: string, heldVersion: string | undefined): void {
    if (connection.subscriptions.has(path)) return
    const { limits, identify } = this.options
    const reason = checkPath(path, limits.pathLength)
    if (reason !== undefined) return this.refuse(connection, 'bad_path', reason, path)
    if (connection.subscriptions.size >= limits.subscriptionsPerSocket) {
      return this.refuse(
        connection,
        'limit',
        `at most ${limits.subscriptionsPerSocket} subscriptions per socket`,
        path,
      )
    }
    let identity = `ctx:${connection.contextKey}`
    if (identify) {
      let chosen: ReturnType<typeof identify>
      try {
        chosen = identify(connection.request, path)
      } catch (error) {
        this.options.logger.error(
          { err: error, path },
          'listenjs: identify threw; using the default identity',
        )
      }
      if (chosen === PUBLIC) identity = PUBLIC_GROUP
      else if (typeof chosen === 'string') identity = `id:${chosen}`
    }
    const resource = this.registry.resource(path)
    const subscription: Subscription = {
      connection,
      path,
      resource,
      identity,
      group: undefined,
      version: heldVersion,
      seq: 0,
    }
    connection.subscriptions.set(path, subscription)
    resource.pending.add(subscription)
    this.counters.subscriptions++
    if (this.options.authorize) void this.authorizeThenJoin(subscription, this.options.authorize)
    else this.joinSnapshot(subscription)
  }

  /** Runs the `authorize` hook, then the snapshot replay, or refuses with 403 and no replay at all. */
  private async authorizeThenJoin(subscription: Subscription, authorize: Authorize): Promise<void> {
    const { connection, path, resource } = subscription
    let allowed = false
    try {
      allowed = (await this.scope.runInAsyncScope(() => authorize(path, connection.request))) === true
    } catch (error) {
      this.options.logger.error({ err: error, path }, 'listenjs: authorize threw; refusing the subscription')
    }
    // Unsubscribed or disconnected meanwhile.
    if (!resource.pending.has(subscription)) return
    if (allowed) return this.joinSnapshot(subscription)
    this.counters.subscriptions--
    this.registry.remove(subscription)
    this.refuse(connection, 'unauthorized', 'not authorized', path, 403)
  }

  private unsubscribe(subscription: Subscription): void {
    this.counters.subscriptions--
    this.registry.remove(subscription)
    const { connection, path } = subscription
    const frame = connection.parked?.get(path)
    if (frame) {
      connection.parked?.delete(path)
      connection.parkedBytes -= frame.length
      // No frame waiting is no map: `send` then writes directly again.
      if (connection.parked?.size === 0) connection.parked = undefined
    }
    this.safeEmit('unsubscribe', { id: subscription.connection.id, path: subscription.path })
  }

  /**
   * Queues a snapshot replay for a new subscription, or joins one already waiting for the same
   * replay context (a reconnect storm costs one replay per context, not one per socket).
   */
  private joinSnapshot(subscription: Subscription): void {
    const { resource, connection } = subscription
    const joined = resource.flights.get(connection.contextKey)
    if (joined) {
      joined.subscribers.add(subscription)
      return
    }
    const flight: SnapshotFlight = {
      subscribers: new Set([subscription]),
      context: contextFromRequest(connection.request),
      stale: false,
    }
    resource.flights.set(connection.contextKey, flight)
    this.queue.push(() => this.runSnapshot(resource, connection.contextKey, flight))
  }

  private async runSnapshot(resource: Resource, key: string, flight: SnapshotFlight): Promise<void> {
    if (flight.subscribers.size === 0 || this.closing) {
      if (resource.flights.get(key) === flight) resource.flights.delete(key)
      return
    }
    const seq = ++this.seq
    const result = await this.replay(flight.context, resource.path)
    if (resource.flights.get(key) === flight) resource.flights.delete(key)
    if (this.closing) return
    let frame: Buffer | undefined
    const hold = this.moreFramesComing(true)
    for (const subscription of flight.subscribers) {
      if (!resource.pending.delete(subscription)) continue
      const { connection, path } = subscription
      if (isSuccess(result.status)) {
        const group = this.registry.group(resource, result.public ? PUBLIC_GROUP : subscription.identity)
        group.members.add(subscription)
        subscription.group = group
        subscription.seq = seq
        if (subscription.version === result.version) {
          // A resubscription holding the current state: confirm it, send nothing again.
          this.send(connection, path, subscribedFrame(path, result.version), hold)
        } else {
          subscription.version = result.version
          frame ??= dataFrame(path, result.version, result.body, result.contentType, true)
          this.send(connection, path, frame, hold)
        }
        this.safeEmit('subscribe', { id: connection.id, path })
        // A change reached the path while this replay was on: its answer may predate the change.
        if (flight.stale) this.scheduleGroup(group, null)
      } else {
        connection.subscriptions.delete(path)
        this.counters.subscriptions--
        const [code, message] = refusal(result.status, true)
        this.refuse(connection, code, message, path, result.status)
      }
    }
    this.registry.dropIfEmpty(resource)
  }

  // -------------------------------------------------------------------------------------------
  // Changes

  private ignoredInReplay(): boolean {
    if (!isInsideReplay()) return false
    if (!this.warnedLoop) {
      this.warnedLoop = true
      this.options.logger.warn(
        'listenjs: a change was raised while serving a replay and was ignored (no loops)',
      )
    }
    return true
  }

  private publishChange(paths: readonly string[], origin?: ChangeMessage['origin']): void {
    if (this.ignoredInReplay()) return
    const expanded = expandChange(paths, this.options.notifyAncestors)
    this.backplane.publish(
      origin ? { kind: 'change', paths: expanded, origin } : { kind: 'change', paths: expanded },
    )
  }

  /**
   * The id to tag pushes with for a change's origin: only a connection of this hub with that id whose
   * credentials are the write's own. A copied id with other credentials tags nothing.
   */
  private originOf(origin: ChangeMessage['origin']): string | null {
    if (!origin) return null
    const connection = this.connections.get(origin.id)
    return connection && credentialsKey(connection.request.headers) === origin.credentials ? origin.id : null
  }

  private receive(message: BackplaneMessage): void {
    if (this.closing) return
    if (message.kind === 'payload') {
      this.pushPayload(message.path, message.payload)
      return
    }
    if (message.kind === 'resync') {
      this.resyncAll(message.spreadMs)
      return
    }
    const origin = this.originOf(message.origin)
    for (const path of message.paths) {
      const known = this.pendingChanges.get(path)
      this.pendingChanges.set(path, known === undefined || known === origin ? origin : null)
    }
    if (this.flushTimer !== undefined) return
    // Coalesce: everything changed within this turn (or window) costs one replay per group.
    this.scope.runInAsyncScope(() => {
      this.flushTimer =
        this.options.coalesceWindowMs > 0
          ? setTimeout(() => this.flush(), this.options.coalesceWindowMs)
          : setImmediate(() => this.flush())
    })
  }

  private flush(): void {
    this.flushTimer = undefined
    const changes = this.pendingChanges
    this.pendingChanges = new Map()
    this.replayPaths(changes)
    const delay = this.options.recheckAfterMs
    if (delay > 0 && !this.closing) {
      const timer = setTimeout(() => {
        this.recheckTimers.delete(timer)
        this.replayPaths(new Map([...changes.keys()].map((path) => [path, null])))
      }, delay)
      timer.unref()
      this.recheckTimers.add(timer)
    }
  }

  /**
   * Replays every subscribed path once, each at a random moment within `spreadMs`: after a backplane
   * outage, changes made elsewhere may have been missed. Versions make it cheap: an unchanged state
   * sends nothing.
   */
  private resyncAll(spreadMs: number): void {
    for (const path of this.registry.paths()) {
      const timer = setTimeout(() => {
        this.recheckTimers.delete(timer)
        if (!this.closing) this.replayPaths(new Map([[path, null]]))
      }, Math.random() * spreadMs)
      timer.unref()
      this.recheckTimers.add(timer)
    }
  }

  private replayPaths(changes: ReadonlyMap<string, string | null>): void {
    for (const [path, origin] of changes) {
      for (const resource of this.registry.affectedBy(path)) {
        for (const flight of resource.flights.values()) flight.stale = true
        // Later subscribers must not join a replay that may predate this change.
        resource.flights.clear()
        for (const group of resource.groups.values()) this.scheduleGroup(group, origin)
      }
    }
  }

  private pushPayload(path: string, payload: unknown): void {
    const resource = this.registry.get(path)
    if (!resource) return
    const json = JSON.stringify(payload)
    const version = versionOf(json)
    const frame = payloadFrame(path, version, json)
    this.fanOut(
      resource,
      [...resource.groups.values()],
      frame,
      version,
      ++this.seq,
      this.moreFramesComing(false),
    )
  }

  /** Queues one replay of `group` (once: a group already waiting is not queued again). */
  private scheduleGroup(group: Group, origin: string | null): void {
    if (this.closing || group.members.size === 0) return
    group.origin = group.origin === undefined || group.origin === origin ? origin : null
    if (group.state === 'running') {
      group.dirty = true
      return
    }
    if (group.state === 'queued') return
    clearTimeout(group.retryTimer)
    group.retryTimer = undefined
    group.state = 'queued'
    this.queue.push(() => this.runGroup(group))
  }

  private async runGroup(group: Group): Promise<void> {
    const first = group.members.values().next()
    if (first.done || this.closing) {
      group.state = 'idle'
      return
    }
    group.state = 'running'
    group.dirty = false
    const origin = group.origin ?? null
    group.origin = undefined
    const seq = ++this.seq
    const result = await this.replay(contextFromRequest(first.value.connection.request), group.resource.path)
    group.state = 'idle'
    if (this.closing || group.members.size === 0) return
    this.deliver(group, result, seq, origin)
    if (group.dirty) this.scheduleGroup(group, null)
  }

  /** Acts on a push replay's answer, as SPEC §2.5 says. `seq` numbers the replay; `origin` tags it. */
  private deliver(group: Group, result: ReplayResult, seq: number, origin: string | null): void {
    const { path } = group.resource
    const { status } = result
    if (isSuccess(status)) {
      group.attempts = 0
      const frame = dataFrame(
        path,
        result.version,
        result.body,
        result.contentType,
        false,
        origin ?? undefined,
      )
      this.fanOut(group.resource, [group], frame, result.version, seq, this.moreFramesComing(true))
      return
    }
    if (status === 404 || status === 410) {
      group.attempts = 0
      // After `gone`, the same body as before the deletion is news again: its version is 'gone'.
      this.fanOut(group.resource, [group], goneFrame(path, status), GONE, seq, this.moreFramesComing(true))
      return
    }
    if (status >= 500 || status === 429 || status === 408) {
      group.attempts++
      this.options.logger.error(
        { path, status, failure: result.failure, attempt: group.attempts },
        'listenjs: a push replay failed; retrying',
      )
      const delay = Math.min(MAX_RETRY_DELAY_MS, 500 * 2 ** (group.attempts - 1)) * (0.5 + Math.random() / 2)
      this.scope.runInAsyncScope(() => {
        group.retryTimer = setTimeout(() => {
          group.retryTimer = undefined
          this.scheduleGroup(group, origin)
        }, delay)
        group.retryTimer.unref()
      })
      return
    }
    // 401/403 and any other answer that will not become state: those subscribers are told and dropped.
    const [code, message] = refusal(status, false)
    const frame = errorFrame(code, message, path, status)
    for (const subscription of [...group.members]) {
      if (subscription.seq > seq) continue
      this.send(subscription.connection, path, frame)
      this.unsubscribe(subscription)
    }
  }

  /**
   * Whether other replays are running or waiting: their frames may reach the same sockets in this
   * turn, so a socket's frames are held to leave together. Otherwise each is written at once, and the
   * kernel starts sending while the fan-out goes on. `inQueue`: the caller is itself a queued replay.
   */
  private moreFramesComing(inQueue: boolean): boolean {
    return this.queue.inFlight + this.queue.size > (inQueue ? 1 : 0)
  }

  /**
   * Sends one frame to every member of `groups` that does not hold `version` yet and does not hold
   * the state of a replay that started after this one (`seq`): nobody goes back to an older state.
   */
  private fanOut(
    resource: Resource,
    groups: readonly Group[],
    frame: Buffer,
    version: string,
    seq: number,
    hold: boolean,
  ): void {
    let recipients = 0
    for (const group of groups) {
      for (const subscription of group.members) {
        if (subscription.seq > seq) continue
        subscription.seq = seq
        if (subscription.version === version) continue
        subscription.version = version
        this.send(subscription.connection, resource.path, frame, hold)
        recipients++
      }
    }
    if (recipients > 0) this.safeEmit('push', { path: resource.path, version, recipients })
  }

  private async replay(context: ReplayContext, path: string): Promise<ReplayResult> {
    const dispatch = this.dispatch
    if (!dispatch) {
      this.options.logger.error({ path }, 'listenjs: cannot replay before attach(server)')
      return failedReplay(503, 'error')
    }
    const result = await replayGet(dispatch, context, path, {
      timeoutMs: this.options.replayTimeoutMs,
      maxBodyBytes: this.options.maxBodyBytes,
    })
    this.counters.replays++
    if (result.failure) this.options.logger.warn({ path, failure: result.failure }, 'listenjs: replay failed')
    return result
  }

  // -------------------------------------------------------------------------------------------
  // Heartbeat and shutdown

  private startHeartbeat(): void {
    if (this.heartbeatTimer) return
    const { intervalMs, timeoutMs } = this.options.heartbeat
    this.scope.runInAsyncScope(() => {
      this.heartbeatTimer = setInterval(() => {
        for (const connection of this.connections.values()) {
          if (connection.awaitingPong) {
            connection.socket.terminate()
            continue
          }
          connection.awaitingPong = true
          connection.socket.send(PING_FRAME)
        }
        clearTimeout(this.pongTimer)
        this.pongTimer = setTimeout(() => {
          for (const connection of this.connections.values())
            if (connection.awaitingPong) connection.socket.terminate()
        }, timeoutMs)
        this.pongTimer.unref()
      }, intervalMs)
      this.heartbeatTimer.unref()
    })
  }

  private async shutdown(code: number): Promise<void> {
    clearInterval(this.heartbeatTimer)
    clearTimeout(this.pongTimer)
    clearTimeout(this.silentTimer)
    this.silent.clear()
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer as NodeJS.Timeout)
      clearImmediate(this.flushTimer as NodeJS.Immediate)
      this.flushTimer = undefined
    }
    for (const timer of this.recheckTimers) clearTimeout(timer)
    this.recheckTimers.clear()
    this.queue.clear()
    for (const [server, onUpgrade] of this.attached) server.off('upgrade', onUpgrade)
    this.attached.clear()
    this.unsubscribeBackplane()
    const open = [...this.connections.values()]
    for (const connection of open) {
      for (const subscription of connection.subscriptions.values())
        clearTimeout(subscription.group?.retryTimer)
      this.closeConnection(
        connection,
        code,
        code === CloseCode.ServiceRestart ? 'server restart' : 'server shutdown',
      )
    }
    await this.endpoint.close(1000)
    await this.backplane.close?.()
    this.scope.emitDestroy()
  }

  private safeEmit<K extends keyof HubEvents>(event: K, ...args: HubEvents[K]): void {
    try {
      ;(this.emit as (event: K, ...args: HubEvents[K]) => boolean)(event, ...args)
    } catch (error) {
      this.options.logger.error({ err: error, event }, 'listenjs: an event listener threw')
    }
  }
}

function isSuccess(status: number): boolean {
  return status >= 200 && status <= 299
}

/** The error code and fixed message for a replay status that refuses or ends a subscription. */
function refusal(status: number, subscribing: boolean): [ErrorCode, string] {
  if (status === 401 || status === 403) return ['unauthorized', 'not authorized']
  if (subscribing && (status === 404 || status === 410)) return ['not_found', 'not found']
  return ['failed', `the resource answered ${status}`]
}

/**
 * Creates a hub. Adapters create one for you; use this directly for a plain `http` server or a
 * framework without an adapter, then `hub.attach(server)` and call `hub.track(…)` for each request.
 * @throws ListenjsError `invalid_option` when an option is wrong
 */
export function createHub(options: HubOptions = {}): Hub {
  return new Hub(options)
}
