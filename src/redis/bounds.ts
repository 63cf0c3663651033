/**
 * Bounds on what one backplane message may cost a hub (PROTOCOL.md, "Backplane"). Anyone who can
 * publish on the channel can send anything: these checks run on the raw text, before `JSON.parse`,
 * so that a hostile message costs one linear scan of a bounded text and nothing more.
 */

/**
 * The deepest nesting of arrays and objects in one message, counted over the whole message: the
 * envelope object is level 1, so a `payload` may nest 63 levels. Deeper messages are refused (a deep
 * payload would make the hub's `JSON.stringify` overflow the stack).
 */
export const MAX_DEPTH = 64

/** The most paths one `change` message may carry (the hubs' own bound); a publisher splits a larger change. */
export { MAX_CHANGE_PATHS } from '../core/backplane'

/**
 * The default bound on one message's UTF-8 size: 1 MiB of payload (the hub's `maxBodyBytes`) plus
 * 64 KiB for the envelope.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_114_112

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d

/**
 * The nesting depth of the arrays and objects in a JSON text, without recursion and without parsing:
 * one pass that skips string contents (so brackets and escaped quotes in strings do not count).
 * A scalar has depth 0, `[]` and `{}` depth 1, `[{}]` depth 2.
 *
 * For valid JSON the result is exact. For any text, `JSON.parse` never nests deeper than this before
 * it returns or throws: it reads left to right and stops at the first character that cannot continue
 * valid JSON, and up to there both count the same brackets.
 * @param text - the JSON text
 * @param stopAbove - stop scanning as soon as the depth exceeds this (the result is then `stopAbove + 1`)
 */
export function jsonDepth(text: string, stopAbove: number = Number.POSITIVE_INFINITY): number {
  let depth = 0
  let deepest = 0
  const length = text.length
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      // Skip to the closing quote; a backslash escapes the next character, whatever it is.
      for (i++; i < length; i++) {
        const s = text.charCodeAt(i)
        if (s === BACKSLASH) i++
        else if (s === QUOTE) break
      }
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++
      if (depth > deepest) {
        deepest = depth
        if (deepest > stopAbove) return deepest
      }
    } else if ((c === CLOSE_BRACKET || c === CLOSE_BRACE) && depth > 0) {
      depth--
    }
  }
  return deepest
}

/**
 * Whether a JSON text nests arrays and objects more than `max` levels deep (see {@link jsonDepth});
 * stops scanning at the first level over `max`.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  return jsonDepth(text, max) > max
}

/**
 * Whether `text` takes more than `max` bytes in UTF-8, counting the bytes only when it must.
 *
 * One UTF-16 unit takes 1 to 3 bytes (a surrogate pair, 2 units, takes 4; a lone surrogate is
 * encoded as U+FFFD, 3 bytes), so `text.length ≤ bytes ≤ 3 × text.length`: a text longer than `max`
 * units is over at once, a text of at most `max / 3` units is under at once, and only texts in
 * between (so at most `max` units long) are counted exactly.
 */
export function utf8LengthExceeds(text: string, max: number): boolean {
  if (text.length > max) return true
  if (text.length * 3 <= max) return false
  return Buffer.byteLength(text, 'utf8') > max
}
