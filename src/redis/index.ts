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
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  jsonDepthExceeds,
  MAX_CHANGE_PATHS,
  MAX_DEPTH,
  utf8LengthExceeds,
} from './bounds'

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
  /**
   * The largest message, in UTF-8 bytes, sent or accepted on the channel; a positive integer, the
   * same on every process. A larger one arriving is dropped before it is parsed (counted as
   * `malformed`); a larger one to send is not sent (counted as `dropped`, logged). A change with many
   * paths is split to fit; a payload is not. @default 1114112 (1 MiB of payload + 64 KiB of envelope)
   */
  maxMessageBytes?: number
  /** pino-compatible logger; an outage is logged once, not per message. @default silent */
  logger?: Logger
}

/** The backplane, with its counters. */
export interface RedisBackplane extends Backplane {
  /** This process's id on the channel (its own messages are ignored when they come back). */
  readonly id: string
  /**
   * Messages published; dropped (not sent: Redis was unreachable, or the message was over a bound);
   * received; malformed ones dropped on arrival (invalid, or over a bound); and outages.
   */
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

function maxMessageBytesOf(value: number | undefined): number {
  const max = value ?? DEFAULT_MAX_MESSAGE_BYTES
  if (!Number.isSafeInteger(max) || max <= 0) {
    throw new ListenjsError('invalid_option', 'listenjs: option "maxMessageBytes" must be a positive integer')
  }
  return max
}

/** Logged for the first event of a kind, then every thousandth: never once per message. */
const worthLogging = (count: number): boolean => count === 1 || count % 1000 === 0

/**
 * The texts to publish for one message from `from`, or why it cannot be sent. A change is split
 * into several messages so that each carries at most {@link MAX_CHANGE_PATHS} paths and fits in
 * `maxBytes`: each is handled like the whole would be. A payload is one message or none.
 * @throws what `JSON.stringify` throws for a payload it cannot serialize (a cycle, a BigInt, too deep)
 */
function encode(
  from: string,
  message: ChangeMessage | PayloadMessage,
  maxBytes: number,
): { texts: string[] } | { reason: string } {
  const texts: string[] = []
  if (message.kind === 'payload') {
    texts.push(JSON.stringify({ v: 1, from, ...message }))
  } else {
    // Exact sizes: the envelope with no paths, plus each path's JSON, plus a comma between two.
    const envelopeBytes = Buffer.byteLength(JSON.stringify({ v: 1, from, ...message, paths: [] }))
    let chunk: string[] = []
    let bytes = envelopeBytes
    const flush = (): void => {
      texts.push(JSON.stringify({ v: 1, from, ...message, paths: chunk }))
      chunk = []
      bytes = envelopeBytes
    }
    for (const path of message.paths) {
      const pathBytes = Buffer.byteLength(JSON.stringify(path))
      if (chunk.length === MAX_CHANGE_PATHS || (chunk.length > 0 && bytes + 1 + pathBytes > maxBytes)) flush()
      bytes += (chunk.length > 0 ? 1 : 0) + pathBytes
      chunk.push(path)
    }
    if (chunk.length > 0) flush()
  }
  for (const text of texts) {
    // A single path too long for `maxBytes`, or a payload too large or too deep for every hub.
    if (utf8LengthExceeds(text, maxBytes)) return { reason: `a message is over ${maxBytes} bytes` }
    if (jsonDepthExceeds(text, MAX_DEPTH)) {
      return { reason: `a message nests deeper than ${MAX_DEPTH} levels` }
    }
  }
  return { texts }
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

/**
 * Validates a message from the channel like client input: anything unexpected is refused. Before
 * parsing, a text over `maxBytes` UTF-8 bytes, or nesting arrays and objects deeper than
 * {@link MAX_DEPTH} levels, is refused, so that a hostile message costs one linear scan of a bounded
 * text; a change with more than {@link MAX_CHANGE_PATHS} paths is refused too.
 * @param text - the message as it came from Redis
 * @param maxBytes - the `maxMessageBytes` option. @default 1114112
 */
export function parseWireMessage(
  text: string,
  maxBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
): WireMessage | undefined {
  if (utf8LengthExceeds(text, maxBytes) || jsonDepthExceeds(text, MAX_DEPTH)) return undefined
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
    if (!Array.isArray(m.paths) || m.paths.length === 0 || m.paths.length > MAX_CHANGE_PATHS) return undefined
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
 *
 * Every message costs bounded work (PROTOCOL.md, "Backplane"): at most `maxMessageBytes` bytes,
 * {@link MAX_DEPTH} levels of nesting and {@link MAX_CHANGE_PATHS} paths per change, checked before
 * parsing; anything else is dropped as malformed. A message this process cannot send within those
 * bounds is delivered locally only, counted as dropped and logged; `publish` never throws.
 * @throws ListenjsError `invalid_option` for a wrong option
 */
export function redisBackplane(options: RedisBackplaneOptions = {}): RedisBackplane {
  const channel = channelOf(options.prefix)
  const maxBytes = maxMessageBytesOf(options.maxMessageBytes)
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
  // Messages not sent because they were over a bound, and handlers that threw: for logging only.
  let unsendable = 0
  let failures = 0
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
    const message = parseWireMessage(text, maxBytes)
    if (!message) {
      counters.malformed++
      if (worthLogging(counters.malformed)) {
        logger.warn({ malformed: counters.malformed }, 'listenjs: dropped a malformed backplane message')
      }
      return
    }
    if (message.from === id) return
    counters.received++
    // Called from ioredis's socket handler: an exception must not escape into it.
    try {
      if (message.kind === 'resync') {
        deliver({ kind: 'resync', spreadMs })
      } else {
        const { v: _v, from: _from, ...local } = message
        deliver(local)
      }
    } catch (error) {
      failures++
      if (worthLogging(failures)) {
        logger.error({ err: error, failures }, 'listenjs: a backplane message could not be handled')
      }
    }
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
      let encoded: ReturnType<typeof encode>
      try {
        encoded = encode(id, message, maxBytes)
      } catch (error) {
        encoded = { reason: error instanceof Error ? error.message : String(error) }
      }
      if ('reason' in encoded) {
        // Delivered here, and never to other processes: their hubs would refuse it.
        counters.dropped++
        unsendable++
        if (worthLogging(unsendable)) {
          const path = message.kind === 'payload' ? message.path : message.paths[0]
          logger.warn(
            { path, reason: encoded.reason, count: unsendable },
            'listenjs: a message over the backplane bounds was not published; other processes do not see it',
          )
        }
        return
      }
      for (const text of encoded.texts) {
        counters.published++
        publisher.publish(channel, text).catch(() => {
          counters.dropped++
          missedPublishes = true
        })
      }
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
  /**
   * The hubs' `maxMessageBytes`: a larger message is not sent (`notify` rejects). A change with many
   * paths is split to fit. @default 1114112
   */
  maxMessageBytes?: number
}

/** Announces changes to every hub from a process that has none. */
export interface RedisPublisher {
  /**
   * Same as `hub.notify(path, payload?)` on every hub process. Resolves once Redis took the message.
   * @throws ListenjsError `bad_path` for a path hubs would refuse; `limit` for a message over
   *   `maxMessageBytes` or nested deeper than 64 levels (hubs would refuse it); rejects when Redis is
   *   unreachable
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
  const maxBytes = maxMessageBytesOf(options.maxMessageBytes)
  const redis = options.redis ?? new Redis(options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  const from = randomUUID()
  const ancestors = options.notifyAncestors ?? true
  return {
    async notify(path, payload) {
      const reason = checkPath(path, MAX_PATH_LENGTH)
      if (reason !== undefined) throw new ListenjsError('bad_path', `listenjs: ${reason}`, { path })
      const message: ChangeMessage | PayloadMessage =
        payload === undefined
          ? { kind: 'change', paths: expandChange([path], ancestors) }
          : { kind: 'payload', path, payload }
      const encoded = encode(from, message, maxBytes)
      if ('reason' in encoded) {
        throw new ListenjsError('limit', `listenjs: not published: ${encoded.reason}`, { path })
      }
      for (const text of encoded.texts) await redis.publish(channel, text)
    },
    async close() {
      if (!options.redis) await quit(redis)
    },
  }
}
