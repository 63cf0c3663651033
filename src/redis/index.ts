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
import type { Cluster, Redis } from 'ioredis'
import type { Backplane, BackplaneCounters, BackplaneMessage, BackplaneStatus } from '../core/backplane'
import { ListenjsError } from '../core/errors'
import { silentLogger, type Logger } from '../core/options'
import { connect, quit } from './connection'
import { bucketOfMessage, connectCluster, shardChannels, type ShardedOptions } from './sharding'
import { channelOf, encode, maxMessageBytesOf, parseWireMessage, worthLogging } from './wire'

export { parseWireMessage } from './wire'
export { redisPublisher, type RedisPublisher, type RedisPublisherOptions } from './publisher'
export type { ShardedOptions } from './sharding'

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
  /**
   * Experimental: spread the changes over `channels` sharded channels of a Redis Cluster (Redis ≥ 7,
   * `SPUBLISH`/`SSUBSCRIBE`) instead of one channel, so that Redis's work is spread over its shards
   * (docs/SCALING.md). Every process must use the same `channels`; excludes `url`, `publisher` and
   * `subscriber`. `redisPublisher` does not publish on sharded channels.
   */
  sharded?: ShardedOptions
}

/** The backplane, with its counters. */
export interface RedisBackplane extends Backplane {
  /** This process's id on the channel (its own messages are ignored when they come back). */
  readonly id: string
  /**
   * Messages published; dropped (not sent: Redis was unreachable, or the message was over a bound);
   * received; malformed ones dropped on arrival (invalid, or over a bound); and outages.
   */
  stats(): BackplaneCounters
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
 * 64 levels of nesting and 1024 paths per change, checked before
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
  const sharded = options.sharded
  if (sharded && (options.url !== undefined || options.publisher !== undefined)) {
    throw new ListenjsError('invalid_option', 'listenjs: give "sharded", or "url" or clients, not both')
  }
  // One channel, or its sharded buckets: every process subscribes to all of them.
  const channels = sharded ? shardChannels(channel, sharded.channels) : [channel]
  const listened = new Set(channels)
  const owned = options.publisher === undefined
  const publisher: Redis | Cluster =
    options.publisher ??
    (sharded ? connectCluster(sharded, 'publisher', channel) : connect(options.url, 'publisher', channel))
  const subscriber: Redis | Cluster =
    options.subscriber ??
    (sharded ? connectCluster(sharded, 'subscriber', channel) : connect(options.url, 'subscriber', channel))
  const messageEvent = sharded ? 'smessage' : 'message'
  const send = (text: string, bucket: number): Promise<unknown> =>
    sharded ? publisher.spublish(channels[bucket] as string, text) : publisher.publish(channel, text)
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
    if (!listened.has(from)) return
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
  // Sharded: the cluster is ready before its shards confirm the subscriptions; wait for them once.
  let bucketsSubscribed = !sharded
  const onReady = (): void => {
    if (closed || !bucketsSubscribed || subscriber.status !== 'ready' || publisher.status !== 'ready') return
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
      send(JSON.stringify({ v: 1, from: id, kind: 'resync' }), 0).catch(() => {
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

  subscriber.on(messageEvent, onMessage)
  for (const connection of [subscriber, publisher]) {
    connection.on('ready', onReady)
    connection.on('error', onDown)
    connection.on('close', onDown)
  }
  const subscribed = sharded
    ? Promise.all(channels.map((c) => (subscriber as Cluster).ssubscribe(c))).then(() => {
        bucketsSubscribed = true
        onReady()
      })
    : subscriber.subscribe(channel)
  subscribed.catch((error: unknown) => onDown(error))
  onReady()

  return {
    id,
    status: () => status,
    publish(message) {
      // Local first: this process never waits for Redis, and keeps working without it.
      deliver(message)
      if (closed) return
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
      const bucket = sharded ? bucketOfMessage(message, channels.length) : 0
      for (const text of encoded.texts) {
        counters.published++
        send(text, bucket).catch(() => {
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
      subscriber.off(messageEvent, onMessage)
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
