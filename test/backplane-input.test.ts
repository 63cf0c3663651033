/**
 * The bounds on backplane messages, without Redis: the depth scanner and the UTF-8 size check (by
 * example and as properties against the real thing), parseWireMessage at each bound, and the
 * `maxMessageBytes` option. The same bounds with real hubs and Redis are in redis.test.ts.
 */
import fc from 'fast-check'
import type Redis from 'ioredis'
import { ListenjsError } from '../src'
import { expandChange } from '../src/core/paths'
import { parseWireMessage, redisBackplane, redisPublisher } from '../src/redis'
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  jsonDepth,
  jsonDepthExceeds,
  MAX_CHANGE_PATHS,
  MAX_DEPTH,
  utf8LengthExceeds,
} from '../src/redis/bounds'

/** The nesting depth of a parsed value, the obvious recursive way (test values are shallow). */
function trueDepth(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(trueDepth))
  if (typeof value === 'object' && value !== null)
    return 1 + Math.max(0, ...Object.values(value).map(trueDepth))
  return 0
}

/** `[[[…]]]`, `depth` levels deep. */
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)

/** A payload message whose payload is `payload` (a JSON text). */
const payloadMessage = (payload: string): string =>
  `{"v":1,"from":"x","kind":"payload","path":"/p","payload":${payload}}`

/** Characters that JSON treats specially, in string units for fast-check. */
const trickyUnit = fc.constantFrom('[', ']', '{', '}', '"', '\\', '/', 'a', ' ', '\n', 'é', '😀', '\u2028')

describe('jsonDepth', () => {
  it.each([
    ['42', 0],
    ['"text"', 0],
    ['null', 0],
    ['[]', 1],
    ['{}', 1],
    ['[1,[2,[3]],{}]', 3],
    ['{"a":{"b":[{"c":[]}]}}', 5],
    [' [ { } , [ [ ] ] ] ', 3],
  ])('%s is %i deep', (text, depth) => {
    expect(jsonDepth(text)).toBe(depth)
  })

  it.each([
    ['brackets in a string', '["[[[{{{"]', 1],
    ['brackets in a key', '{"[[[":{"}}}":1}}', 2],
    ['an escaped quote, then brackets', String.raw`["a\"[[[", []]`, 2],
    ['an escaped backslash ending a string', String.raw`["\\", [[]]]`, 3],
    ['escaped backslashes and quotes', String.raw`["\\\"[", "\\\\", [{}]]`, 3],
    ['a \\u escape of a bracket', String.raw`["\u005b\u007b", {}]`, 2],
    ['closing brackets in a string', '[["]]]]]"], [[]]]', 3],
  ])('does not count %s', (_name, text, depth) => {
    expect(JSON.parse(text)).toBeDefined()
    expect(jsonDepth(text)).toBe(depth)
  })

  it('scans a 20,000-deep text without recursion, and stops at the first level over the bound', () => {
    const text = payloadMessage(nested(20_000))
    expect(jsonDepth(text)).toBe(20_001)
    expect(jsonDepth(text, MAX_DEPTH)).toBe(MAX_DEPTH + 1)
    expect(jsonDepthExceeds(text, MAX_DEPTH)).toBe(true)
  })

  it('is exact at the bound', () => {
    expect(jsonDepthExceeds(nested(MAX_DEPTH), MAX_DEPTH)).toBe(false)
    expect(jsonDepthExceeds(nested(MAX_DEPTH + 1), MAX_DEPTH)).toBe(true)
    expect(jsonDepthExceeds('0', 0)).toBe(false)
    expect(jsonDepthExceeds('[]', 0)).toBe(true)
  })

  it('never counts below zero on text that is not JSON', () => {
    expect(jsonDepth(']]]]}}}}[[')).toBe(2)
    expect(jsonDepth('"unterminated [[[')).toBe(0)
  })

  it('equals the true depth of any JSON value (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue({ maxDepth: 12 }), fc.jsonValue({ maxDepth: 8, stringUnit: trickyUnit })),
        fc.boolean(),
        (value, indent) => {
          const text = indent ? JSON.stringify(value, null, 2) : JSON.stringify(value)
          const depth = trueDepth(value)
          expect(jsonDepth(text)).toBe(depth)
          for (let max = 0; max <= depth + 1; max++) expect(jsonDepthExceeds(text, max)).toBe(depth > max)
        },
      ),
      { numRuns: 500 },
    )
  })

  it('equals the true depth of whatever JSON.parse accepts, in random and mutated text (property)', () => {
    const special = fc.constantFrom('[', ']', '{', '}', '"', '\\', ',', ':', '0')
    // Valid JSON with one character replaced: escapes and quotes broken or made, brackets moved.
    const mutated = fc
      .tuple(fc.jsonValue({ maxDepth: 6, stringUnit: trickyUnit }), fc.nat(), special)
      .map(([value, at, c]) => {
        const text = JSON.stringify(value)
        const i = at % text.length
        return text.slice(0, i) + c + text.slice(i + 1)
      })
    let parsed = 0
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: special }), mutated), (text) => {
        let value: unknown
        try {
          value = JSON.parse(text)
        } catch {
          return
        }
        parsed++
        expect(jsonDepth(text)).toBe(trueDepth(value))
      }),
      { numRuns: 3000 },
    )
    // Not vacuous: many of the texts were JSON.
    expect(parsed).toBeGreaterThan(100)
  })
})

describe('utf8LengthExceeds', () => {
  it('measures UTF-8 bytes, not UTF-16 units', () => {
    expect(utf8LengthExceeds('abc', 3)).toBe(false)
    expect(utf8LengthExceeds('abcd', 3)).toBe(true)
    // é: 1 unit, 2 bytes; €: 1 unit, 3 bytes; 😀: 2 units, 4 bytes; a lone surrogate: 3 bytes.
    expect(utf8LengthExceeds('éé', 4)).toBe(false)
    expect(utf8LengthExceeds('éé', 3)).toBe(true)
    expect(utf8LengthExceeds('€', 3)).toBe(false)
    expect(utf8LengthExceeds('€', 2)).toBe(true)
    expect(utf8LengthExceeds('😀', 4)).toBe(false)
    expect(utf8LengthExceeds('😀', 3)).toBe(true)
    expect(utf8LengthExceeds('\ud800', 3)).toBe(false)
    expect(utf8LengthExceeds('\ud800', 2)).toBe(true)
  })

  it('agrees with Buffer.byteLength (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.string({ unit: fc.constantFrom('a', 'é', '€', '😀', '\ud800', '\udfff') }),
        ),
        fc.nat(400),
        (text, max) => {
          expect(utf8LengthExceeds(text, max)).toBe(Buffer.byteLength(text, 'utf8') > max)
        },
      ),
      { numRuns: 2000 },
    )
  })
})

describe('parseWireMessage bounds', () => {
  const change = (paths: readonly string[]): string =>
    JSON.stringify({ v: 1, from: 'x', kind: 'change', paths })
  const pathsOf = (n: number): string[] => Array.from({ length: n }, (_, i) => `/p/${i}`)

  it('keeps a change’s time and trace context when well formed, and refuses the message otherwise', () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    const with_ = (fields: Record<string, unknown>): string =>
      JSON.stringify({ v: 1, from: 'x', kind: 'change', paths: ['/a'], ...fields })
    expect(parseWireMessage(with_({ at: 1764527200123.456, trace: traceparent }))).toEqual({
      v: 1,
      from: 'x',
      kind: 'change',
      paths: ['/a'],
      at: 1764527200123.456,
      trace: traceparent,
    })
    expect(parseWireMessage(with_({}))).not.toHaveProperty('at')
    for (const bad of [
      { at: '1764527200123' },
      { at: null },
      { at: [1] },
      { trace: 42 },
      { trace: traceparent.toUpperCase() },
      { trace: `ff${traceparent.slice(2)}` },
      { trace: `${traceparent}-extra` },
      { trace: 'x'.repeat(10_000) },
    ])
      expect(parseWireMessage(with_(bad))).toBeUndefined()
  })

  it(`accepts ${MAX_CHANGE_PATHS} paths in a change and refuses ${MAX_CHANGE_PATHS + 1}`, () => {
    expect(parseWireMessage(change(pathsOf(MAX_CHANGE_PATHS)))).toMatchObject({ kind: 'change' })
    expect(parseWireMessage(change(pathsOf(MAX_CHANGE_PATHS + 1)))).toBeUndefined()
  })

  it(`accepts a message ${MAX_DEPTH} levels deep and refuses one level more`, () => {
    // The envelope is level 1.
    expect(parseWireMessage(payloadMessage(nested(MAX_DEPTH - 1)))).toMatchObject({ kind: 'payload' })
    expect(parseWireMessage(payloadMessage(nested(MAX_DEPTH)))).toBeUndefined()
    expect(parseWireMessage(payloadMessage(nested(20_000)))).toBeUndefined()
    // Brackets inside strings are not nesting.
    expect(parseWireMessage(payloadMessage(JSON.stringify('['.repeat(20_000))))).toMatchObject({
      kind: 'payload',
    })
  })

  it('refuses a text over maxBytes, counting UTF-8 bytes, before parsing it', () => {
    const make = (filler: string): string => payloadMessage(JSON.stringify(filler))
    const ascii = make('x'.repeat(100))
    expect(parseWireMessage(ascii, ascii.length)).toBeDefined()
    expect(parseWireMessage(ascii, ascii.length - 1)).toBeUndefined()
    // 100 units of é are 200 bytes.
    const accented = make('é'.repeat(100))
    const bytes = Buffer.byteLength(accented)
    expect(bytes).toBe(accented.length + 100)
    expect(parseWireMessage(accented, bytes)).toBeDefined()
    expect(parseWireMessage(accented, bytes - 1)).toBeUndefined()
    // The default bound.
    const big = make('x'.repeat(DEFAULT_MAX_MESSAGE_BYTES))
    expect(parseWireMessage(big)).toBeUndefined()
    expect(parseWireMessage(make('x'.repeat(1_048_576)))).toMatchObject({ kind: 'payload' })
    // Refused before JSON.parse: text that is not even JSON is not parsed when over the bound.
    const parse = jest.spyOn(JSON, 'parse')
    try {
      expect(parseWireMessage(`{${'x'.repeat(200)}`, 100)).toBeUndefined()
      expect(parseWireMessage(payloadMessage(nested(20_000)))).toBeUndefined()
      expect(parse).not.toHaveBeenCalled()
    } finally {
      parse.mockRestore()
    }
  })
})

describe('redisPublisher within the bounds', () => {
  /** A stand-in for the ioredis client that keeps what is published. */
  const capture = (): { texts: string[]; redis: Redis } => {
    const texts: string[] = []
    const redis = {
      publish: (_channel: string, text: string) => {
        texts.push(text)
        return Promise.resolve(1)
      },
    }
    return { texts, redis: redis as unknown as Redis }
  }

  it(`splits a change of more than ${MAX_CHANGE_PATHS} paths into messages hubs accept`, async () => {
    const { texts, redis } = capture()
    const publisher = redisPublisher({ publisher: redis })
    // 1,500 segments: 1,501 paths with the ancestors, 2.25 MB of them.
    const path = '/s'.repeat(1500)
    await publisher.notify(path)
    const messages = texts.map((text) => parseWireMessage(text))
    const paths = messages.flatMap((m) => (m?.kind === 'change' ? m.paths : []))
    expect(paths).toEqual(expandChange([path], true))
    expect(texts.length).toBeGreaterThan(2)
    for (const text of texts) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(DEFAULT_MAX_MESSAGE_BYTES)
    for (const m of messages)
      expect(m?.kind === 'change' && m.paths.length).toBeLessThanOrEqual(MAX_CHANGE_PATHS)
    await publisher.close()
  })

  it('rejects with `limit` what no hub would accept, and sends nothing', async () => {
    const { texts, redis } = capture()
    const publisher = redisPublisher({ publisher: redis, maxMessageBytes: 1000 })
    await expect(publisher.notify('/p', 'x'.repeat(1000))).rejects.toMatchObject({
      code: 'limit',
      path: '/p',
    })
    const deep = JSON.parse(nested(MAX_DEPTH)) as unknown
    await expect(publisher.notify('/p', deep)).rejects.toMatchObject({ code: 'limit' })
    // A single path longer than the bound cannot be split.
    await expect(publisher.notify(`/${'a'.repeat(1000)}`)).rejects.toBeInstanceOf(ListenjsError)
    expect(texts).toEqual([])
    // At the bound, it goes.
    await publisher.notify('/p', JSON.parse(nested(MAX_DEPTH - 1)) as unknown)
    expect(texts).toHaveLength(1)
    expect(parseWireMessage(texts[0] as string, 1000)).toMatchObject({ kind: 'payload' })
  })
})

describe('option maxMessageBytes', () => {
  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1000' as unknown as number])(
    'refuses %p at construction',
    (value) => {
      for (const make of [
        () => redisBackplane({ maxMessageBytes: value }),
        () => redisPublisher({ maxMessageBytes: value }),
      ]) {
        let error: unknown
        try {
          make()
        } catch (e) {
          error = e
        }
        expect(error).toBeInstanceOf(ListenjsError)
        expect(error).toMatchObject({
          code: 'invalid_option',
          message: expect.stringContaining('maxMessageBytes'),
        })
      }
    },
  )
})
