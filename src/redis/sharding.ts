/**
 * Sharded channels on a Redis Cluster (Redis ≥ 7, `SPUBLISH`/`SSUBSCRIBE`): the one channel is
 * split into `channels` buckets, `<prefix>:changes:<k>`, each owned by the shard of its slot. A
 * message goes to the bucket of its first path (the changed path; its ancestors ride along), so the
 * changes of one path keep their order; every process subscribes to every bucket, so every process
 * still receives every change, and Redis's work (one write per subscriber per message) is spread
 * over the shards. docs/SCALING.md gives the model.
 */
import { Cluster, type ClusterNode, type ClusterOptions } from 'ioredis'
import type { PublishedMessage } from '../core/backplane'
import { ListenjsError } from '../core/errors'

/** Option `sharded` of `redisBackplane`. */
export interface ShardedOptions {
  /** Seed nodes of the Redis Cluster, e.g. `[{ host: '10.0.0.1', port: 6379 }]`. */
  nodes: ClusterNode[]
  /**
   * How many channels the changes are spread over; the same on every process. More channels than
   * shards spread them more evenly over the shards' slots. @default 16
   */
  channels?: number
  /** Passed to ioredis's `Cluster` (listenjs sets `shardedSubscribers` on its subscriber). */
  clusterOptions?: ClusterOptions
}

export const DEFAULT_SHARD_CHANNELS = 16
const MAX_SHARD_CHANNELS = 1024

/** The bucket channels of a `<prefix>:changes` channel. */
export function shardChannels(channel: string, count: number | undefined): string[] {
  const n = count ?? DEFAULT_SHARD_CHANNELS
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_SHARD_CHANNELS) {
    throw new ListenjsError(
      'invalid_option',
      `listenjs: option "sharded.channels" must be an integer from 1 to ${MAX_SHARD_CHANNELS}`,
    )
  }
  return Array.from({ length: n }, (_, k) => `${channel}:${k}`)
}

/** The bucket of a path: FNV-1a over its characters, modulo `count`. */
export function bucketOf(path: string, count: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < path.length; i++) {
    hash ^= path.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return (hash >>> 0) % count
}

/** The bucket a message travels on: that of its path (a change: its first path, the changed one). */
export function bucketOfMessage(message: PublishedMessage, count: number): number {
  const path = message.kind === 'payload' ? message.path : message.paths[0]
  return path === undefined ? 0 : bucketOf(path, count)
}

/** A Cluster connection of listenjs's own, named like `connect`'s, that never queues when publishing. */
export function connectCluster(options: ShardedOptions, role: string, channel: string): Cluster {
  if (!Array.isArray(options.nodes) || options.nodes.length === 0) {
    throw new ListenjsError('invalid_option', 'listenjs: option "sharded.nodes" must name at least one node')
  }
  const given = options.clusterOptions ?? {}
  return new Cluster(options.nodes, {
    ...given,
    enableOfflineQueue: role === 'subscriber',
    shardedSubscribers: role === 'subscriber',
    clusterRetryStrategy:
      given.clusterRetryStrategy ?? ((attempt) => Math.min(2000, 50 * 2 ** Math.min(attempt, 6))),
    redisOptions: {
      ...given.redisOptions,
      maxRetriesPerRequest: 1,
      connectionName: `listenjs-${role}-${channel.replace(/[^\w:.-]/g, '_')}`,
    },
  })
}
