/**
 * The checksum of a state: the `sum` of a `patch` message. The server sends it with every patch; the
 * client computes it over the state it built by applying the patch, and subscribes again when the two
 * differ. It imports nothing from Node: the browser client bundles it, so it is kept small. It hashes
 * while it walks the value, building no canonical text: that is what it costs once per change on the
 * server and once per patch on the client.
 */

const PRIME = 16777619

/** `h` after the UTF-8 bytes of `text` (which has no lone surrogates: JSON.stringify escapes them). */
function feed(h: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i)
    if (c < 0x80) {
      h = Math.imul(h ^ c, PRIME)
      continue
    }
    if (c < 0x800) h = Math.imul(h ^ (0xc0 | (c >> 6)), PRIME)
    else if (c < 0xd800 || c > 0xdbff) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), PRIME)
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), PRIME)
    } else {
      // A surrogate pair: one code point, four bytes.
      c = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00)
      h = Math.imul(h ^ (0xf0 | (c >> 18)), PRIME)
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), PRIME)
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), PRIME)
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), PRIME)
  }
  return h
}

/** Characters a JSON string may have to escape (surrogates: only a lone one is escaped). */
// eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
const ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/

/** `h` after the canonical serialization of `value` (see {@link checksum}). */
function walk(h: number, value: unknown): number {
  // Most strings need no escape: hashed between their quotes, with no new string made.
  if (typeof value === 'string' && !ESCAPED.test(value))
    return Math.imul(feed(Math.imul(h ^ 0x22, PRIME), value) ^ 0x22, PRIME)
  if (value === null || typeof value !== 'object') return feed(h, JSON.stringify(value))
  if (Array.isArray(value)) {
    h = Math.imul(h ^ 0x5b, PRIME) // [
    for (let i = 0; i < value.length; i++) h = walk(i ? Math.imul(h ^ 0x2c, PRIME) : h, value[i]) // ,
    return Math.imul(h ^ 0x5d, PRIME) // ]
  }
  const object = value as Record<string, unknown>
  const keys = Object.keys(object).sort()
  h = Math.imul(h ^ 0x7b, PRIME) // {
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string
    h = walk(i ? Math.imul(h ^ 0x2c, PRIME) : h, key)
    h = walk(Math.imul(h ^ 0x3a, PRIME), object[key]) // :
  }
  return Math.imul(h ^ 0x7d, PRIME) // }
}

/**
 * The checksum of a JSON value (as `JSON.parse` produces it), sent as the `sum` of a `patch` message:
 * 32-bit FNV-1a over the UTF-8 bytes of its RFC 8785 (JCS) serialization, as an unsigned integer (0
 * to 2^32 - 1). The serialization: no whitespace; arrays in order; object members sorted by key,
 * comparing keys as sequences of UTF-16 code units (what `Object.keys(v).sort()` does); every key,
 * string, number, boolean and `null` as `JSON.stringify` writes it (shortest round-trip numbers, `-0`
 * as `0`, `1e+21`, `1e-7`; only `"`, `\`, control characters and lone surrogates escaped). FNV-1a:
 * start with `h = 0x811c9dc5`; for each byte `b`, `h = (h XOR b) * 16777619` modulo 2^32. For example
 * the sum of `{"b":[1,"é"],"a":null}` is FNV-1a of the 23 bytes of `{"a":null,"b":[1,"é"]}` (`é`
 * being C3 A9): 3817508276.
 */
export function checksum(value: unknown): number {
  return walk(0x811c9dc5, value) >>> 0
}
