/**
 * Subscription paths. A path is keyed exactly as given once it is valid: case, trailing slash and
 * percent-encoding are kept, nothing is folded. What could be read as another path by a router
 * (dot segments in any encoding, encoded slashes, backslashes, empty segments, control characters)
 * is refused instead of normalized, so one resource never hides behind two keys.
 */

/** Why a path was refused, or `undefined` when it is acceptable. */
export function checkPath(path: string, maxLength: number): string | undefined {
  if (path.length === 0 || path.charCodeAt(0) !== 47 /* / */) return 'path must start with /'
  if (path.length > maxLength) return `path is longer than ${maxLength} characters`
  if (path.includes('#')) return 'path must not contain a fragment'
  // Raw control characters, DEL, backslashes and anything outside printable ASCII: browsers and
  // HTTP clients send paths percent-encoded, so a raw one is either a mistake or a trick.
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f || c === 0x5c /* \ */) return 'path contains a forbidden character'
  }
  const q = path.indexOf('?')
  const pathname = q === -1 ? path : path.slice(0, q)
  const query = q === -1 ? '' : path.slice(q + 1)
  const segments = pathname.split('/')
  for (let i = 1; i < segments.length; i++) {
    const raw = segments[i] as string
    // An empty segment is only allowed as the last one (a trailing slash); `//` is refused.
    if (raw === '' && i < segments.length - 1) return 'path must not contain //'
    let segment: string
    try {
      segment = decodeURIComponent(raw)
    } catch {
      return 'path contains invalid percent-encoding'
    }
    if (segment === '.' || segment === '..') return 'path must not contain . or .. segments'
    // eslint-disable-next-line no-control-regex -- control characters are what this rejects
    if (/[/\\\u0000-\u001f\u007f]/.test(segment)) return 'path contains an encoded /, \\ or control character'
  }
  if (query !== '') {
    let decoded: string
    try {
      decoded = decodeURIComponent(query.replace(/\+/g, ' '))
    } catch {
      return 'query contains invalid percent-encoding'
    }
    // eslint-disable-next-line no-control-regex -- control characters are what this rejects
    if (/[\u0000-\u001f\u007f]/.test(decoded)) return 'query contains a control character'
  }
  return undefined
}

/** The path without its query string. */
export function pathnameOf(path: string): string {
  const q = path.indexOf('?')
  return q === -1 ? path : path.slice(0, q)
}

/**
 * The path and each of its ancestors, nearest first: `/a/b/42` → `/a/b/42`, `/a/b`, `/a`, `/`.
 * A trailing slash is kept on the path itself (`/a/` → `/a/`, `/a`, `/`).
 */
export function withAncestors(pathname: string): string[] {
  const out = [pathname]
  let current = pathname
  while (current.length > 1) {
    if (current.endsWith('/')) {
      current = current.slice(0, -1)
    } else {
      const cut = current.lastIndexOf('/')
      current = cut === 0 ? '/' : current.slice(0, cut)
    }
    out.push(current)
  }
  return out
}

/**
 * The paths a change to `paths` reaches: each path and, unless `ancestors` is off or the path has a
 * query, each of its ancestors; without duplicates.
 */
export function expandChange(paths: readonly string[], ancestors: boolean): string[] {
  const expanded = new Set<string>()
  for (const path of paths) {
    if (path.includes('?') || !ancestors) expanded.add(path)
    else for (const p of withAncestors(path)) expanded.add(p)
  }
  return [...expanded]
}
