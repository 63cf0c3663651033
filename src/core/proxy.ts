/**
 * Who the client is behind trusted proxies (the `trustProxy` option), as Express's `trust proxy`
 * reads it: each trusted proxy appends the address it saw to `X-Forwarded-For`, so the client is
 * found by walking that list from the right, past the trusted hops, never by believing its left end
 * (which any client can write).
 */

/**
 * Which proxies are trusted: `false` (none: the TCP peer is the client), `true` (the immediate peer
 * only: one hop), a number of hops, or the addresses of the trusted proxies.
 */
export type TrustProxy = boolean | number | readonly string[]

/** `trustProxy` as the hub keeps it: a hop count, or the trusted proxies' addresses. */
export type ResolvedTrustProxy = number | readonly string[]

/** Resolves the option: `false` → 0 hops, `true` → 1 hop. */
export function resolveTrustProxy(trust: TrustProxy | undefined): ResolvedTrustProxy {
  if (trust === undefined || trust === false) return 0
  if (trust === true) return 1
  if (typeof trust === 'number') return trust
  return trust.map(plainAddress)
}

/** Whether the TCP peer is a proxy whose forwarded headers are believed. */
export function trustsPeer(peer: string, trust: ResolvedTrustProxy): boolean {
  return typeof trust === 'number' ? trust > 0 : trust.includes(plainAddress(peer))
}

/**
 * The client's address: the TCP peer's, or behind trusted proxies the address the outermost
 * trusted one saw (see the module comment).
 */
export function clientAddress(
  peer: string,
  forwardedFor: string | readonly string[] | undefined,
  trust: ResolvedTrustProxy,
): string {
  if (!trustsPeer(peer, trust) || forwardedFor === undefined) return peer
  const hops = (typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(','))
    .split(',')
    .map((hop) => hop.trim())
    .filter((hop) => hop !== '')
  if (hops.length === 0) return peer
  if (typeof trust === 'number') return hops[Math.max(0, hops.length - trust)] as string
  // Walk left while the address at hand is a trusted proxy.
  let address = peer
  for (let i = hops.length - 1; i >= 0 && trust.includes(plainAddress(address)); i--)
    address = hops[i] as string
  return address
}

/**
 * The path the app is served under for a request: a trusted proxy's `X-Forwarded-Prefix` (when it is
 * a clean path), else `basePath`; `''` for none. A trailing slash is dropped.
 */
export function servedUnder(
  peer: string,
  forwardedPrefix: string | readonly string[] | undefined,
  trust: ResolvedTrustProxy,
  basePath: string,
  isBasePath: (value: string) => boolean,
): string {
  if (forwardedPrefix !== undefined && trustsPeer(peer, trust)) {
    const first = (typeof forwardedPrefix === 'string' ? forwardedPrefix : forwardedPrefix[0])
      ?.split(',')[0]
      ?.trim()
    const prefix = first?.endsWith('/') ? first.slice(0, -1) : first
    if (prefix === '') return ''
    if (prefix !== undefined && isBasePath(prefix)) return prefix
  }
  return basePath
}

/** `path` below `prefix`, as the app sees it (`/app/a?b` under `/app` → `/a?b`), or `path` itself. */
export function belowPrefix(path: string, prefix: string): string {
  if (prefix === '' || !path.startsWith(prefix)) return path
  const next = path.charCodeAt(prefix.length)
  if (Number.isNaN(next)) return '/'
  if (next === 63 /* ? */) return `/${path.slice(prefix.length)}`
  return next === 47 /* / */ ? path.slice(prefix.length) : path
}

/** `::ffff:10.0.0.1` → `10.0.0.1`, so that IPv4 proxies match however the socket reports them. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address
}
