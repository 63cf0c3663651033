/**
 * Fuzzing helpers for test/fuzz.test.ts: an independent model of what the hub must answer to any
 * frame (written from PROTOCOL.md, not from src/), the fast-check arbitraries of frames and paths,
 * and a raw WebSocket upgrade for frame-level garbage.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { Socket } from 'node:net'
import fc from 'fast-check'
import type WebSocket from 'ws'
import { SUBPROTOCOL } from '../../src/core/protocol'

// ---------------------------------------------------------------------------------------------
// The model of PROTOCOL.md

/** A message the hub must accept (PROTOCOL.md, "Client → server"). */
export type ValidMessage =
  | { type: 'subscribe'; path: string; version?: string }
  | { type: 'unsubscribe'; path: string }
  | { type: 'auth'; token: string }
  | { type: 'pong' }

/** What one frame must cause: a message that keeps the socket open, or a close with its code. */
export type Outcome =
  | { kind: 'message'; message: ValidMessage }
  /** 4400 comes after an `error` `bad_message` frame; 1007, 1009 and 4429 come alone. */
  | { kind: 'close'; code: 4400 | 1007 | 1009 | 4429 }

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Percent-decodes once, strictly: `undefined` for a lone `%`, bad hex or bytes that are not UTF-8. */
export function strictPercentDecode(text: string): string | undefined {
  const bytes: number[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x25 /* % */) {
      const hex = text.slice(i + 1, i + 3)
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined
      bytes.push(parseInt(hex, 16))
      i += 2
    } else if (c < 0x80) {
      bytes.push(c)
    } else {
      return undefined // callers only pass printable ASCII
    }
  }
  try {
    return strictUtf8.decode(Uint8Array.from(bytes))
  } catch {
    return undefined
  }
}

// eslint-disable-next-line no-control-regex -- control characters are what this looks for
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * Whether PROTOCOL.md ("Paths") accepts `path`: starts with `/`, at most `maxLength` characters,
 * printable ASCII only (no space, backslash or `#`), no empty segment but a trailing one, no `.`/`..`
 * segment in any encoding, no encoded `/`, `\` or control character in a segment, valid
 * percent-encoding (UTF-8, no overlong forms) everywhere, no encoded control character in the query.
 */
export function pathAllowed(path: string, maxLength: number): boolean {
  if (!path.startsWith('/') || path.length > maxLength) return false
  if (!/^[\x21-\x7e]*$/.test(path) || path.includes('\\') || path.includes('#')) return false
  const q = path.indexOf('?')
  const pathname = q === -1 ? path : path.slice(0, q)
  const segments = pathname.slice(1).split('/')
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string
    if (segment === '' && i < segments.length - 1) return false
    const decoded = strictPercentDecode(segment)
    if (decoded === undefined || decoded === '.' || decoded === '..') return false
    if (decoded.includes('/') || decoded.includes('\\') || CONTROL.test(decoded)) return false
  }
  if (q !== -1) {
    const decoded = strictPercentDecode(path.slice(q + 1))
    if (decoded === undefined || CONTROL.test(decoded)) return false
  }
  return true
}

function own(value: object, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(value, key)
    ? (value as Record<string, unknown>)[key]
    : undefined
}

/**
 * The outcome PROTOCOL.md gives a frame: over `messageBytes` → 1009; binary → 4400; text that is not
 * UTF-8 → 1007; not JSON, not an object, unknown type or a field of the wrong type → 4400; else the
 * message (unknown extra fields are ignored).
 */
export function classify(bytes: Uint8Array, binary: boolean, messageBytes: number): Outcome {
  if (bytes.length > messageBytes) return { kind: 'close', code: 1009 }
  if (binary) return { kind: 'close', code: 4400 }
  let text: string
  try {
    text = strictUtf8.decode(bytes)
  } catch {
    return { kind: 'close', code: 1007 }
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { kind: 'close', code: 4400 }
  }
  const bad = { kind: 'close', code: 4400 } as const
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad
  const type = own(value, 'type')
  const path = own(value, 'path')
  if (type === 'subscribe') {
    const version = own(value, 'version')
    if (typeof path !== 'string' || (version !== undefined && typeof version !== 'string')) return bad
    const message: ValidMessage =
      version === undefined ? { type, path } : { type, path, version: version as string }
    return { kind: 'message', message }
  }
  if (type === 'unsubscribe') {
    return typeof path === 'string' ? { kind: 'message', message: { type, path } } : bad
  }
  if (type === 'auth') {
    // PROTOCOL.md: a bearer token of RFC 6750 characters (it becomes a header value in replays).
    const token = own(value, 'token')
    return typeof token === 'string' && /^[A-Za-z0-9\-._~+/]+=*$/.test(token)
      ? { kind: 'message', message: { type, token } }
      : bad
  }
  if (type === 'pong') return { kind: 'message', message: { type } }
  return bad
}

// ---------------------------------------------------------------------------------------------
// The fuzz server's routes, and what a subscription to each must answer

/** The bearer token that opens `/private…` on the fuzz server. */
export const GOOD_TOKEN = 'letmein'

/** The answer label of a subscription's snapshot: `data`, or `error:<code>`. */
export type Answer = 'data' | 'error:not_found' | 'error:unauthorized'

/** What the fuzz server's handler answers for `path` with `token` (see `fuzzHandler`). */
export function answerFor(path: string, token: string | undefined): Answer {
  const q = path.indexOf('?')
  const pathname = q === -1 ? path : path.slice(0, q)
  if (pathname.startsWith('/missing')) return 'error:not_found'
  if (pathname.startsWith('/private')) return token === GOOD_TOKEN ? 'data' : 'error:unauthorized'
  return 'data'
}

/** The fuzz server: `/missing…` → 404, `/private…` → 403 unless `Bearer letmein`, anything else 200. */
export function fuzzHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const pathname = q === -1 ? url : url.slice(0, q)
  let status = 200
  if (pathname.startsWith('/missing')) status = 404
  else if (pathname.startsWith('/private') && req.headers.authorization !== `Bearer ${GOOD_TOKEN}`)
    status = 403
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(status === 200 ? { url } : { status }))
}

// ---------------------------------------------------------------------------------------------
// Frames

/** One generated frame. `label` names its generator (for the summary and failure messages). */
export type FuzzFrame =
  /** A text frame holding `text`. */
  | { kind: 'text'; text: string; label: string }
  /** A text frame holding these bytes as they are (possibly not UTF-8). */
  | { kind: 'bytes'; bytes: Uint8Array; label: string }
  | { kind: 'binary'; bytes: Uint8Array; label: string }
  /** One text message sent as several fragments, cut at `cuts` (byte offsets). */
  | { kind: 'fragments'; bytes: Uint8Array; cuts: number[]; label: string }
  /** More messages (or WebSocket pings) than `limits.messageBurst` at once. */
  | { kind: 'flood'; what: 'pong' | 'ping' | 'subscribe'; label: string }
  /** Raw bytes written to the TCP socket after the upgrade: frame-level garbage. */
  | { kind: 'raw'; bytes: Uint8Array; label: string }

/** The bytes of a frame's one message (`undefined` for floods and raw bytes). */
export function frameBytes(frame: FuzzFrame): { bytes: Uint8Array; binary: boolean } | undefined {
  switch (frame.kind) {
    case 'text':
      return { bytes: Buffer.from(frame.text, 'utf8'), binary: false }
    case 'bytes':
    case 'fragments':
      return { bytes: frame.bytes, binary: false }
    case 'binary':
      return { bytes: frame.bytes, binary: true }
    case 'flood':
    case 'raw':
      return undefined
  }
}

/** A printable description of a frame, for failure messages (long frames are cut). */
export function describeFrame(frame: FuzzFrame): string {
  const data = frameBytes(frame)
  const shown = data
    ? Buffer.from(data.bytes).toString(frame.kind === 'binary' || frame.kind === 'bytes' ? 'hex' : 'utf8')
    : frame.kind === 'raw'
      ? Buffer.from(frame.bytes).toString('hex')
      : frame.kind === 'flood'
        ? frame.what
        : ''
  const cut = shown.length > 300 ? `${shown.slice(0, 300)}… (${shown.length} chars)` : shown
  return `${frame.label}/${frame.kind} ${JSON.stringify(cut)}`
}

/** Builds an object whose keys are own data properties, even `__proto__`, in this order. */
function objectOf(entries: ReadonlyArray<readonly [string, unknown]>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of entries) {
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  }
  return out
}

const text = (label: string) => (s: string) => ({ kind: 'text', text: s, label }) as FuzzFrame

// Paths ----------------------------------------------------------------------------------------

/** Paths the fuzz never produces: the good client's, and the floods'. */
export const GOOD_PATH = '/good'

/** Hand-picked paths: valid ones, refused ones, and prototype names as ordinary paths. */
export const PATH_POOL: readonly string[] = [
  '/',
  '/a',
  '/a/',
  '/a/b',
  '/A',
  '/a?x=1',
  '/a?x=1&x=2',
  '/a?',
  '/a?x=%2F',
  '/private',
  '/private/x',
  '/missing',
  '/missing/',
  '/__proto__',
  '/constructor',
  '/prototype',
  '/constructor/prototype',
  '/__proto__/polluted',
  '/a?__proto__[polluted]=1',
  '/a?constructor[prototype][polluted]=1',
  '/hasOwnProperty',
  '/toString',
  '/valueOf',
  '/caf%C3%A9',
  '/cafe%CC%81',
  '/%252e',
  '/a%20b',
  '/a+b',
  '/a/%31',
  '/a"b',
  '/a{b}',
  '',
  'a',
  '?',
  '#',
  '/a#b',
  '//',
  '/a//b',
  '/a/.',
  '/a/..',
  '/%2e',
  '/%2E%2e',
  '/.%2e',
  '/a%2Fb',
  '/a%5cb',
  '/a\\b',
  '/a\u0000',
  '/a%00',
  '/a%0a',
  '/a%7f',
  '/a\t',
  '/a b',
  '/%c0%ae',
  '/%e0%80%ae',
  '/%',
  '/%zz',
  '/%e2%82',
  '/a?x=%zz',
  '/a?%00',
  '/café',
  '/a\u2028',
  // Exactly limits.pathLength (2048), and one over it.
  `/${'p'.repeat(2047)}`,
  `/a?pad=${'q'.repeat(2041)}`,
  `/${'p'.repeat(2048)}`,
]

const SEGMENT_TOKENS = [
  'a',
  'B',
  '1',
  '',
  '.',
  '..',
  '%2e',
  '%2E',
  '.%2e',
  '%2e%2e',
  '%252e',
  '%2f',
  '%2F',
  '%5c',
  '%00',
  '%0a',
  '%7f',
  '%',
  '%z',
  '%zz',
  '%c0%ae',
  '%e0%80%ae',
  '%C3%A9',
  'e%CC%81',
  '%ED%A0%80',
  '%F4%90%80%80',
  '__proto__',
  'constructor',
  'prototype',
  'missing',
  'private',
  '\\',
  ' ',
  '\t',
  'é',
  '+',
  ';',
  '=',
  '&',
  '?',
  '#',
  '~',
  '"',
]
const QUERY_TOKENS = [
  'x=1',
  'x=%zz',
  '%00',
  'a=%0A',
  'a=%C3%A9',
  'a=%c0%ae',
  '__proto__=1',
  'a=b+c',
  '',
  '=',
  '&',
]

/** A mix of hand-picked paths, paths built from tricky segments, random strings and long paths. */
export const pathArb: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 6, arbitrary: fc.constantFrom(...PATH_POOL) },
    {
      weight: 5,
      arbitrary: fc
        .tuple(
          fc.constantFrom('/missing', '/private', '/a', ''),
          fc.array(fc.constantFrom(...SEGMENT_TOKENS), { minLength: 1, maxLength: 4 }),
          fc.option(fc.array(fc.constantFrom(...QUERY_TOKENS), { maxLength: 3 }), { freq: 3 }),
        )
        .map(
          ([head, segments, query]) => `${head}/${segments.join('/')}${query ? `?${query.join('&')}` : ''}`,
        ),
    },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 24 }).map((s) => `/${s}`) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 16 }) },
    { weight: 1, arbitrary: fc.webPath() },
    // Around the default limits.pathLength (2048).
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 2045, max: 2051 }), fc.boolean())
        .map(([n, query]) => (query ? `/a?pad=${'q'.repeat(n - 7)}` : `/${'p'.repeat(n - 1)}`)),
    },
  )
  .filter((p) => p !== GOOD_PATH && !p.startsWith('/flood'))

const tokenArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(GOOD_TOKEN) },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', '__proto__', 'constructor', 'a\r\nX-Injected: 1', 'x'.repeat(4000)),
  },
)

const keyArb = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'polluted', 'toString', 'hasOwnProperty'),
)
const extrasArb = fc.array(fc.tuple(keyArb, fc.jsonValue({ maxDepth: 2 })), { maxLength: 3 })

/** A well-formed message, with unknown extra fields (including `__proto__` keys) now and then. */
export const validMessageArb: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .tuple(pathArb, fc.option(fc.string({ maxLength: 30 }), { freq: 5 }))
          .map(([path, version]): Array<[string, unknown]> =>
            version === null
              ? [
                  ['type', 'subscribe'],
                  ['path', path],
                ]
              : [
                  ['type', 'subscribe'],
                  ['path', path],
                  ['version', version],
                ],
          ),
      },
      {
        weight: 3,
        arbitrary: pathArb.map((path): Array<[string, unknown]> => [
          ['type', 'unsubscribe'],
          ['path', path],
        ]),
      },
      {
        weight: 1,
        arbitrary: tokenArb.map((token): Array<[string, unknown]> => [
          ['type', 'auth'],
          ['token', token],
        ]),
      },
      { weight: 2, arbitrary: fc.constant<Array<[string, unknown]>>([['type', 'pong']]) },
    ),
    fc.option(extrasArb, { freq: 4 }),
  )
  .map(([fields, extras]) =>
    // Extras first, so that a fields' key repeated among them keeps the field's value.
    objectOf([
      ...(extras ?? []).filter(([k]) => !['type', 'path', 'version', 'token'].includes(k)),
      ...fields,
    ]),
  )

const TYPES = [
  'subscribe',
  'unsubscribe',
  'auth',
  'pong',
  'ping',
  'welcome',
  'data',
  'subscribed',
  'gone',
  'error',
  'SUBSCRIBE',
  ' subscribe',
  'subscribe\u0000',
  '',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
]

/** Protocol types with fields of any type (mostly wrong ones). */
const wrongTypesArb = fc
  .tuple(
    fc.oneof(fc.constantFrom(...TYPES), fc.jsonValue({ maxDepth: 1 })),
    fc.option(fc.oneof(fc.jsonValue({ maxDepth: 2 }), pathArb)),
    fc.option(fc.jsonValue({ maxDepth: 1 })),
    fc.option(fc.jsonValue({ maxDepth: 1 })),
  )
  .map(([type, path, version, token]) => {
    const entries: Array<[string, unknown]> = [['type', type]]
    if (path !== null) entries.push(['path', path])
    if (version !== null) entries.push(['version', version])
    if (token !== null) entries.push(['token', token])
    return JSON.stringify(objectOf(entries))
  })
  .map(text('wrong-types'))

const HUGE_NUMBERS = [
  '{"type":"subscribe","path":1e999}',
  '{"type":"subscribe","path":"/a","version":-1e999}',
  '{"type":"auth","token":123456789012345678901234567890}',
  `{"type":"pong","n":${'9'.repeat(5000)}}`,
  `{"type":"pong","n":-${'9'.repeat(400)}.${'1'.repeat(400)}e-99999}`,
  `{"type":"subscribe","path":"/a","n":1e308,"m":5e-324,"k":-0}`,
  '{"type":"unsubscribe","path":9007199254740993}',
  `[${'1e999,'.repeat(1000)}0]`,
  `${'9'.repeat(10_000)}`,
]

/** Nesting depth `n` of `[` … `]` (2n bytes). */
const nested = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`
const deepArb = fc
  .oneof(
    // Arrays of arrays: 8192 levels are exactly 16 KiB; 10,000 levels are over it.
    fc.constantFrom(8191, 8192, 8193, 10_000).map(nested),
    // 15,000 unclosed levels: within the limit, not JSON.
    fc.constant('['.repeat(15_000)),
    // A valid pong carrying 8,000 levels of nesting in an unknown field.
    fc.constant(`{"type":"pong","x":${nested(8000)}}`),
    // A subscribe whose path is deeply nested (a wrong type).
    fc.constant(`{"type":"subscribe","path":${nested(5000)}}`),
    // Objects in objects.
    fc.integer({ min: 1000, max: 3000 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`),
    fc.constant(`{"type":"pong","x":${'{"__proto__":'.repeat(2000)}{"polluted":1}${'}'.repeat(2000)}}`),
  )
  .map(text('deep'))

/** Frames of `messageBytes + delta` bytes: a subscribe with a long path, or a pong padded with `é`. */
function nearLimitArb(messageBytes: number): fc.Arbitrary<FuzzFrame> {
  return fc
    .tuple(fc.integer({ min: -2, max: 2 }), fc.constantFrom('path', 'multibyte', 'astral'))
    .map(([delta, how]) => {
      const target = messageBytes + delta
      if (how === 'path') {
        const base = Buffer.byteLength('{"type":"subscribe","path":"/"}')
        return text('near-limit')(`{"type":"subscribe","path":"/${'x'.repeat(target - base)}"}`)
      }
      const base = Buffer.byteLength('{"type":"pong","pad":""}')
      const unit = how === 'multibyte' ? 'é' : '😀'
      const size = Buffer.byteLength(unit)
      const count = Math.floor((target - base) / size)
      const rest = target - base - count * size
      return text('near-limit')(`{"type":"pong","pad":"${unit.repeat(count)}${'a'.repeat(rest)}"}`)
    })
}

const PROTO_FRAMES = [
  '{"__proto__":{"polluted":"yes"},"type":"pong"}',
  '{"__proto__":{"type":"pong"}}',
  '{"type":"subscribe","path":"/__proto__","__proto__":{"polluted":"yes"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}},"type":"subscribe","path":"/constructor/prototype"}',
  '{"type":"__proto__","path":"/a"}',
  '{"type":"subscribe","path":"/__proto__/polluted","version":"__proto__"}',
  '{"type":"unsubscribe","path":"__proto__"}',
  '{"type":"auth","token":"__proto__","__proto__":null}',
  '{"type":"pong","type":"subscribe","path":"/a"}',
  '{"type":"subscribe","path":"/a","path":7}',
  '{"type":"subscribe","path":"/a","version":"v","version":null}',
]
const protoArb = fc.oneof(
  fc.constantFrom(...PROTO_FRAMES).map(text('proto')),
  fc
    .tuple(
      fc.constantFrom('subscribe', 'unsubscribe'),
      fc.constantFrom('__proto__', 'constructor', 'prototype'),
    )
    .map(([type, name]) => text('proto')(JSON.stringify({ type, path: `/${name}` }))),
)

const INVALID_UTF8: ReadonlyArray<readonly number[]> = [
  [0xff],
  [0xc0, 0xae], // overlong '.'
  [0xe0, 0x80, 0xae], // overlong '.'
  [0xc0, 0xaf], // overlong '/'
  [0xed, 0xa0, 0x80], // a surrogate
  [0xf4, 0x90, 0x80, 0x80], // over U+10FFFF
  [0xe2, 0x82], // truncated '€'
  [0x80], // a lone continuation byte
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
]

/** Text frames holding bytes: random ones, and valid JSON with an invalid UTF-8 sequence inside. */
const bytesArb = fc
  .oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.string({ unit: 'binary', maxLength: 32 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))),
    fc
      .tuple(fc.constantFrom(...INVALID_UTF8), fc.constantFrom('path', 'token', 'extra'))
      .map(([bad, where]) => {
        const [head, tail] =
          where === 'path'
            ? ['{"type":"subscribe","path":"/a', '"}']
            : where === 'token'
              ? ['{"type":"auth","token":"', '"}']
              : ['{"type":"pong","x":"', '"}']
        return new Uint8Array(Buffer.concat([Buffer.from(head), Buffer.from(bad), Buffer.from(tail)]))
      }),
  )
  .map((bytes): FuzzFrame => ({ kind: 'bytes', bytes, label: 'bytes' }))

function binaryArb(messageBytes: number): fc.Arbitrary<FuzzFrame> {
  return fc
    .oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.constant(new Uint8Array(Buffer.from('{"type":"subscribe","path":"/a"}'))),
      fc.constant(new Uint8Array(messageBytes + 1)),
    )
    .map((bytes): FuzzFrame => ({ kind: 'binary', bytes, label: 'binary' }))
}

/** One message in 2–5 fragments: a valid one, a wrong one, invalid UTF-8 cut anywhere, or one too big in total. */
function fragmentsArb(messageBytes: number): fc.Arbitrary<FuzzFrame> {
  const whole = fc.oneof(
    validMessageArb.map((m) => new Uint8Array(Buffer.from(JSON.stringify(m)))),
    wrongTypesArb.map((f) => new Uint8Array(Buffer.from((f as { text: string }).text))),
    fc.constant(new Uint8Array(Buffer.from('{"type":"pong","x":"é€😀"}'))),
    fc.constant(
      new Uint8Array(
        Buffer.concat([Buffer.from('{"type":"pong","x":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}')]),
      ),
    ),
    fc.constant(new Uint8Array(Buffer.from(`{"type":"pong","x":"${'y'.repeat(messageBytes)}"}`))),
  )
  return fc
    .tuple(whole, fc.array(fc.nat(), { minLength: 1, maxLength: 4 }))
    .map(([bytes, raw]): FuzzFrame => {
      const cuts = [...new Set(raw.map((n) => (bytes.length > 1 ? 1 + (n % (bytes.length - 1)) : 0)))]
        .filter((n) => n > 0)
        .sort((a, b) => a - b)
      return { kind: 'fragments', bytes, cuts, label: 'fragments' }
    })
}

/** Frame-level garbage after a real upgrade: random bytes, or frame headers with odd bits and lengths. */
const rawArb = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 64 }),
    fc
      .record({
        fin: fc.boolean(),
        rsv: fc.integer({ min: 0, max: 7 }),
        opcode: fc.integer({ min: 0, max: 15 }),
        masked: fc.boolean(),
        length: fc.constantFrom('small', '16', '64', 'huge'),
        payload: fc.uint8Array({ maxLength: 40 }),
      })
      .map(({ fin, rsv, opcode, masked, length, payload }) => {
        const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
        const m = masked ? 0x80 : 0
        if (length === 'small') head.push(m | Math.min(payload.length, 125))
        else if (length === '16') head.push(m | 126, payload.length >> 8, payload.length & 0xff)
        else if (length === '64')
          head.push(m | 127, 0, 0, 0, 0, 0, 0, payload.length >> 8, payload.length & 0xff)
        else head.push(m | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
        const mask = masked ? [1, 2, 3, 4] : []
        const body = Array.from(payload, (b, i) => (masked ? b ^ (mask[i % 4] as number) : b))
        return Uint8Array.from([...head, ...mask, ...body])
      }),
  )
  .map((bytes): FuzzFrame => ({ kind: 'raw', bytes, label: 'raw' }))

/** Every kind of frame, weighted: mostly valid messages, so that sockets live for several frames. */
export function frameArb(messageBytes: number): fc.Arbitrary<FuzzFrame> {
  return fc.oneof(
    { weight: 80, arbitrary: validMessageArb.map((m) => text('valid')(JSON.stringify(m))) },
    { weight: 10, arbitrary: wrongTypesArb },
    { weight: 6, arbitrary: fc.json({ maxDepth: 3 }).map(text('json')) },
    { weight: 5, arbitrary: protoArb },
    { weight: 2, arbitrary: fc.constantFrom(...HUGE_NUMBERS).map(text('huge-number')) },
    { weight: 2, arbitrary: deepArb },
    { weight: 3, arbitrary: nearLimitArb(messageBytes) },
    { weight: 4, arbitrary: binaryArb(messageBytes) },
    { weight: 6, arbitrary: bytesArb },
    { weight: 4, arbitrary: fragmentsArb(messageBytes) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('pong', 'ping', 'subscribe').map((what): FuzzFrame => ({
        kind: 'flood',
        what: what as 'pong' | 'ping' | 'subscribe',
        label: 'flood',
      })),
    },
    { weight: 1, arbitrary: rawArb },
  )
}

// ---------------------------------------------------------------------------------------------
// Raw upgrade

/** A WebSocket upgrade done by hand: the TCP socket, to write anything on it. */
export function rawUpgrade(port: number, path = '/listen'): Promise<{ socket: Socket; head: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-version': '13',
        'sec-websocket-protocol': SUBPROTOCOL,
      },
    })
    req.once('upgrade', (_res, socket, head) => resolve({ socket: socket as Socket, head }))
    req.once('response', (res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
    req.once('error', reject)
    req.end()
  })
}

/** The close code of the first close frame among server (unmasked) frames, if any. */
export function closeCodeIn(bytes: Buffer): number | undefined {
  let i = 0
  while (i + 2 <= bytes.length) {
    const opcode = (bytes[i] as number) & 0x0f
    let length = (bytes[i + 1] as number) & 0x7f
    let start = i + 2
    if (length === 126) {
      if (start + 2 > bytes.length) return undefined
      length = bytes.readUInt16BE(start)
      start += 2
    } else if (length === 127) {
      if (start + 8 > bytes.length) return undefined
      length = Number(bytes.readBigUInt64BE(start))
      start += 8
    }
    if (opcode === 0x8) return length >= 2 && start + 2 <= bytes.length ? bytes.readUInt16BE(start) : 1005
    i = start + length
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// A fuzzing socket: sends frames and checks every answer against the model

/** How many answers of a kind a path may still get: `required` must come, `optional` may. */
interface Expectation {
  required: number
  optional: number
  readonly allowed: Set<string>
}

/** Answers sent while the hub handles the message itself (so they come before any close). */
const SYNC_LABELS = new Set(['error:bad_path', 'error:limit', 'error:bad_message'])
/** The key of answers without a path (`bad_message`). */
const NO_PATH = '\u0000(no path)'

/** Where the hub is in its work: the fuzz waits for idle replays before its second barrier. */
export type Idle = () => Promise<void>

let nonce = 0

/**
 * One fuzzing socket and the model of what the hub holds for it: which paths are subscribed (or
 * waiting for their snapshot), the token in force, and which answers may still come for each path.
 * Every frame received is checked at once; problems are collected in `problems`.
 */
export class FuzzSocket {
  /** Subscriptions the hub holds for this socket: waiting for a data answer, for an error, or live. */
  readonly held = new Map<string, 'pending-ok' | 'pending-refused' | 'live'>()
  private readonly sync = new Map<string, Expectation>()
  private readonly async = new Map<string, Expectation>()
  private readonly floodPaths = new Set<string>()
  private readonly barriers = new Map<string, () => void>()
  private token: string | undefined
  /** Messages sent (each takes one token of the hub's rate limit). */
  messages = 0
  readonly problems: string[] = []
  /** Answers received, by label (`data`, `error:bad_path`, …). */
  readonly answers = new Map<string, number>()
  readonly closed: Promise<{ code: number; reason: string }>

  private constructor(
    readonly ws: WebSocket,
    private readonly limits: { pathLength: number; subscriptionsPerSocket: number },
  ) {
    ws.on('message', (data, isBinary) => this.receive(String(data), isBinary))
    ws.on('error', () => {}) // a refused frame can make the client's own side error; the close says why
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
    )
  }

  /** Opens a socket and waits for its `welcome`. */
  static async open(
    WebSocketClass: typeof WebSocket,
    url: string,
    limits: { pathLength: number; subscriptionsPerSocket: number },
  ): Promise<FuzzSocket> {
    const ws = new WebSocketClass(url, [SUBPROTOCOL])
    const welcome = new Promise<void>((resolve, reject) => {
      ws.once('message', (data) => {
        const frame = JSON.parse(String(data)) as { type: string }
        if (frame.type === 'welcome') resolve()
        else reject(new Error(`expected welcome, got ${String(data)}`))
      })
      ws.once('error', reject)
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
    })
    const socket = new FuzzSocket(ws, limits)
    await welcome
    return socket
  }

  private problem(text: string): void {
    this.problems.push(text)
  }

  private receive(raw: string, isBinary: boolean): void {
    if (isBinary) return this.problem(`the hub sent a binary frame: ${raw.slice(0, 200)}`)
    let frame: Record<string, unknown>
    try {
      frame = JSON.parse(raw) as Record<string, unknown>
    } catch {
      return this.problem(`the hub sent a frame that is not JSON: ${raw.slice(0, 200)}`)
    }
    const { type, path } = frame
    if (type === 'welcome' || type === 'ping') return
    if (type === 'error' && typeof path === 'string' && this.barriers.has(path)) {
      this.barriers.get(path)?.()
      this.barriers.delete(path)
      return
    }
    const label = type === 'error' ? `error:${String(frame.code)}` : String(type)
    this.answers.set(label, (this.answers.get(label) ?? 0) + 1)
    const key = path === undefined ? NO_PATH : typeof path === 'string' ? path : JSON.stringify(path)
    if (this.floodPaths.has(key)) return
    // Each answer is checked on its own: the shape PROTOCOL.md gives it.
    if (type === 'data' && (frame.snapshot !== true || typeof frame.version !== 'string'))
      this.problem(`a data answer that is not a snapshot: ${raw.slice(0, 300)}`)
    if (type === 'subscribed' && typeof frame.version !== 'string')
      this.problem(`a subscribed answer without version: ${raw.slice(0, 300)}`)
    if (type === 'error') {
      const message = frame.message
      if (typeof message !== 'string' || message.length > 120 || /\n|\bat\s|Error:/.test(message))
        this.problem(`an error message that is not a short fixed text: ${raw.slice(0, 300)}`)
      const status = { not_found: 404, unauthorized: 403 }[String(frame.code)]
      if (status !== undefined && frame.status !== status)
        this.problem(`an ${label} answer with status ${String(frame.status)}: ${raw.slice(0, 300)}`)
      if ((frame.code === 'bad_message') !== (path === undefined))
        this.problem(`bad_message comes without a path, other errors with one: ${raw.slice(0, 300)}`)
    }
    const expectation = (SYNC_LABELS.has(label) ? this.sync : this.async).get(key)
    if (!expectation || expectation.required + expectation.optional === 0)
      return this.problem(`an answer nothing asked for: ${raw.slice(0, 300)}`)
    if (!expectation.allowed.has(label))
      return this.problem(
        `expected ${[...expectation.allowed].join(' or ')} for ${JSON.stringify(key)}, got ${raw.slice(0, 300)}`,
      )
    if (expectation.required > 0) expectation.required--
    else expectation.optional--
  }

  private expect(sync: boolean, path: string, labels: readonly string[], required = true): void {
    const map = sync ? this.sync : this.async
    let expectation = map.get(path)
    if (!expectation) map.set(path, (expectation = { required: 0, optional: 0, allowed: new Set() }))
    for (const label of labels) expectation.allowed.add(label)
    if (required) expectation.required++
    else expectation.optional++
  }

  /**
   * Sends one frame as it is. A flood sends `burst + 100` messages at once; a ping flood sends pings
   * 20 at a time, each 20 once the previous ones were answered, until the socket closes (a burst of
   * more than 60 pings is terminated by `ws` itself, see test/limits.test.ts).
   */
  async send(frame: FuzzFrame, burst: number): Promise<void> {
    const ws = this.ws
    switch (frame.kind) {
      case 'text':
        ws.send(frame.text)
        this.messages++
        return
      case 'bytes':
        ws.send(Buffer.from(frame.bytes), { binary: false })
        this.messages++
        return
      case 'binary':
        ws.send(Buffer.from(frame.bytes), { binary: true })
        this.messages++
        return
      case 'fragments': {
        const bounds = [0, ...frame.cuts, frame.bytes.length]
        for (let i = 0; i + 1 < bounds.length; i++) {
          const piece = Buffer.from(frame.bytes.subarray(bounds[i], bounds[i + 1]))
          ws.send(piece, { binary: false, fin: i + 2 === bounds.length })
        }
        this.messages++
        return
      }
      case 'flood': {
        if (frame.what === 'ping') return this.pingFlood(3 * burst)
        const count = burst + 100
        const path = `/flood/${++nonce}`
        this.floodPaths.add(path)
        for (let i = 0; i < count; i++) {
          if (frame.what === 'pong') ws.send('{"type":"pong"}')
          else ws.send(JSON.stringify({ type: i % 2 === 0 ? 'subscribe' : 'unsubscribe', path }))
        }
        this.messages += count
        return
      }
      case 'raw':
        throw new Error('raw frames go through rawUpgrade')
    }
  }

  private async pingFlood(max: number): Promise<void> {
    const ws = this.ws
    let pongs = 0
    const onPong = (): void => {
      pongs++
    }
    ws.on('pong', onPong)
    try {
      for (let sent = 0; sent < max && ws.readyState === ws.OPEN;) {
        for (let i = 0; i < 20; i++) ws.ping()
        sent += 20
        this.messages += 20
        const deadline = Date.now() + 2000
        while (pongs < sent && ws.readyState === ws.OPEN && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 1))
      }
    } finally {
      ws.off('pong', onPong)
    }
  }

  /** Updates the model for a valid message just sent (PROTOCOL.md, "Client → server"). */
  apply(message: ValidMessage): void {
    switch (message.type) {
      case 'subscribe': {
        const { path } = message
        // "Subscribing to a path the socket already holds does nothing." One waiting for its refusal
        // may not be held any more (the hub may have refused it already): then this subscribe is a
        // new one, refused again.
        const state = this.held.get(path)
        if (state === 'pending-refused') return this.expect(false, path, [answerFor(path, this.token)], false)
        if (state !== undefined) return
        if (!pathAllowed(path, this.limits.pathLength)) return this.expect(true, path, ['error:bad_path'])
        if (this.held.size >= this.limits.subscriptionsPerSocket)
          return this.expect(true, path, ['error:limit'])
        this.subscribeModel(path)
        return
      }
      case 'unsubscribe': {
        const state = this.held.get(message.path)
        if (state === undefined) return // "Unknown paths are ignored."
        this.held.delete(message.path)
        if (state !== 'live') {
          // Its snapshot may have been sent already, or never will be.
          const expectation = this.async.get(message.path) as Expectation
          expectation.required--
          expectation.optional++
        }
        return
      }
      case 'auth': {
        // Every subscription held is checked again with the new token (the fuzz settles first, so
        // all of them are live): `subscribed` (or data) when allowed, else the refusal.
        this.token = message.token
        for (const path of [...this.held.keys()]) this.subscribeModel(path)
        return
      }
      case 'pong':
        return
    }
  }

  private subscribeModel(path: string): void {
    const answer = answerFor(path, this.token)
    this.held.set(path, answer === 'data' ? 'pending-ok' : 'pending-refused')
    this.expect(false, path, answer === 'data' ? ['data', 'subscribed'] : [answer])
  }

  /** The frame just sent closes the socket: answers that wait for a replay may never come. */
  closing(code: number): void {
    if (code === 4400) this.expect(true, NO_PATH, ['error:bad_message'])
    for (const expectation of this.async.values()) {
      expectation.optional += expectation.required
      expectation.required = 0
    }
  }

  /** Problems with answers that must have come (call once nothing more can arrive). */
  missing(): string[] {
    const out: string[] = []
    for (const [kind, map] of [
      ['sync', this.sync],
      ['async', this.async],
    ] as const) {
      for (const [path, e] of map) {
        if (e.required > 0)
          out.push(
            `${e.required} ${kind} answer(s) ${[...e.allowed].join('|')} for ${JSON.stringify(path.slice(0, 200))} never came`,
          )
      }
    }
    return out
  }

  /** Sends a message whose `bad_path` answer is immediate, and waits for it. */
  private async barrier(timeoutMs: number): Promise<void> {
    const path = `/%zz/barrier/${++nonce}`
    const answered = new Promise<void>((resolve) => this.barriers.set(path, resolve))
    this.ws.send(JSON.stringify({ type: 'subscribe', path }))
    this.messages++
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)))
    const result = await Promise.race([answered, late, this.closed.then(() => 'closed' as const)])
    clearTimeout(timer)
    if (result === 'late') throw new Error(`no answer to a barrier within ${timeoutMs} ms`)
    if (result === 'closed') throw new Error('the socket closed while it should stay open')
  }

  /**
   * Waits until every answer owed has arrived: a barrier (the hub has handled every frame sent
   * before it, so their replays are queued), then idle replays, then a second barrier (every answer
   * sent before it has arrived). Afterwards the model is exact again: no subscription is pending.
   */
  async settle(idle: Idle, timeoutMs = 5000): Promise<void> {
    await this.barrier(timeoutMs)
    await idle()
    await this.barrier(timeoutMs)
    this.problems.push(...this.missing())
    for (const map of [this.sync, this.async]) map.clear()
    for (const [path, state] of this.held) {
      if (state === 'pending-ok') this.held.set(path, 'live')
      else if (state === 'pending-refused') this.held.delete(path)
    }
  }
}
