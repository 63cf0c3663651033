/** The hub's public types: route options, the matched route, stats and events. */
import type { Server } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { BackplaneCounters, BackplaneStatus } from './backplane'

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
  /** The backplane's message counters (published, dropped, received, malformed, outages), when it keeps them (Redis). */
  backplaneMessages?: BackplaneCounters
  /**
   * Patches (`listenjs.v1.1`): characters of last states kept now (bounded by `patches.memoryBytes`),
   * patches computed since the hub started (once per group and change), and those of them that went
   * as full states instead (no smaller patch).
   */
  patches: { stateBytes: number; computed: number; declined: number }
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
  /** How many of them got it as a patch (`listenjs.v1.1`). */
  readonly patched: number
  /** The route template that answered its replay (`/items/:id`), when the adapter saw one. */
  readonly route?: string
  /**
   * From the publication of the change that caused it (on whichever process made the write) to
   * this push being handed to the sockets, in ms; absent for a push no change carried a time for
   * (`notify` with a payload, a re-check, a resync). Across processes, it trusts their clocks.
   */
  readonly sinceChangeMs?: number
}
/**
 * What became of a replay: `changed` (a new state was sent), `unchanged` (every subscriber held it),
 * `gone` (404 or 410, subscribers kept), `refused` (401, 403, or a missing resource nobody waits
 * for: subscriptions ended), `failed` (another answer: subscriptions ended), `retried` (5xx, 408,
 * 429 or no answer on a push: tried again later), `split` (a shared answer that was not everyone's:
 * each member is replayed with its own request).
 */
export type ReplayOutcome = 'changed' | 'unchanged' | 'gone' | 'refused' | 'failed' | 'retried' | 'split'

/** Payload of the `replay` event: one replay of `path`, for a subscription's snapshot or a push. */
export interface ReplayEvent {
  readonly path: string
  readonly kind: 'snapshot' | 'push'
  readonly outcome: ReplayOutcome
  /** The status the route answered (a replay that timed out or was too large counts as 504 or 502). */
  readonly status: number
  /** From the dispatch of the GET to its answer. */
  readonly durationMs: number
  /** The route template that answered it (`/items/:id`), when the adapter saw one. */
  readonly route?: string
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
  replay: [ReplayEvent]
  disconnect: [DisconnectEvent]
}
