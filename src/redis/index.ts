/**
 * `listenjs/redis`: a Redis pub/sub backplane for several hub processes, and a publisher for
 * processes without a hub (a worker, a cron job). Uses `ioredis` (an optional peer dependency).
 *
 * What travels: one JSON message per change on one channel (`<prefix>:changes`), carrying the
 * changed paths (ancestors already expanded) or an explicit payload, and the sender's id. Every
 * process receives every change and looks its paths up in its own registry: a path nobody listens to
 * costs a map lookup and never a replay. Each process replays GETs for its own subscribers only.
 */
import { randomUUID } from 'node:crypto'
import Redis, { type RedisOptions } from 'ioredis'
import type {
  Backplane,
  BackplaneMessage,
  BackplaneStatus,
  ChangeMessage,
  PayloadMessage,
} from '../core/backplane'
import { ListenjsError } from '../core/errors'
import { silentLogger, type Logger } from '../core/options'
import { checkPath, expandChange } from '../core/paths'

/** The wire format on the channel (PROTOCOL.md, "Backplane"). */
interface WireChange extends ChangeMessage {
  readonly v: 1
  readonly from: string
}
interface WirePayload extends PayloadMessage {
  readonly v: 1
  readonly from: string
}
/** Sent by a process whose publishing failed: every other process re-checks what it holds. */
interface WireResync {
  readonly v: 1
  readonly from: string
  readonly kind: 'resync'
}
type WireMessage = WireChange | WirePayload | WireResync

/** Where to find Redis: a URL, or ioredis clients you own (they are not closed by listenjs). */
export interface RedisConnection {
  /** `redis://host:port/db`. @default process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' */
  url?: string
  /** An ioredis client to publish with (yours: listenjs does not close it). */
  publisher?: Redis
  /** An ioredis client dedicated to subscribing (yours: listenjs does not close it). */
  subscriber?: Redis
  /** Channel prefix, to share one Redis between apps. @default 'listenjs' */
  prefix?: string
}

/** Options of {@link redisBackplane}. */
export interface RedisBackplaneOptions extends RedisConnection {
  /**
   * After an outage, each hub re-checks every path its subscribers hold, each at a random moment
   * within this many milliseconds, so that many processes do not stampede the app. @default 2000
   */
  resyncSpreadMs?: number
  /** pino-compatible logger; an outage is logged once, not per message. @default silent */
  logger?: Logger
}

/** The backplane, with its counters. */
export interface RedisBackplane extends Backplane {
  /** This process's id on the channel (its own messages are ignored when they come back). */
  readonly id: string
  /** Messages published, dropped while Redis was unreachable, received, and malformed ones dropped. */
  stats(): { published: number; dropped: number; received: number; malformed: number; outages: number }
}

const DEFAULT_PREFIX = 'listenjs'
/**
 * The longest path accepted from the channel or by the publisher. Hubs bound their own subscriptions
 * with `limits.pathLength`; this only keeps a broken or hostile message from carrying a huge one.
 */
const MAX_PATH_LENGTH = 8_192

function channelOf(prefix: string | undefined): string {
  const value = prefix ?? DEFAULT_PREFIX
  if (typeof value !== 'string' || value === '') {
    throw new ListenjsError('invalid_option', 'listenjs: option "prefix" must be a non-empty string')
  }
  return `${value}:changes`
}

/**
 * Creates a connection that never queues: while Redis is unreachable, commands fail at once
 * instead of piling up in memory, and HTTP requests are never slowed by the backplane.
 */
function connect(url: string | undefined, role: string, channel: string): Redis {
  const options: RedisOptions = {
    enableOfflineQueue: role === 'subscriber',
    maxRetriesPerRequest: 1,
    // Named after role and channel, so `CLIENT LIST` tells which app each connection serves.
    connectionName: `listenjs-${role}-${channel.replace(/[^\w:.-]/g, '_')}`,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(2000, 50 * 2 ** Math.min(attempt, 6)),
  }
  return new Redis(url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', options)
}

/** Validates a message from the channel like client input: anything unexpected is refused. */
export function parseWireMessage(text: string): WireMessage | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const m = value as Record<string, unknown>
  if (m.v !== 1 || typeof m.from !== 'string') return undefined
  if (m.kind === 'change') {
    if (!Array.isArray(m.paths) || m.paths.length === 0) return undefined
    if (!m.paths.every((p) => typeof p === 'string' && checkPath(p, MAX_PATH_LENGTH) === undefined))
      return undefined
    const origin = m.origin as Record<string, unknown> | undefined
    if (origin !== undefined && (typeof origin !== 'object' || origin === null)) return undefined
    if (origin && (typeof origin.id !== 'string' || typeof origin.credentials !== 'string')) return undefined
    return {
      v: 1,
      from: m.from,
      kind: 'change',
      paths: m.paths as string[],
      ...(origin ? { origin: { id: origin.id as string, credentials: origin.credentials as string } } : {}),
    }
  }
  if (m.kind === 'resync') return { v: 1, from: m.from, kind: 'resync' }
  if (m.kind === 'payload') {
    if (typeof m.path !== 'string' || checkPath(m.path, MAX_PATH_LENGTH) !== undefined || !('payload' in m))
      return undefined
    return { v: 1, from: m.from, kind: 'payload', path: m.path, payload: m.payload }
  }
  return undefined
}

/**
 * The Redis backplane: pass it as the hub's `backplane` option in any adapter.
 *
 * A change is applied locally at once and published; other processes apply it when it arrives;
 * a process ignores its own messages. While Redis is unreachable, local delivery goes on, publishing
 * drops (counted, never queued), and the outage is logged once. When Redis is back, the hub is told
 * to re-check every path its subscribers hold, spread over `resyncSpreadMs`.
 */
export function redisBackplane(options: RedisBackplaneOptions = {}): RedisBackplane {
  const channel = channelOf(options.prefix)
  const logger = options.logger ?? silentLogger
  const spreadMs = options.resyncSpreadMs ?? 2000
  if (!Number.isFinite(spreadMs) || spreadMs < 0) {
    throw new ListenjsError('invalid_option', 'listenjs: option "resyncSpreadMs" must be a number ≥ 0')
  }
  if ((options.publisher === undefined) !== (options.subscriber === undefined)) {
    throw new ListenjsError('invalid_option', 'listenjs: give both "publisher" and "subscriber", or neither')
  }
  const owned = options.publisher === undefined
  const publisher = options.publisher ?? connect(options.url, 'publisher', channel)
  const subscriber = options.subscriber ?? connect(options.url, 'subscriber', channel)
  const id = randomUUID()
  const handlers = new Set<(message: BackplaneMessage) => void>()
  const counters = { published: 0, dropped: 0, received: 0, malformed: 0, outages: 0 }
  let status: BackplaneStatus = 'connecting'
  let everReady = false
  let closed = false
  // Changes this process could not publish since its publisher was last ready: when it is ready
  // again, it asks every other process to re-check, since they missed them.
  let missedPublishes = false

  const deliver = (message: BackplaneMessage): void => {
    for (const handler of handlers) handler(message)
  }

  const onMessage = (from: string, text: string): void => {
    if (from !== channel) return
    const message = parseWireMessage(text)
    if (!message) {
      counters.malformed++
      if (counters.malformed === 1 || counters.malformed % 1000 === 0) {
        logger.warn({ malformed: counters.malformed }, 'listenjs: dropped a malformed backplane message')
      }
      return
    }
    if (message.from === id) return
    counters.received++
    if (message.kind === 'resync') return deliver({ kind: 'resync', spreadMs })
    const { v: _v, from: _from, ...local } = message
    deliver(local)
  }

  // Connected means both connections are ready: a change can be sent and received.
  const onReady = (): void => {
    if (closed || subscriber.status !== 'ready' || publisher.status !== 'ready') return
    if (status === 'connected') return
    // Back after an outage (even one before the first connection): changes may have been missed.
    const outage = status === 'disconnected'
    status = 'connected'
    if (outage || everReady) {
      logger.info('listenjs: backplane connected again; re-checking every subscribed path')
      deliver({ kind: 'resync', spreadMs })
    }
    everReady = true
    if (missedPublishes) {
      missedPublishes = false
      publisher.publish(channel, JSON.stringify({ v: 1, from: id, kind: 'resync' })).catch(() => {
        missedPublishes = true
      })
    }
  }
  const onDown = (error?: unknown): void => {
    if (closed || status === 'disconnected') return
    // Logged once per outage, not per message or per reconnect attempt.
    counters.outages++
    status = 'disconnected'
    logger.error({ err: error }, 'listenjs: backplane disconnected; local delivery goes on')
  }

  subscriber.on('message', onMessage)
  for (const connection of [subscriber, publisher]) {
    connection.on('ready', onReady)
    connection.on('error', onDown)
    connection.on('close', onDown)
  }
  subscriber.subscribe(channel).catch((error: unknown) => onDown(error))
  onReady()

  return {
    id,
    status: () => status,
    publish(message) {
      // Local first: this process never waits for Redis, and keeps working without it.
      deliver(message)
      if (message.kind === 'resync' || closed) return
      if (publisher.status !== 'ready') {
        counters.dropped++
        missedPublishes = true
        return
      }
      counters.published++
      publisher.publish(channel, JSON.stringify({ v: 1, from: id, ...message })).catch(() => {
        counters.dropped++
        missedPublishes = true
      })
    },
    subscribe(handler) {
      handlers.add(handler)
      return () => handlers.delete(handler)
    },
    stats: () => ({ ...counters }),
    async close() {
      if (closed) return
      closed = true
      status = 'closed'
      handlers.clear()
      subscriber.off('message', onMessage)
      for (const connection of [subscriber, publisher]) {
        connection.off('ready', onReady)
        connection.off('close', onDown)
      }
      if (owned) await Promise.all([quit(publisher), quit(subscriber)])
      else await subscriber.unsubscribe(channel).catch(() => undefined)
      // Kept until the connections are closed: ioredis reports errors without a listener as unhandled.
      for (const connection of [subscriber, publisher]) connection.off('error', onDown)
    },
  }
}

/** Ends a connection we own: politely when it is up, at once otherwise. */
async function quit(redis: Redis): Promise<void> {
  if (redis.status === 'ready') {
    await redis.quit().catch(() => redis.disconnect())
  } else {
    redis.disconnect()
  }
}

/** Options of {@link redisPublisher}. */
export interface RedisPublisherOptions {
  /** `redis://host:port/db`. @default process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' */
  url?: string
  /** An ioredis client you own (not closed by `close()`). */
  redis?: Redis
  /** The hubs' channel prefix. @default 'listenjs' */
  prefix?: string
  /** Whether a change to `/a/b` also changes `/a` and `/`, as in the hubs. @default true */
  notifyAncestors?: boolean
}

/** Announces changes to every hub from a process that has none. */
export interface RedisPublisher {
  /**
   * Same as `hub.notify(path, payload?)` on every hub process. Resolves once Redis took the message.
   * @throws ListenjsError `bad_path` for a path hubs would refuse; rejects when Redis is unreachable
   */
  notify(path: string, payload?: unknown): Promise<void>
  /** Closes the connection if listenjs opened it. */
  close(): Promise<void>
}

/**
 * A publisher for processes without a hub or HTTP server (a worker, a cron job):
 * `await redisPublisher().notify('/appointments')` and every subscriber on every hub process gets
 * the fresh state.
 */
export function redisPublisher(options: RedisPublisherOptions = {}): RedisPublisher {
  const channel = channelOf(options.prefix)
  const redis = options.redis ?? new Redis(options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  const from = randomUUID()
  const ancestors = options.notifyAncestors ?? true
  return {
    async notify(path, payload) {
      const reason = checkPath(path, MAX_PATH_LENGTH)
      if (reason !== undefined) throw new ListenjsError('bad_path', `listenjs: ${reason}`, { path })
      const message =
        payload === undefined
          ? { v: 1, from, kind: 'change', paths: expandChange([path], ancestors) }
          : { v: 1, from, kind: 'payload', path, payload }
      await redis.publish(channel, JSON.stringify(message))
    },
    async close() {
      if (!options.redis) await quit(redis)
    },
  }
}
