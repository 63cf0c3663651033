/**
 * The origin check of the endpoint, for upgrades and HTTP streams alike (`allowedOrigins`).
 */
import type { IncomingMessage } from 'node:http'
import type { OriginCheck } from '../core/options'
import { trustsPeer, type ResolvedTrustProxy } from '../core/proxy'
import { upgradeRequestOf } from '../core/replay'

/**
 * Whether the upgrade's `Origin` may connect. No `Origin` (a non-browser client) is allowed. A list
 * matches exact origins only (`null` only when listed). The default allows only the page's own
 * origin: the scheme of the connection (or `X-Forwarded-Proto` behind a trusted proxy) and the `Host`
 * header (or `X-Forwarded-Host`).
 */
export function originAllowed(
  req: IncomingMessage,
  allowed: readonly string[] | OriginCheck | undefined,
  trustProxy: ResolvedTrustProxy,
): boolean {
  const origin = req.headers.origin
  if (origin === undefined) return true
  if (typeof allowed === 'function') {
    try {
      return allowed(origin, upgradeRequestOf(req)) === true
    } catch {
      return false
    }
  }
  if (allowed !== undefined) return allowed.includes(origin)
  const forwarded = (name: string): string | undefined => {
    const value = trustsPeer(req.socket.remoteAddress ?? '', trustProxy) ? req.headers[name] : undefined
    const first = (Array.isArray(value) ? value[0] : value)?.split(',')[0]?.trim()
    return first === '' ? undefined : first
  }
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true
  const scheme = (forwarded('x-forwarded-proto') ?? (encrypted ? 'https' : 'http')).toLowerCase()
  const host = forwarded('x-forwarded-host') ?? req.headers.host
  if ((scheme !== 'http' && scheme !== 'https') || host === undefined) return false
  try {
    // Both through URL, so that default ports and case compare equal.
    return new URL(origin).origin === new URL(`${scheme}://${host}`).origin
  } catch {
    return false
  }
}
