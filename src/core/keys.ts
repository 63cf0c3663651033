/**
 * Change keys: the paths under which one write is announced. A write is keyed by the path the
 * client wrote, by the path the router understood (the matched route template filled with the
 * decoded params) and by what the response says it changed (`Content-Location`, `Location`), so
 * that no spelling of a request-target the router accepts can hide a write from the subscribers of
 * the resource it changed. Pure functions: no framework is imported here.
 */
import { checkPath, pathnameOf, withAncestors } from './paths'

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/**
 * The path (and query) of a request-target: origin-form as is; absolute-form (`http://host/a?b`)
 * reduced to `/a?b` without normalizing anything else (no dot-segment resolution, no
 * percent-decoding); authority-form, asterisk-form or empty → `/`.
 */
export function requestTargetPath(target: string): string {
  if (target.startsWith('/')) return target
  const scheme = ABSOLUTE_FORM.exec(target)
  if (scheme === null) return '/'
  // The authority ends at the first `/`, `?` or `#` after `scheme://` (RFC 3986 §3.2).
  const rest = target.slice(scheme[0].length)
  const end = rest.search(/[/?#]/)
  if (end === -1) return '/'
  const tail = rest.slice(end)
  return tail.startsWith('/') ? tail : `/${tail}`
}

/** A parsed route template. */
type Token =
  | { readonly type: 'text'; readonly value: string }
  | { readonly type: 'param'; readonly name: string }
  | { readonly type: 'wildcard'; readonly name: string }
  | { readonly type: 'group'; readonly tokens: readonly Token[] }

// path-to-regexp 8's parameter names (Express 5, @koa/router 15).
const ID_START = /^[$_\p{ID_Start}]$/u
const ID_CONTINUE = /^[$\u200c\u200d\p{ID_Continue}]$/u
// Where a find-my-way (Fastify) parameter name ends.
const FASTIFY_NAME_END = new Set(['(', '-', '.', '/'])

/**
 * Parses a template written for find-my-way (Fastify) or path-to-regexp 8 (Express 5, @koa/router):
 * the two syntaxes do not conflict, since each refuses at registration what the other gives a
 * meaning to (`::`, `(regex)`, `:name?`, a bare `*` for find-my-way; `{…}`, `\`, `:"name"`,
 * `*name` for path-to-regexp). Undefined for what neither understands.
 */
function parseTemplate(template: string, params: Readonly<Record<string, unknown>>): Token[] | undefined {
  const chars = [...template]
  let index = 0

  function quotedName(): string | undefined {
    // After `"`: up to the closing quote, `\` escaping the next character.
    let name = ''
    index++
    while (index < chars.length) {
      const c = chars[index++] as string
      if (c === '"') return name === '' ? undefined : name
      if (c === '\\') {
        if (index === chars.length) return undefined
        name += chars[index++] as string
      } else name += c
    }
    return undefined
  }

  function idName(): string {
    let name = ''
    while (index < chars.length && (name === '' ? ID_START : ID_CONTINUE).test(chars[index] as string)) {
      name += chars[index++] as string
    }
    return name
  }

  /** The name of a `:param`; the Fastify reading wins only when the params name it and not the other. */
  function paramName(): string | undefined {
    if (chars[index] === '"') return quotedName()
    const start = index
    let fastifyEnd = start
    while (fastifyEnd < chars.length && !FASTIFY_NAME_END.has(chars[fastifyEnd] as string)) fastifyEnd++
    const fastifyName = chars.slice(start, fastifyEnd).join('')
    const name = idName()
    if (
      fastifyName !== name &&
      fastifyName !== '' &&
      !Object.hasOwn(params, name) &&
      Object.hasOwn(params, fastifyName)
    ) {
      index = fastifyEnd
      return fastifyName
    }
    return name === '' ? undefined : name
  }

  /** Skips a find-my-way `(regex)` after a parameter; false when its parentheses do not balance. */
  function skipRegex(): boolean {
    let depth = 0
    let inClass = false
    while (index < chars.length) {
      const c = chars[index++] as string
      if (c === '\\') index++
      else if (inClass) inClass = c !== ']'
      else if (c === '[') inClass = true
      else if (c === '(') depth++
      else if (c === ')' && --depth === 0) return true
    }
    return false
  }

  function tokens(end: '' | '}'): Token[] | undefined {
    const out: Token[] = []
    let text = ''
    const flush = (): void => {
      if (text !== '') out.push({ type: 'text', value: text })
      text = ''
    }
    while (index < chars.length) {
      const c = chars[index++] as string
      if (c === end) {
        flush()
        return out
      }
      if (c === '\\') {
        if (index === chars.length) return undefined
        text += chars[index++] as string
      } else if (c === ':' && chars[index] === ':') {
        // find-my-way: `::` is a literal colon.
        index++
        text += ':'
      } else if (c === ':') {
        const name = paramName()
        if (name === undefined) return undefined
        if (chars[index] === '(' && !skipRegex()) return undefined
        if (chars[index] === '?') {
          // find-my-way's optional last parameter: absent, it takes its leading `/` with it.
          index++
          const slash = text.endsWith('/')
          if (slash) text = text.slice(0, -1)
          flush()
          const inner: Token[] = [{ type: 'param', name }]
          out.push({ type: 'group', tokens: slash ? [{ type: 'text', value: '/' }, ...inner] : inner })
        } else {
          flush()
          out.push({ type: 'param', name })
        }
      } else if (c === '*') {
        const next = chars[index]
        let name: string | undefined = '*' // find-my-way's bare wildcard, value in params['*']
        if (next === '"') name = quotedName()
        else if (next !== undefined && ID_START.test(next)) name = idName()
        if (name === undefined) return undefined
        flush()
        out.push({ type: 'wildcard', name })
      } else if (c === '{') {
        flush()
        const group = tokens('}')
        if (group === undefined) return undefined
        out.push({ type: 'group', tokens: group })
      } else if (c === '}' || c === '(' || c === ')' || c === '?') {
        return undefined
      } else text += c
    }
    if (end !== '') return undefined
    flush()
    return out
  }

  return tokens('')
}

const SEGMENT_UNESCAPE = /%(?:3A|40|21|24|26|27|28|29|2A|2B|2C|3B|3D)/g

/** A decoded value as one path segment: percent-encoded except `: @ ! $ & ' ( ) * + , ; =`. */
function encodeSegment(value: string): string | undefined {
  try {
    return encodeURIComponent(value).replace(SEGMENT_UNESCAPE, decodeURIComponent)
  } catch {
    return undefined // a lone surrogate
  }
}

/** Template text as it may stand in a path: existing `%XX` and legal characters kept, others encoded. */
function encodeText(text: string): string | undefined {
  let out = ''
  for (const c of text) {
    if (/^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]$/.test(c)) out += c
    else {
      const encoded = encodeSegment(c)
      if (encoded === undefined) return undefined
      out += encoded
    }
  }
  return out
}

/** The missing marker, apart from `undefined` which means "cannot be filled at all". */
const MISSING = Symbol('missing')

function fill(
  tokens: readonly Token[],
  params: Readonly<Record<string, unknown>>,
): string | typeof MISSING | undefined {
  let out = ''
  for (const token of tokens) {
    let piece: string | typeof MISSING | undefined
    switch (token.type) {
      case 'text':
        piece = encodeText(token.value)
        break
      case 'param': {
        const value = Object.hasOwn(params, token.name) ? params[token.name] : undefined
        piece = typeof value === 'string' ? encodeSegment(value) : MISSING
        break
      }
      case 'wildcard': {
        const value = Object.hasOwn(params, token.name) ? params[token.name] : undefined
        // find-my-way and @koa/router give the rest as one decoded string, Express 5 as an array.
        const segments =
          typeof value === 'string'
            ? value.split('/')
            : Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')
              ? (value as string[])
              : undefined
        if (segments === undefined) piece = MISSING
        else {
          const encoded = segments.map(encodeSegment)
          piece = encoded.includes(undefined) ? undefined : encoded.join('/')
        }
        break
      }
      case 'group': {
        const inner = fill(token.tokens, params)
        piece = inner === MISSING ? '' : inner
        break
      }
    }
    if (piece === undefined || piece === MISSING) return piece
    out += piece
  }
  return out
}

/**
 * The router's canonical path: `template` filled with `params`, whose values are decoded strings
 * as frameworks give them, each re-encoded as a path segment (`encodeURIComponent`, then the
 * characters legal in a segment, `: @ ! $ & ' ( ) * + , ; =`, unescaped).
 *
 * Understands find-my-way (Fastify: `/items/:id`, a `(regex)` suffix, several params in one segment
 * as in `/:a-:b` and `/:a.:b`, `*` whose value is `params['*']`, `::` for a literal colon, an
 * optional last `:param?`) and path-to-regexp 8 (Express 5, @koa/router 15: `:id`, `:"quoted"`,
 * `*splat` whose value is an array of segments or a `/`-joined string, `{/:opt}` groups kept only
 * when every param inside is present, `\` escapes).
 * @returns the path, or `undefined` when the template cannot be filled (a param missing, a value
 * that is not a string, a syntax not understood)
 */
export function fillRoute(template: string, params: Readonly<Record<string, unknown>>): string | undefined {
  if (STATIC_TEMPLATE.test(template)) return staticRoute(template)
  const tokens = parseTemplate(template, params)
  if (tokens === undefined) return undefined
  const path = fill(tokens, params)
  return typeof path === 'string' ? path : undefined
}

const BASES = ['http://a.invalid', 'http://b.invalid'] as const

/**
 * The path named by a `Content-Location` or `Location` header value, resolved against the
 * request's path as RFC 9110 says (relative references allowed). An absolute URL (or a
 * `//authority` reference) counts only when its host equals `host` (the request's `Host`,
 * compared case-insensitively and with default ports ignored).
 * @returns the resolved pathname (no query, no fragment), or `undefined` for an empty,
 * unparsable, foreign or non-http(s) value
 */
export function headerPath(
  value: string | undefined,
  requestPath: string,
  host: string | undefined,
): string | undefined {
  const reference = value?.trim()
  if (!reference) return undefined
  const base = pathnameOf(requestTargetPath(requestPath))
  // Resolve against two bases that differ only by host: whether the result's host followed the
  // base tells a relative reference from one that names its own authority, whatever quirks of the
  // URL parser (`\\host`, tabs, leading spaces) made it one.
  let resolved: URL[]
  try {
    resolved = BASES.map((b) => new URL(reference, b + base))
  } catch {
    return undefined
  }
  const [url, other] = resolved as [URL, URL]
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined
  if (url.host === other.host) {
    if (host === undefined) return undefined
    let own: URL
    try {
      own = new URL(`${url.protocol}//${host}`)
    } catch {
      return undefined
    }
    if (own.host !== url.host || own.pathname !== '/' || own.username !== '' || own.password !== '')
      return undefined
  }
  return url.pathname
}

/**
 * `path` itself (its query dropped) if `checkPath(path, maxLength)` accepts it, else its nearest
 * ancestor that it accepts (`/a/b%2Fc` → `/a`; an over-long path is cut at the last `/` that fits),
 * ending at `/`. A path that does not start with `/` gives `/`.
 */
export function nearestKeyable(path: string, maxLength: number): string {
  let pathname = pathnameOf(path)
  if (!pathname.startsWith('/')) return '/'
  if (pathname.length > maxLength) {
    // The nearest ancestor short enough ends just before the last `/` within maxLength + 1.
    const cut = pathname.slice(0, maxLength + 1).lastIndexOf('/')
    pathname = cut <= 0 ? '/' : pathname.slice(0, cut)
  }
  for (const candidate of withAncestors(pathname)) {
    if (checkPath(candidate, maxLength) === undefined) return candidate
  }
  return '/'
}

/** A template with no syntax of either router: it names one path, whatever the params. */
const STATIC_TEMPLATE = /^[^\\:*{}()?]*$/
/** Static templates already encoded (an app has a bounded number of routes; the cache is bounded too). */
const staticRoutes = new Map<string, string | undefined>()
const MAX_STATIC_ROUTES = 1000

function staticRoute(template: string): string | undefined {
  const known = staticRoutes.get(template)
  if (known !== undefined || staticRoutes.has(template)) return known
  const path = encodeText(template)
  if (staticRoutes.size < MAX_STATIC_ROUTES) staticRoutes.set(template, path)
  return path
}
