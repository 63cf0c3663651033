/**
 * Open sockets: what the hub keeps of each (a {@link Link}), the first-message deadline, the
 * per-socket token bucket, and the routing of each client message to the part that handles it.
 * A transport hands the hub a socket with `opened(socket, request)` and gets back the socket's
 * {@link SocketEvents}: the only calls a transport makes into the hub.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { Deadlines } from './deadlines'
import { REAUTH_FRAME, errorFrame, welcomeFrame } from './frames'
import type { Kernel } from './kernel'
import type { Outbox } from './outbox'
import { CloseCode, SUBPROTOCOL_PATCHES, parseClientMessage } from './protocol'
import type { Connection, Subscription } from './registry'
import {
  contextFromRequest,
  upgradeRequestOf,
  withToken,
  type ReplayContext,
  type UpgradeRequest,
} from './replay'
import { POLICY, isBasePath } from './options'
import { servedUnder } from './proxy'
import { groupKey, ownKeyOf, publicKey } from './sharing'
import type { HubSocket, SocketEvents } from './socket'
import type { Subscriptions } from './subscriptions'

/**
 * `text` (Latin-1) as one flat string. A string built by concatenation (as `randomUUID` builds its
 * result) is kept as a pair of strings, and its flat copy made later is kept besides: 32 bytes more
 * for every socket.
 */
const flat = (text: string): string => Buffer.from(text, 'latin1').toString('latin1')

/** The length of what `groupKey.own` puts before a context key. */
const OWN_PREFIX = groupKey.own('').length

/**
 * One open socket: its record, and the events its transport reports (methods, no closures). What can
 * be derived is not kept: the replay context is made from `request` when a replay needs it, and the
 * context key is read off `ownKey`.
 */
class Link implements Connection, SocketEvents {
  readonly id = flat(randomUUID())
  ownKey: string
  publicKey: string
  readonly prefix: string
  readonly subscriptions = new Map<string, Subscription>()
  readonly patches: boolean
  awaitingPong = false
  spoke = false
  tokens: number
  tokensAt = Date.now()
  closed = false
  parked: Map<string, Buffer> | undefined = undefined
  parkedBytes = 0

  constructor(
    private readonly owner: Connections,
    readonly socket: HubSocket,
    public request: UpgradeRequest,
  ) {
    this.ownKey = ownKeyOf(request)
    this.publicKey = publicKey(request, owner.kernel.options.trustProxy)
    const { options } = owner.kernel
    this.tokens = options.limits.messageBurst
    this.patches = options.patches !== false && socket.protocol === SUBPROTOCOL_PATCHES
    this.prefix = servedUnder(
      request.remoteAddress,
      request.headers['x-forwarded-prefix'],
      options.trustProxy,
      options.basePath,
      isBasePath,
    )
  }

  get context(): ReplayContext {
    return contextFromRequest(this.request)
  }
  get contextKey(): string {
    return this.ownKey.slice(OWN_PREFIX)
  }

  onMessage(data: Buffer, isBinary: boolean): void {
    this.owner.received(this, data, isBinary)
  }
  onPing(): boolean {
    return this.owner.pinged(this)
  }
  onDrain(): void {
    this.owner.outbox.drained(this)
  }
  onClose(code: number): void {
    this.owner.dropped(this, code)
  }
}

/** Header values that are one socket's own: not worth keeping in {@link CommonStrings}. */
const OWN_HEADERS = new Set(['sec-websocket-key', 'cookie', 'authorization'])

/**
 * Strings that many sockets have in common: most header values of an upgrade (Host, User-Agent,
 * Origin, the WebSocket ones), its URL, and the address of a proxy. A socket keeps the equal string
 * kept here already, not its own copy (hundreds of bytes per socket). Bounded: at most `limit`
 * strings of at most `maxLength` characters, the oldest going first.
 */
class CommonStrings {
  private readonly kept = new Map<string, string>()

  constructor(
    private readonly limit = 512,
    private readonly maxLength = 256,
  ) {}

  /** `text`, or the equal string kept already. */
  share(text: string): string {
    if (text.length > this.maxLength) return text
    const kept = this.kept.get(text)
    if (kept !== undefined) return kept
    if (this.kept.size >= this.limit) this.kept.delete(this.kept.keys().next().value as string)
    this.kept.set(text, text)
    return text
  }

  /** What a socket keeps of its upgrade request, its strings shared (equal values, the same object). */
  request(req: IncomingMessage): UpgradeRequest {
    const request = upgradeRequestOf(req)
    const { headers } = request
    for (const name in headers) {
      const value = headers[name]
      if (typeof value === 'string' && !OWN_HEADERS.has(name)) headers[name] = this.share(value)
    }
    return {
      headers,
      url: this.share(request.url),
      remoteAddress: this.share(request.remoteAddress),
      encrypted: request.encrypted,
    }
  }
}

export class Connections {
  private readonly open = new Map<string, Connection>()
  private readonly common = new CommonStrings()
  /**
   * Sockets that have not sent a message yet: each is closed with 4407 unless it sends one within
   * `limits.firstMessageMs` (every deadline the same length, so one timer serves them all).
   */
  private readonly silent: Deadlines<Connection>
  /**
   * The timer of each socket whose credentials expire (`credentialsExpireAt`): its `reauth`, then its
   * re-check. Kept here, not on the socket, so that apps without the hook pay nothing per socket.
   */
  private readonly expiries = new Map<Connection, NodeJS.Timeout>()

  constructor(
    readonly kernel: Kernel,
    readonly outbox: Outbox,
    private readonly subscriptions: Subscriptions,
  ) {
    this.silent = new Deadlines<Connection>(
      kernel.options.limits.firstMessageMs,
      (connection) => this.outbox.close(connection, CloseCode.FirstMessageTimeout, 'no message'),
      (set) => kernel.inScope(set),
    )
  }

  /** Open sockets. */
  get size(): number {
    return this.open.size
  }

  /** Every open socket. */
  values(): IterableIterator<Connection> {
    return this.open.values()
  }

  /** The open socket `id`, if any. */
  get(id: string): Connection | undefined {
    return this.open.get(id)
  }

  /** Takes a new socket: welcomes it and starts its first-message deadline. */
  opened(socket: HubSocket, req: IncomingMessage): SocketEvents {
    const link = new Link(this, socket, this.common.request(req))
    this.open.set(link.id, link)
    this.silent.add(link)
    const { intervalMs, timeoutMs } = this.kernel.options.heartbeat
    socket.send(welcomeFrame(link.id, intervalMs, timeoutMs))
    this.expireCredentials(link)
    this.kernel.emit('connect', { id: link.id, remoteAddress: link.request.remoteAddress })
    return link
  }

  /** Closes every socket for which `predicate` returns true; returns how many. */
  disconnect(
    predicate: (connection: { readonly id: string; readonly request: UpgradeRequest }) => boolean,
    code: number,
  ): number {
    let closed = 0
    for (const connection of [...this.open.values()]) {
      if (connection.closed || !predicate({ id: connection.id, request: connection.request })) continue
      this.outbox.close(connection, code, 'disconnected by the app')
      closed++
    }
    return closed
  }

  /** Closes every socket with `code` and stops the deadline timer. */
  closeAll(code: number): void {
    this.silent.clear()
    for (const timer of this.expiries.values()) clearTimeout(timer)
    this.expiries.clear()
    const reason = code === CloseCode.ServiceRestart ? 'server restart' : 'server shutdown'
    for (const connection of [...this.open.values()]) {
      for (const subscription of connection.subscriptions.values())
        clearTimeout(subscription.group?.retryTimer)
      this.outbox.close(connection, code, reason)
    }
  }

  /**
   * Schedules, from `credentialsExpireAt`, the `reauth` of `connection` some time before its
   * credentials expire and the re-check of its subscriptions at expiry, replacing what was scheduled
   * for its earlier credentials. At expiry, every subscription is subscribed again with the held
   * version and the current (expired) credentials: the app's GET route refuses what they no longer
   * open, and those subscriptions end with `unauthorized`. Nothing falls back to anonymous. No timer
   * for a socket without an expiry.
   */
  private expireCredentials(connection: Connection): void {
    const hook = this.kernel.options.credentialsExpireAt
    if (!hook) return
    clearTimeout(this.expiries.get(connection))
    this.expiries.delete(connection)
    let at: number
    try {
      const value = hook(connection.request)
      if (value === undefined) return
      at = +value
      if (Number.isNaN(at)) throw new TypeError('not a time')
    } catch (error) {
      this.kernel.options.logger.error(
        { err: error, id: connection.id },
        'listenjs: credentialsExpireAt failed; the credentials are taken not to expire',
      )
      return
    }
    // Already expired: what the socket holds was just checked with these credentials (by the `auth`;
    // at the upgrade it holds nothing yet), and each `subscribe` is. Asking would only loop (the
    // client just presented them: a cookie client would reconnect again and again).
    const left = at - Date.now()
    if (left <= 0) return
    const lead = Math.min(POLICY.reauthLeadMs, left / 2)
    this.at(connection, at - lead, () => {
      connection.socket.send(REAUTH_FRAME)
      this.at(connection, at, () => {
        this.expiries.delete(connection)
        this.subscriptions.reauthenticate(connection, connection.request)
      })
    })
  }

  /** Calls `fn` at `time` (epoch ms) unless `connection` closes first; one timer per connection. */
  private at(connection: Connection, time: number, fn: () => void): void {
    // setTimeout fires at once past 2^31-1 ms: a farther time waits in steps.
    const delay = Math.max(0, Math.min(time - Date.now(), 2 ** 31 - 1))
    const fire = (): void => {
      if (connection.closed) return
      if (Date.now() < time) this.at(connection, time, fn)
      else this.guarded(connection, fn, 'a credentials expiry')
    }
    this.kernel.inScope(() => this.expiries.set(connection, setTimeout(fire, delay).unref()))
  }

  /**
   * @internal A message from the socket of `connection`. Whatever goes wrong handling it stays in
   * the hub: it is logged, and that socket is closed with 1011.
   */
  received(connection: Connection, data: Buffer, isBinary: boolean): void {
    this.guarded(connection, () => this.route(connection, data, isBinary))
  }

  /** Runs `fn` for `connection`; if it throws, logs it (`what` failed) and closes that socket with 1011. */
  private guarded(connection: Connection, fn: () => void, what = 'a message'): void {
    try {
      fn()
    } catch (error) {
      this.kernel.options.logger.error(
        { err: error, id: connection.id },
        `listenjs: ${what} could not be handled`,
      )
      this.outbox.close(connection, CloseCode.InternalError, 'internal error')
    }
  }

  private route(connection: Connection, data: Buffer, isBinary: boolean): void {
    if (connection.closed) return
    if (!connection.spoke) {
      connection.spoke = true
      this.silent.delete(connection)
    }
    connection.awaitingPong = false
    if (!this.takeToken(connection)) {
      this.outbox.close(connection, CloseCode.TooManyMessages, 'too many messages')
      return
    }
    const parsed = parseClientMessage(isBinary ? data : data.toString('utf8'))
    if (!parsed.ok) {
      connection.socket.send(errorFrame('bad_message', parsed.reason))
      this.outbox.close(connection, CloseCode.BadMessage, 'bad message')
      return
    }
    const message = parsed.message
    switch (message.type) {
      case 'subscribe':
        this.subscriptions.subscribe(connection, message.path, message.version, message.missing === 'wait')
        return
      case 'unsubscribe': {
        const subscription = connection.subscriptions.get(message.path)
        if (subscription) this.subscriptions.unsubscribe(subscription)
        return
      }
      case 'auth':
        // New credentials re-check every path the socket holds: that work is paid for in rate-limit
        // tokens, one per subscription, so a flood of `auth` messages is cut off, not served.
        if (!this.takeToken(connection, connection.subscriptions.size)) {
          this.outbox.close(connection, CloseCode.TooManyMessages, 'too many messages')
          return
        }
        this.subscriptions.reauthenticate(connection, withToken(connection.request, message.token))
        this.expireCredentials(connection)
        return
      case 'pong':
        return
    }
  }

  /** @internal A WebSocket ping frame: counted like a message; answered (true) unless over the rate. */
  pinged(connection: Connection): boolean {
    if (this.takeToken(connection)) return true
    this.outbox.close(connection, CloseCode.TooManyMessages, 'too many pings')
    return false
  }

  /** @internal The socket of `connection` closed: everything it held is released. */
  dropped(connection: Connection, code: number): void {
    if (!this.open.delete(connection.id)) return
    connection.closed = true
    this.silent.delete(connection)
    if (this.expiries.size) {
      clearTimeout(this.expiries.get(connection))
      this.expiries.delete(connection)
    }
    this.outbox.forgetAll(connection)
    for (const subscription of [...connection.subscriptions.values()])
      this.kernel.registry.remove(subscription)
    this.kernel.emit('disconnect', { id: connection.id, code })
  }

  /** A token bucket per socket: `messagesPerSecond` on average, bursts up to `messageBurst`. */
  private takeToken(connection: Connection, cost = 1): boolean {
    const { messagesPerSecond, messageBurst } = this.kernel.options.limits
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
}
