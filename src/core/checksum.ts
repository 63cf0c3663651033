/**
 * The checksum of a state: the `sum` of a `patch` message. The server sends it with every patch; the
 * client computes it over the state it built by applying the patch, and subscribes again when the two
 * differ. It imports nothing from Node: the browser client bundles it, so it is kept small.
 */

/**
 * The RFC 8785 (JCS) serialization of `value`, a JSON value as `JSON.parse` produces it: no
 * whitespace; arrays in order; object members sorted by key, comparing keys as sequences of UTF-16
 * code units (what `Object.keys(v).sort()` does); every key, string, number, boolean and `null` as
 * `JSON.stringify` writes it (which is what JCS requires: shortest round-trip numbers, `-0` as `0`,
 * `1e+21`, `1e-7`, and only `"`, `\`, control characters and lone surrogates escaped).
 */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']'
  if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>
    const members = Object.keys(object)
      .sort()
      .map((k) => JSON.stringify(k) + ':' + canonical(object[k]))
    return '{' + members.join(',') + '}'
  }
  return JSON.stringify(value)
}

/**
 * The checksum of a JSON value, sent as the `sum` of a `patch` message: 32-bit FNV-1a over the UTF-8
 * bytes of {@link canonical}`(value)`, as an unsigned integer (0 to 2^32 - 1). That is: start with
 * `h = 0x811c9dc5`; for each byte `b`, `h = (h XOR b) * 16777619` modulo 2^32; the sum is `h`. For
 * example the sum of `{"b":1,"a":[true,null,"é"]}` is FNV-1a of the bytes of `{"a":[true,null,"é"],"b":1}`
 * (`é` being the two bytes C3 A9), and the sum of the empty string is FNV-1a of the two bytes `""` (22 22).
 */
export function checksum(value: unknown): number {
  const text = canonical(value)
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    // A code point, then its UTF-8 bytes: a lead byte and `n` continuation bytes (canonical text has no
    // lone surrogates: JSON.stringify escapes them).
    const c = text.codePointAt(i) as number
    if (c > 0xffff) i++
    let n = c < 0x80 ? 0 : c < 0x800 ? 1 : c < 0x10000 ? 2 : 3
    h = Math.imul(h ^ (n ? ((0xff00 >> (n + 1)) & 0xff) | (c >> (6 * n)) : c), 16777619)
    while (n--) h = Math.imul(h ^ (0x80 | ((c >> (6 * n)) & 0x3f)), 16777619)
  }
  return h >>> 0
}
