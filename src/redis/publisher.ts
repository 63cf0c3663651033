/** A publisher for processes without a hub: `redisPublisher().notify(path, payload?)`. */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { ChangeMessage, PayloadMessage } from '../core/backplane'
import { ListenjsError } from '../core/errors'
import { checkPath, expandChange } from '../core/paths'
import { quit } from './connection'
import { channelOf, encode, MAX_PATH_LENGTH, maxMessageBytesOf } from './wire'

/** Options of {@link redisPublisher}. */
export interface RedisPublisherOptions {
  /** `redis://host:port/db`. @default process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' */
  url?: string
  /** An ioredis client to publish with, yours (not closed by `close()`); named as in `redisBackplane`. */
  publisher?: Redis
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
  const redis =
    options.publisher ?? new Redis(options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  const from = randomUUID()
  const ancestors = options.notifyAncestors ?? true
  return {
    async notify(path, payload) {
      const reason = checkPath(path, MAX_PATH_LENGTH)
      if (reason !== undefined) throw new ListenjsError('bad_path', `listenjs: ${reason}`, { path })
      const message: ChangeMessage | PayloadMessage =
        payload === undefined
          ? { kind: 'change', paths: expandChange([path], ancestors), at: Date.now() }
          : { kind: 'payload', path, payload }
      const encoded = encode(from, message, maxBytes)
      if ('reason' in encoded) {
        throw new ListenjsError('limit', `listenjs: not published: ${encoded.reason}`, { path })
      }
      for (const text of encoded.texts) await redis.publish(channel, text)
    },
    async close() {
      if (!options.publisher) await quit(redis)
    },
  }
}
