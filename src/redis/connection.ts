/** The Redis connections listenjs opens for itself, and how it closes them. */
import { Redis, type Cluster, type RedisOptions } from 'ioredis'

/**
 * Creates a connection that never queues: while Redis is unreachable, commands fail at once
 * instead of piling up in memory, and HTTP requests are never slowed by the backplane.
 */
export function connect(url: string | undefined, role: string, channel: string): Redis {
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

/** Ends a connection we own: politely when it is up, at once otherwise. */
export async function quit(redis: Redis | Cluster): Promise<void> {
  if (redis.status === 'ready') {
    await redis.quit().catch(() => redis.disconnect())
  } else {
    redis.disconnect()
  }
}
