/**
 * The hub: the public face of listenjs's core, and the wiring of its parts. Each concern has its
 * own module (see ARCHITECTURE.md): `connections` (sockets, first message, rate, routing),
 * `subscriptions` (subscribe, authorize, snapshots), `tracking` (which paths a request changes),
 * `changes` (publish, coalesce, recheck, resync), `pushes` (group replays and their outcome),
 * `fanout` (the ordering rule), `outbox` (slow consumers), `heartbeat`, and the replay `scheduler`.
 * The core imports no socket library: a {@link TransportFactory} binds it to one.
 */
import { EventEmitter } from 'node:events'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { memoryBackplane, type Backplane } from './backplane'
import { Changes } from './changes'
import { Connections } from './connections'
import { ListenjsError } from './errors'
import { FanOut } from './fanout'
import { Heartbeat } from './heartbeat'
import { Kernel } from './kernel'
import { POLICY, resolveOptions, type HubOptions, type ResolvedOptions } from './options'
import { Outbox } from './outbox'
import { checkPath, pathnameOf } from './paths'
import { CloseCode } from './protocol'
import { Pushes } from './pushes'
import { dispatcherFor, type UpgradeRequest } from './replay'
import type { HubSocket, SocketEvents, Transport, TransportFactory } from './socket'
import { Subscriptions } from './subscriptions'
import type { Telemetry } from './telemetry'
import { Tracking } from './tracking'
import type { AttachableServer, HubEvents, HubStats, RouteMatch, RouteOptions } from './types'

/**
 * The framework-neutral heart of listenjs: subscriptions, replays and fan-out, over sockets a
 * transport hands it. Create it with `createHub` (from `listenjs`), or let an adapter create it.
 */
export class Hub {
  /** The options in force, defaults applied. */
  readonly options: Readonly<ResolvedOptions>
  private readonly events = new EventEmitter<HubEvents>()
  private readonly kernel: Kernel
  private readonly backplane: Backplane
  private readonly outbox: Outbox
  private readonly subscriptions: Subscriptions
  private readonly connections: Connections
  private readonly changes: Changes
  private readonly tracking: Tracking
  private readonly heartbeat: Heartbeat
  private readonly transport: Transport | undefined
  private readonly attached = new Map<
    AttachableServer,
    (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  >()
  private closing: Promise<void> | undefined
  /** Reports successful writes that never passed `track` (see `Tracking.watch`); a stream is none. */
  private readonly watchRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (!this.isStream(req)) this.tracking.watch(req, res)
  }

  /**
   * @param options - see {@link HubOptions}; every field has a default
   * @param transport - accepts WebSockets for the hub; without one, sockets are handed over with
   *   {@link Hub.opened} only, and `attach` serves replays but no WebSocket endpoint
   * @throws ListenjsError `invalid_option` when an option is wrong
   */
  constructor(options: HubOptions = {}, transport?: TransportFactory) {
    const resolved = resolveOptions(options)
    this.options = resolved
    const kernel = (this.kernel = new Kernel(resolved, (event, ...args) => this.emitSafely(event, ...args)))
    this.backplane = options.backplane ?? memoryBackplane()
    this.outbox = new Outbox(kernel)
    const fanout = new FanOut(kernel, this.outbox)
    const pushes = new Pushes(kernel, this.outbox, fanout, (s) => this.subscriptions.unsubscribe(s))
    this.subscriptions = new Subscriptions(kernel, this.outbox, pushes)
    this.connections = new Connections(kernel, this.outbox, this.subscriptions)
    this.changes = new Changes(kernel, this.backplane, pushes, fanout, (id) => this.connections.get(id))
    this.tracking = new Tracking(kernel, this.changes)
    this.heartbeat = new Heartbeat(kernel, () => this.connections.values())
    this.transport = transport?.(resolved, (socket, request) => this.opened(socket, request))
  }

  /**
   * Serves the WebSocket endpoint on `server` (upgrades on `options.path` only; other upgrades are
   * left to other listeners) and replays GETs through its request handler. The first attached
   * server is the one replays go to. Attaching the same server twice does nothing.
   * @returns `server`, as every adapter's `attach` does
   * @throws ListenjsError `closed` once the hub is closed
   */
  attach<S extends AttachableServer>(server: S): S {
    if (this.attached.has(server)) return server
    if (this.closing) throw new ListenjsError('closed', 'listenjs: the hub is closed')
    const transport = this.transport
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      transport?.handleUpgrade(req, socket, head, server)
    }
    this.attached.set(server, onUpgrade)
    if (transport) server.on('upgrade', onUpgrade)
    server.on('request', this.watchRequest)
    this.kernel.dispatch ??= dispatcherFor(server as Server)
    this.heartbeat.start()
    return server
  }

  /**
   * Takes a socket a transport accepted (its upgrade request already checked): the seam between the
   * core and any transport. The transport reports the socket's messages, pings, drains and close to
   * the returned object, and to nothing else.
   */
  opened(socket: HubSocket, request: IncomingMessage): SocketEvents {
    return this.connections.opened(socket, request)
  }

  /**
   * Whether `req` asks for the HTTP stream, the transport for networks that block WebSockets: a
   * `POST` on the hub's path (or its CORS preflight, an `OPTIONS`). The adapters hand such a request to
   * {@link Hub.stream} before any route.
   */
  isStream(req: IncomingMessage): boolean {
    if (req.method !== 'POST' && req.method !== 'OPTIONS') return false
    if (this.transport?.handleRequest === undefined) return false
    return pathnameOf(req.url ?? '') === this.options.path
  }

  /**
   * Serves the HTTP stream (PROTOCOL.md, "The HTTP stream"): the checks of an upgrade, then one
   * streamed response carrying a socket's messages. `body`: the request body if a framework's parser
   * read it already. Answers 404 on a hub without an HTTP transport.
   */
  stream(req: IncomingMessage, res: ServerResponse, body?: unknown): void {
    const handle = this.transport?.handleRequest
    if (handle === undefined) {
      res.writeHead(404).end()
      return
    }
    handle.call(this.transport, req, res, body)
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
    if (this.changes.ignoredInReplay()) return
    if (payload === undefined) {
      this.changes.publish([path])
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
   * (and `Location` on a 201). `route` is read when the response ends, so a handler can still set
   * its options. The adapters call this for every request; calling it twice for one request does
   * nothing.
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
    this.tracking.track(req, res, path, route, routed)
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
    return this.connections.disconnect(predicate, code)
  }

  /**
   * Sets the tracer of the hub's work (`listenjs/otel`'s `instrument` sets one): a span per change
   * this process publishes, per replay (dispatched with its span active) and per push; the change's
   * trace context travels on the backplane. `undefined` removes it. Without one, nothing is traced.
   */
  setTelemetry(telemetry: Telemetry | undefined): void {
    this.kernel.telemetry = telemetry
  }

  /** Counters for monitoring. */
  stats(): HubStats {
    const { kernel, outbox } = this
    const backplaneMessages = this.backplane.stats?.()
    return {
      connections: this.connections.size,
      subscriptions: kernel.registry.count,
      resources: kernel.registry.size,
      messagesSent: outbox.messagesSent,
      replays: kernel.replays,
      replaysInFlight: kernel.queue.inFlight,
      replaysQueued: kernel.queue.size,
      replaysQueuedPerConnectionMax: kernel.queue.maxQueuedPerLane(),
      pendingBytes: outbox.pendingBytes(this.connections.values()),
      collapsed: outbox.collapsed,
      slowClosed: outbox.slowClosed,
      backplane: this.backplane.status?.() ?? 'memory',
      patches: {
        stateBytes: kernel.states.bytes,
        computed: kernel.states.computed,
        declined: kernel.states.declined,
      },
      ...(backplaneMessages === undefined ? {} : { backplaneMessages }),
    }
  }

  /** Listens to a hub event (see {@link HubEvents}). A listener that throws is logged, not rethrown. */
  on<K extends keyof HubEvents>(event: K, listener: (...args: HubEvents[K]) => void): this {
    ;(this.events.on as (e: K, l: (...args: HubEvents[K]) => void) => unknown)(event, listener)
    return this
  }

  /** Listens to the next `event` only. */
  once<K extends keyof HubEvents>(event: K, listener: (...args: HubEvents[K]) => void): this {
    ;(this.events.once as (e: K, l: (...args: HubEvents[K]) => void) => unknown)(event, listener)
    return this
  }

  /** Stops `listener` from hearing `event`. */
  off<K extends keyof HubEvents>(event: K, listener: (...args: HubEvents[K]) => void): this {
    ;(this.events.off as (e: K, l: (...args: HubEvents[K]) => void) => unknown)(event, listener)
    return this
  }

  /**
   * Closes every socket (1001 going away, or 1012 when `restart` is true, which clients treat as
   * "reconnect soon"), stops every timer, detaches from every server and closes the backplane.
   * Resolves when every socket has closed (sockets that do not finish the closing handshake within
   * `POLICY.closeGraceMs` are terminated). Calling it again returns the same promise.
   */
  close(options: { restart?: boolean } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.restart === true ? CloseCode.ServiceRestart : CloseCode.GoingAway)
    return this.closing
  }

  private async shutdown(code: CloseCode): Promise<void> {
    this.kernel.closing = true
    this.heartbeat.stop()
    this.changes.stop()
    this.kernel.queue.clear()
    for (const [server, onUpgrade] of this.attached) {
      server.off('upgrade', onUpgrade)
      server.off('request', this.watchRequest)
    }
    this.attached.clear()
    this.connections.closeAll(code)
    await this.transport?.close(POLICY.closeGraceMs)
    await this.backplane.close?.()
    this.kernel.scope.emitDestroy()
  }

  private emitSafely<K extends keyof HubEvents>(event: K, ...args: HubEvents[K]): void {
    try {
      ;(this.events.emit as (event: K, ...args: HubEvents[K]) => boolean)(event, ...args)
    } catch (error) {
      this.options.logger.error({ err: error, event }, 'listenjs: an event listener threw')
    }
  }
}
