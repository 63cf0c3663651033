import { AsyncResource } from 'node:async_hooks'
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import type { Backplane, BackplaneMessage, BackplaneStatus, ChangeMessage } from './backplane'
import { MAX_CHANGE_PATHS, memoryBackplane } from './backplane'
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
import { fillRoute, headerPath, nearestKeyable, requestTargetPath } from './keys'
import { resolveOptions, PUBLIC, type Authorize, type HubOptions, type ResolvedOptions } from './options'
import { checkPath, expandChange, pathnameOf } from './paths'
import { CLIENT_HEADER, CloseCode, parseClientMessage, type ErrorCode } from './protocol'
import { FairQueue } from './scheduler'
import { groupKey, kindOf, publicContext, publicKey, verdict } from './sharing'
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
  /**
   * The most replays one connection has waiting now. Bounded by `limits.subscriptionsPerSocket`: a
   * path and group waiting already is never queued twice, and a replay nobody needs is dropped.
   */
  replaysQueuedPerConnectionMax: number
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
/** The most routes warned about once for an unkeyable change path (the set stays bounded). */
const MAX_WARNED_ROUTES = 1000
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
  private readonly queue: FairQueue
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
  /** Paths with a resync replay pending: a flood of `resync` signals costs one replay per path. */
  private readonly resyncing = new Set<string>()
  /** Routes already warned about for a change path that could not be keyed. */
  private readonly warnedRoutes = new Set<string>()
  private heartbeatTimer: NodeJS.Timeout | undefined
  /** Sockets that have not sent a message yet, with their deadline, oldest first. */
  private readonly silent = new Map<Connection, number>()
  private silentTimer: NodeJS.Timeout | undefined
  private pongTimer: NodeJS.Timeout | undefined
  private readonly tracked = new WeakSet<IncomingMessage>()
  private warnedLoop = false
  private closing: Promise<void> | undefined
  private counters = { messagesSent: 0, replays: 0, collapsed: 0, slowClosed: 0 }

  /**
   * @param options - see {@link HubOptions}; every field has a default
   * @throws ListenjsError `invalid_option` when an option is wrong
   */
  constructor(options: HubOptions = {}) {
    super()
    this.options = resolveOptions(options)
    this.queue = new FairQueue(
      this.options.replayConcurrency,
      this.options.limits.replaysInFlightPerConnection,
      (job) => this.scope.runInAsyncScope(job),
    )
    this.backplane = options.backplane ?? memoryBackplane()
    this.unsubscribeBackplane = this.backplane.subscribe((message) => this.receiveSafely(message))
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
   * `finish`, or on `close` once the status was sent), its path changes, keyed every way the app
   * knows it (SPEC §2.3): the request-target as sent (absolute-form reduced to its path), the route
   * the framework matched filled with its decoded params, and the response's `Content-Location`
   * (and `Location` on a 201). `route` and `routed` are read when the response ends, so a handler can
   * still set its options. The adapters call this for every request; calling it twice for one
   * request does nothing.
   * @param path - the request-target as the client sent it (the query is ignored)
   * @param routed - the route the framework matched, if any; called when the headers are written
   */
  track(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    route: () => RouteOptions | undefined,
    routed?: () => RouteMatch | undefined,
  ): void {
    if (this.tracked.has(req)) return
    const replay = isReplayRequest(req)
    if (!replay && !MUTATIONS.has(req.method ?? '')) return
    this.tracked.add(req)
    const pathname = pathnameOf(requestTargetPath(path))
    // What the router matched and the headers the app set are read when the headers are written,
    // from inside the handler that answers: by `finish`, a router may have restored its params, and
    // headers given to `writeHead` itself (as Fastify does) are not kept where `getHeader` sees them.
    // Node writes every response's headers through `writeHead`, explicitly or not.
    let answered: { match: RouteMatch | undefined; headers: unknown } | undefined
    const writeHead = res.writeHead
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      answered ??= { match: routed?.(), headers: args.find((a) => typeof a === 'object' && a !== null) }
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as ServerResponse['writeHead']
    const keys = (): string[] => this.keysOf(req, res, pathname, answered?.match, answered?.headers)
    if (replay) {
      // What the router and the answer say this path is: the subscription is reached by those too.
      res.once('finish', () => {
        const aliases = keys().filter(
          (key) => key !== pathname && checkPath(key, this.options.limits.pathLength) === undefined,
        )
        markReplayRoute(req, route(), aliases)
      })
      return
    }
    let done = false
    const ended = (): void => {
      if (done) return
      done = true
      const status = res.statusCode
      if (status < 200 || status > 299 || !(res.writableFinished || res.headersSent)) return
      const options = route()
      const paths = options?.notify === false ? [] : keys()
      if (options?.changes) paths.push(...options.changes)
      if (paths.length === 0) return
      const tag = req.headers[CLIENT_HEADER]
      const template = answered?.match?.template
      this.publishChange(
        paths.map((key) => this.keyable(key, req.method, template)),
        typeof tag === 'string' ? { id: tag, credentials: credentialsKey(req.headers) } : undefined,
      )
    }
    res.once('finish', ended)
    res.once('close', ended)
  }

  /** The paths a request's answer is known by: as sent, as routed, and as its headers name it. */
  private keysOf(
    req: IncomingMessage,
    res: ServerResponse,
    pathname: string,
    match: RouteMatch | undefined,
    written: unknown,
  ): string[] {
    const keys = [pathname]
    const canonical = match && fillRoute(match.template, match.params)
    if (canonical !== undefined && canonical !== pathname) keys.push(canonical)
    const host = req.headers.host
    const header = (name: string): string | undefined =>
      headerValue(res.getHeader(name) ?? writtenHeader(written, name))
    const location = headerPath(header('content-location'), pathname, host)
    if (location !== undefined) keys.push(location)
    if (res.statusCode === 201) {
      const created = headerPath(header('location'), pathname, host)
      if (created !== undefined) keys.push(created)
    }
    return keys
  }

  /**
   * `path` when it can be a key, else its nearest ancestor that can: no successful write is dropped.
   * Warned about once per route, since the app (or a client) writes to paths nobody can listen to.
   */
  private keyable(path: string, method: string | undefined, template: string | undefined): string {
    if (checkPath(path, this.options.limits.pathLength) === undefined) return path
    const key = nearestKeyable(path, this.options.limits.pathLength)
    const routeName = `${method ?? ''} ${template ?? '(no route)'}`
    if (!this.warnedRoutes.has(routeName) && this.warnedRoutes.size < MAX_WARNED_ROUTES) {
      this.warnedRoutes.add(routeName)
      this.options.logger.warn(
        { route: routeName, path: path.slice(0, 200), notified: key },
        'listenjs: a change path cannot be a key (control characters, encoded / or \\, dot segments or too long); its nearest acceptable ancestor was notified instead',
      )
    }
    return key
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
      subscriptions: this.registry.count,
      resources: this.registry.size,
      messagesSent: this.counters.messagesSent,
      replays: this.counters.replays,
      replaysInFlight: this.queue.inFlight,
      replaysQueued: this.queue.size,
      replaysQueuedPerConnectionMax: this.queue.maxQueuedPerLane(),
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
    const context = contextFromRequest(request)
    const connection: Connection = {
      id: randomUUID(),
      socket,
      request,
      context,
      contextKey: contextKey(context),
      publicKey: publicKey(request, this.options.trustProxy),
      subscriptions: new Map(),
      awaitingPong: false,
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
        this.reauthenticate(connection, withToken(connection.request, message.token))
        return
      case 'pong':
        return
    }
  }

  /**
   * New credentials: every path the socket holds is checked again with them (an unchanged one
   * answers `subscribed`). Its subscriptions leave their groups and snapshot replays at once, in this
   * turn, so that no replay made with the new credentials can serve a group the old ones joined,
   * and no replay made with the old ones reaches it; replays nobody waits for any more are dropped.
   */
  private reauthenticate(connection: Connection, request: UpgradeRequest): void {
    connection.request = request
    connection.context = contextFromRequest(request)
    connection.contextKey = contextKey(connection.context)
    const held = [...connection.subscriptions.values()]
    for (const subscription of held) this.registry.remove(subscription)
    for (const subscription of held) this.subscribe(connection, subscription.path, subscription.version)
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
    for (const subscription of [...connection.subscriptions.values()]) this.registry.remove(subscription)
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
    const { limits } = this.options
    const reason = checkPath(path, limits.pathLength)
    if (reason !== undefined) return this.refuse(connection, 'bad_path', reason, path)
    if (!this.pathAllowed(path, connection.request)) {
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
    const subscription: Subscription = {
      connection,
      path,
      resource: this.registry.resource(path),
      identity: this.identityOf(connection, path),
      group: undefined,
      flight: undefined,
      version: heldVersion,
      seq: 0,
    }
    this.registry.add(subscription)
    if (this.options.authorize) void this.authorizeThenJoin(subscription, this.options.authorize)
    else this.joinSnapshot(subscription)
  }

  /** Whether the `paths` option lets anyone subscribe to `path` (SPEC §5: replays bypass a proxy's rules). */
  private pathAllowed(path: string, request: UpgradeRequest): boolean {
    const { paths } = this.options
    if (paths === undefined) return true
    if (typeof paths === 'function') {
      try {
        return paths(path, request) === true
      } catch (error) {
        this.options.logger.error({ err: error, path }, 'listenjs: paths threw; refusing the subscription')
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
    const { identify } = this.options
    if (identify) {
      try {
        const chosen = identify(connection.request, path)
        if (chosen === PUBLIC) return groupKey.public(connection.publicKey)
        if (typeof chosen === 'string') return groupKey.identified(connection.publicKey, chosen)
      } catch (error) {
        this.options.logger.error(
          { err: error, path },
          'listenjs: identify threw; using the default identity',
        )
      }
    }
    return groupKey.own(connection.contextKey)
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
    // Unsubscribed, disconnected or re-authenticated meanwhile.
    if (!resource.pending.has(subscription)) return
    if (allowed) return this.joinSnapshot(subscription)
    this.registry.remove(subscription)
    this.refuse(connection, 'unauthorized', 'not authorized', path, 403)
  }

  private unsubscribe(subscription: Subscription): void {
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
   * replay context (a reconnect storm costs one replay per context, not one per socket). The
   * snapshot is always made with the subscriber's own request, and charged to its connection.
   */
  private joinSnapshot(subscription: Subscription): void {
    const { resource, connection } = subscription
    const key = connection.contextKey
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
    flight.ticket = this.queue.push(connection, () => this.runSnapshot(resource, flight))
  }

  private async runSnapshot(resource: Resource, flight: SnapshotFlight): Promise<void> {
    flight.ticket = undefined
    if (flight.subscribers.size === 0 || this.closing) {
      if (resource.flights.get(flight.key) === flight) resource.flights.delete(flight.key)
      return
    }
    const seq = ++this.seq
    const result = await this.replay(flight.context, resource.path)
    if (resource.flights.get(flight.key) === flight) resource.flights.delete(flight.key)
    if (this.closing) return
    if (isSuccess(result.status)) this.addAliases(resource, result)
    let frame: Buffer | undefined
    const hold = this.moreFramesComing(true)
    for (const subscription of flight.subscribers) {
      if (!resource.pending.delete(subscription)) continue
      subscription.flight = undefined
      const { connection, path } = subscription
      if (isSuccess(result.status)) {
        const group = this.groupFor(subscription, result)
        this.registry.join(subscription, group)
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
        this.registry.remove(subscription)
        const [code, message] = refusal(result.status, true)
        this.refuse(connection, code, message, path, result.status)
      }
    }
    this.registry.dropIfEmpty(resource)
  }

  /**
   * The group a subscriber joins after an answer made with its own request: the route-public group
   * of its Host when that answer said public (unless `identify` already made it public), else its
   * identity's.
   */
  private groupFor(subscription: Subscription, result: ReplayResult): Group {
    const { connection, resource, identity } = subscription
    const key =
      result.public && kindOf(identity) !== 'public' ? groupKey.route(connection.publicKey) : identity
    return this.registry.group(resource, key, () =>
      publicContext(connection.request, this.options.trustProxy),
    )
  }

  /** Makes changes to what the app says this path is reach it too (SPEC §2.3). */
  private addAliases(resource: Resource, result: ReplayResult): void {
    for (const alias of result.aliases) this.registry.alias(resource, alias)
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

  /**
   * Announces a change to every hub. Not checked against replays: a mutation is never a replay, even
   * when its handler waited on something a replay held (only `notify` calls made by a replay's own
   * handler are loops).
   */
  private publishChange(paths: readonly string[], origin?: ChangeMessage['origin']): void {
    const expanded = expandChange(paths, this.options.notifyAncestors)
    // Every hub drops a change naming more paths than MAX_CHANGE_PATHS: a large one travels in parts.
    for (let i = 0; i < expanded.length; i += MAX_CHANGE_PATHS) {
      const part = expanded.slice(i, i + MAX_CHANGE_PATHS)
      this.backplane.publish(
        origin ? { kind: 'change', paths: part, origin } : { kind: 'change', paths: part },
      )
    }
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

  /** What a backplane delivers is outside input: bounded, and never thrown out of the hub. */
  private receiveSafely(message: BackplaneMessage): void {
    try {
      this.receive(message)
    } catch (error) {
      this.options.logger.error(
        { err: error },
        'listenjs: dropped a backplane message that could not be used',
      )
    }
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
    if (!Array.isArray(message.paths) || message.paths.length > MAX_CHANGE_PATHS) {
      this.options.logger.warn('listenjs: dropped a backplane change with too many paths')
      return
    }
    const origin = this.originOf(message.origin)
    for (const path of message.paths) {
      if (typeof path !== 'string') continue
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
    const spread = Number.isFinite(spreadMs) && spreadMs > 0 ? Math.min(spreadMs, 60_000) : 0
    for (const path of this.registry.paths()) {
      // A path already waiting for its resync is not queued again: a flood of signals costs one each.
      if (this.resyncing.has(path)) continue
      this.resyncing.add(path)
      const timer = setTimeout(() => {
        this.recheckTimers.delete(timer)
        this.resyncing.delete(path)
        if (!this.closing) this.replayPaths(new Map([[path, null]]))
      }, Math.random() * spread)
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
    let json: string | undefined
    try {
      json = JSON.stringify(payload)
    } catch (error) {
      this.options.logger.error({ err: error, path }, 'listenjs: dropped a payload that cannot be serialized')
      return
    }
    if (json === undefined) return
    const version = versionOf(json)
    const frame = payloadFrame(path, version, json)
    this.fanOut(
      resource,
      [...resource.groups.values()],
      frame,
      version,
      ++this.seq,
      this.moreFramesComing(false),
      null,
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
    // Charged to a member's connection: one connection's many groups take one turn at a time.
    const first = group.members.values().next().value as Subscription
    group.ticket = this.queue.push(first.connection, () => this.runGroup(group))
  }

  private async runGroup(group: Group): Promise<void> {
    group.ticket = undefined
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
    // Public groups use their own request (no member's); the others a member's current one, which
    // is the group's: a socket whose credentials change leaves its groups at once.
    const result = await this.replay(group.context ?? first.value.connection.context, group.resource.path)
    group.state = 'idle'
    if (this.closing || group.members.size === 0) return
    this.deliver(group, result, seq, origin)
    if (group.dirty) this.scheduleGroup(group, null)
  }

  /**
   * Acts on a push replay's answer, as SPEC §2.5 says, once the group may take it (see
   * `sharing.ts`): a shared answer that cannot be shared splits the group instead. `seq` numbers the
   * replay; `origin` tags it.
   */
  private deliver(group: Group, result: ReplayResult, seq: number, origin: string | null): void {
    const { resource } = group
    const { path } = resource
    const { status } = result
    if (status >= 500 || status === 429 || status === 408) return this.retryLater(group, result, origin)
    group.attempts = 0
    if (verdict(group.kind, result) === 'split') return this.split(group, origin)
    if (isSuccess(status)) {
      this.addAliases(resource, result)
      const frame = dataFrame(path, result.version, result.body, result.contentType, false)
      const tagged =
        origin === null
          ? undefined
          : () => dataFrame(path, result.version, result.body, result.contentType, false, origin)
      this.fanOut(resource, [group], frame, result.version, seq, this.moreFramesComing(true), origin, tagged)
      if (group.kind === 'own') this.regroup(group, result)
      return
    }
    if (status === 404 || status === 410) {
      // After `gone`, the same body as before the deletion is news again: its version is 'gone'.
      this.fanOut(resource, [group], goneFrame(path, status), GONE, seq, this.moreFramesComing(true), null)
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

  /** 5xx, 429, 408 or no answer: the subscription stays, and the replay is retried with backoff. */
  private retryLater(group: Group, result: ReplayResult, origin: string | null): void {
    const { path } = group.resource
    group.attempts++
    this.options.logger.error(
      { path, status: result.status, failure: result.failure, attempt: group.attempts },
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
  }

  /**
   * A shared answer that is not everyone's: each member moves to the group of its own request and
   * is replayed with it. Nothing of the shared answer is sent.
   */
  private split(group: Group, origin: string | null): void {
    const moved = new Set<Group>()
    for (const subscription of [...group.members]) {
      const own = this.registry.group(group.resource, groupKey.own(subscription.connection.contextKey))
      this.registry.join(subscription, own)
      moved.add(own)
    }
    for (const own of moved) this.scheduleGroup(own, origin)
  }

  /**
   * After an answer made with a member's own request: members that were moved out of a shared group
   * go back to it (their identity's, or the route-public group when this answer said public).
   */
  private regroup(group: Group, result: ReplayResult): void {
    for (const subscription of [...group.members]) {
      if (subscription.identity === group.key && !result.public) continue
      const target = this.groupFor(subscription, result)
      if (target !== group) this.registry.join(subscription, target)
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
   * The connection whose own write caused the change (`origin`) gets the `tagged` frame instead: its
   * id is never sent to anyone else.
   */
  private fanOut(
    resource: Resource,
    groups: readonly Group[],
    frame: Buffer,
    version: string,
    seq: number,
    hold: boolean,
    origin: string | null,
    tagged?: () => Buffer,
  ): void {
    let recipients = 0
    let taggedFrame: Buffer | undefined
    for (const group of groups) {
      for (const subscription of group.members) {
        if (subscription.seq > seq) continue
        subscription.seq = seq
        if (subscription.version === version) continue
        subscription.version = version
        const { connection } = subscription
        const own = tagged !== undefined && connection.id === origin
        this.send(connection, resource.path, own ? (taggedFrame ??= tagged()) : frame, hold)
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
    this.resyncing.clear()
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

/** A header given to `writeHead` (an object, or a flat `[name, value, …]` list), by lower-case name. */
function writtenHeader(written: unknown, name: string): unknown {
  if (Array.isArray(written)) {
    for (let i = 0; i + 1 < written.length; i += 2) {
      if (String(written[i]).toLowerCase() === name) return written[i + 1]
    }
    return undefined
  }
  if (typeof written !== 'object' || written === null) return undefined
  for (const [key, value] of Object.entries(written)) if (key.toLowerCase() === name) return value
  return undefined
}

function headerValue(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined
  return Array.isArray(value) ? String(value[0]) : String(value)
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
