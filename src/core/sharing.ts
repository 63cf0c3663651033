/**
 * Who may share a replay, and with what request it is made (SPEC §2.4).
 *
 * A subscription joins one group per path; one replay per change serves the whole group. The group
 * is chosen so that nobody is ever pushed a body made with somebody else's request:
 * - `own`: subscribers whose replay requests are identical (the default: every forwarded header,
 *   the address and TLS state). Replayed with that request.
 * - `identified`: subscribers `identify` declared equivalent (e.g. one user's tabs), on one Host and
 *   scheme. Replayed with one member's request; only a 2xx is shared (a refusal seen with one
 *   member's credentials is checked again with each member's own).
 * - `public` (`PUBLIC` from `identify`) and `route` (the GET route said `public: true`): replayed
 *   with no member's credentials or address at all, keyed by what can change a public body (Host,
 *   scheme, and the forwarded host and scheme behind a trusted proxy), so no member can poison what
 *   the others see. A `route` group's answer is shared only if that very replay still says public.
 */
import { createHash } from 'node:crypto'
import { trustsPeer, type ResolvedTrustProxy } from './proxy'
import type { Group, Registry, Subscription } from './registry'
import {
  contextFromRequest,
  contextKey,
  type ReplayContext,
  type ReplayResult,
  type UpgradeRequest,
} from './replay'

/** How a group's members relate; see the module comment. */
export type GroupKind = 'own' | 'identified' | 'public' | 'route'

/** What to do with a shared replay's answer. */
export type Verdict = 'apply' | 'split'

/** The address a public replay is made from: no member's. */
const NO_ADDRESS = '0.0.0.0'

/**
 * The part of a request that may change a public body: Host, scheme, and (behind a trusted proxy)
 * the forwarded host and scheme.
 */
function publicHeaders(request: UpgradeRequest, trustProxy: ResolvedTrustProxy): Record<string, string> {
  const headers: Record<string, string> = {}
  const host = request.headers.host
  if (typeof host === 'string') headers.host = host
  if (trustsPeer(request.remoteAddress, trustProxy)) {
    for (const name of ['x-forwarded-host', 'x-forwarded-proto']) {
      const value = request.headers[name]
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
    }
  }
  return headers
}

/** The request a public group is replayed with: Host and scheme only, no credentials, no address. */
export function publicContext(request: UpgradeRequest, trustProxy: ResolvedTrustProxy): ReplayContext {
  return {
    headers: publicHeaders(request, trustProxy),
    remoteAddress: NO_ADDRESS,
    encrypted: request.encrypted,
  }
}

/**
 * The public keys made last, by what they were made of. Most sockets of a hub share a few Hosts:
 * they then share one key string (each socket keeps its key), and the hash is made once.
 */
const recentPublicKeys = new Map<string, string>()
const RECENT_PUBLIC_KEYS = 64

/** A key for {@link publicContext}: equal keys, equal public replays. */
export function publicKey(request: UpgradeRequest, trustProxy: ResolvedTrustProxy): string {
  const headers = publicHeaders(request, trustProxy)
  const canonical = JSON.stringify([
    request.encrypted,
    headers.host ?? '',
    headers['x-forwarded-host'] ?? '',
    headers['x-forwarded-proto'] ?? '',
  ])
  let key = recentPublicKeys.get(canonical)
  if (key === undefined) {
    key = createHash('sha256').update(canonical).digest('base64url').slice(0, 22)
    if (recentPublicKeys.size >= RECENT_PUBLIC_KEYS) {
      // The oldest goes (a Map iterates in insertion order).
      recentPublicKeys.delete(recentPublicKeys.keys().next().value as string)
    }
    recentPublicKeys.set(canonical, key)
  }
  return key
}

/** What an `own` group's key starts with. */
const OWN = 'o:'

/**
 * The key of the `own` group of a socket with `request` (its replay context's key), as one flat
 * string: a socket keeps it for as long as it is open.
 */
export function ownKeyOf(request: UpgradeRequest): string {
  // `join` makes one flat string, where `+` keeps a pair of strings that is flattened later, into a
  // second string, when the key is first hashed.
  return [OWN, contextKey(contextFromRequest(request))].join('')
}

/** Group keys: the kind is the prefix, so a key says how its group may share. */
export const groupKey = {
  own: (key: string): string => `${OWN}${key}`,
  identified: (publicKey: string, id: string): string => `i:${publicKey}:${id}`,
  public: (publicKey: string): string => `p:${publicKey}`,
  route: (publicKey: string): string => `r:${publicKey}`,
}

/** The kind of the group of `key`. */
export function kindOf(key: string): GroupKind {
  switch (key.charCodeAt(0)) {
    case 105 /* i */:
      return 'identified'
    case 112 /* p */:
      return 'public'
    case 114 /* r */:
      return 'route'
    default:
      return 'own'
  }
}

/**
 * Whether a group of `kind` may take `result` (not a 5xx, 429 or 408: those are retried) as the
 * answer for all its members, or must split into its members' own groups, each replayed with its
 * own request.
 */
export function verdict(kind: GroupKind, result: ReplayResult): Verdict {
  const { status } = result
  switch (kind) {
    case 'own':
      return 'apply'
    case 'identified':
      return status >= 200 && status <= 299 ? 'apply' : 'split'
    case 'public':
      // `identify` declared the path public: its data and its absence are everyone's.
      return (status >= 200 && status <= 299) || status === 404 || status === 410 ? 'apply' : 'split'
    case 'route':
      return result.public ? 'apply' : 'split'
  }
}

/**
 * The group a subscriber belongs in after an answer made with its own request: the route-public
 * group of its Host when that answer said public (unless `identify` already made it public), else
 * its identity's; but its own group when that group may not share the answer (a 404 or 410 for a
 * subscription that waits for its resource, in an `identify` group: it waits as after a split).
 */
export function groupFor(
  registry: Registry,
  subscription: Subscription,
  result: ReplayResult,
  trustProxy: ResolvedTrustProxy,
): Group {
  const { connection, resource, identity } = subscription
  let key = result.public && kindOf(identity) !== 'public' ? groupKey.route(connection.publicKey) : identity
  if (verdict(kindOf(key), result) === 'split') key = connection.ownKey
  return registry.group(resource, key, () => publicContext(connection.request, trustProxy))
}
