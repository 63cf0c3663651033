/**
 * Whether a text is exactly one JSON value (RFC 8259), checked without building it: a replay's body
 * is spliced into a frame as it is, so a body that claims to be JSON but is not must be told apart,
 * and parsing it (allocating every object, string and number of it) leaves garbage behind for every
 * push. Nesting is tracked on an array of open containers, never on the call stack, so no depth
 * overflows it.
 */

const TAB = 9
const LF = 10
const CR = 13
const SPACE = 32
const QUOTE = 34
const PLUS = 43
const COMMA = 44
const MINUS = 45
const DOT = 46
const ZERO = 48
const NINE = 57
const COLON = 58
const OPEN_ARRAY = 91
const BACKSLASH = 92
const CLOSE_ARRAY = 93
const OPEN_OBJECT = 123
const CLOSE_OBJECT = 125
const ARRAY = 1
const OBJECT = 2

const isDigit = (c: number): boolean => c >= ZERO && c <= NINE
const isHex = (c: number): boolean => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)

/** Whether `text` is one JSON value, with only JSON whitespace around it. */
export function isOneJsonValue(text: string): boolean {
  const stack: number[] = []
  let i = value(text, skipSpace(text, 0), stack)
  while (i >= 0) {
    i = skipSpace(text, i)
    const open = stack.length === 0 ? 0 : (stack[stack.length - 1] as number)
    if (open === 0) return i === text.length
    const c = text.charCodeAt(i)
    if (c === COMMA) {
      i = skipSpace(text, i + 1)
      if (open === OBJECT) i = key(text, i)
      if (i >= 0) i = value(text, i, stack)
    } else if ((open === ARRAY && c === CLOSE_ARRAY) || (open === OBJECT && c === CLOSE_OBJECT)) {
      stack.pop()
      i++
    } else {
      return false
    }
  }
  return false
}

/**
 * One value at `i`: containers are entered (pushed on `stack`) until a scalar or an empty container
 * ends it. Returns the index after it, or -1.
 */
function value(text: string, i: number, stack: number[]): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) return string(text, i)
    if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      const next = skipSpace(text, i + 1)
      const close = c === OPEN_ARRAY ? CLOSE_ARRAY : CLOSE_OBJECT
      if (text.charCodeAt(next) === close) return next + 1
      stack.push(c === OPEN_ARRAY ? ARRAY : OBJECT)
      i = c === OPEN_ARRAY ? next : key(text, next)
      if (i < 0) return -1
      continue
    }
    if (c === MINUS || isDigit(c)) return number(text, i)
    if (text.startsWith('true', i) || text.startsWith('null', i)) return i + 4
    if (text.startsWith('false', i)) return i + 5
    return -1
  }
}

/** An object key at `i`, its colon and the space after it: where its value starts, or -1. */
function key(text: string, i: number): number {
  if (text.charCodeAt(i) !== QUOTE) return -1
  const after = string(text, i)
  if (after < 0) return -1
  const colon = skipSpace(text, after)
  return text.charCodeAt(colon) === COLON ? skipSpace(text, colon + 1) : -1
}

/** A string starting with the quote at `i`: the index after its closing quote, or -1. */
function string(text: string, i: number): number {
  const end = text.length
  for (let j = i + 1; j < end; j++) {
    const c = text.charCodeAt(j)
    if (c === QUOTE) return j + 1
    if (c < SPACE) return -1
    if (c !== BACKSLASH) continue
    const e = text.charCodeAt(++j)
    if (e === 117 /* u */) {
      for (let k = 1; k <= 4; k++) if (!isHex(text.charCodeAt(j + k))) return -1
      j += 4
    } else if (!(
      e === QUOTE ||
      e === BACKSLASH ||
      e === 47 ||
      e === 98 ||
      e === 102 ||
      e === 110 ||
      e === 114 ||
      e === 116
    )) {
      // only \" \\ \/ \b \f \n \r \t
      return -1
    }
  }
  return -1
}

/** A number at `i`: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; the index after it, or -1. */
function number(text: string, i: number): number {
  if (text.charCodeAt(i) === MINUS) i++
  const first = text.charCodeAt(i)
  if (first === ZERO) i++
  else if (isDigit(first)) i = digits(text, i)
  else return -1
  if (text.charCodeAt(i) === DOT) {
    const after = digits(text, i + 1)
    if (after === i + 1) return -1
    i = after
  }
  const e = text.charCodeAt(i)
  if (e === 69 || e === 101) {
    i++
    const sign = text.charCodeAt(i)
    if (sign === PLUS || sign === MINUS) i++
    const after = digits(text, i)
    if (after === i) return -1
    i = after
  }
  return i
}

function digits(text: string, i: number): number {
  while (isDigit(text.charCodeAt(i))) i++
  return i
}

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c !== SPACE && c !== LF && c !== CR && c !== TAB) return i
    i++
  }
}
