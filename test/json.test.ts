import fc from 'fast-check'
import { isOneJsonValue } from '../src/core/json'

/** The reference: what JSON.parse accepts. */
const parses = (text: string): boolean => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

// A replay's body is spliced into a frame only when this says it is one JSON value: anything else
// could end the frame's `json` field early and add fields of its own (`1,"version":"forged"`).
describe('isOneJsonValue: the check before a replay body is spliced into a frame', () => {
  it.each([
    ['{}', true],
    ['[]', true],
    [' \t\r\n{"a":[1,2,{"b":null}],"c":"d\\u00e9\\n","e":[],"f":{}} \n', true],
    ['-0.5e+10', true],
    ['"\\/\\b\\f\\r\\t\\"\\\\"', true],
    ['true', true],
    ['[true,false,null]', true],
    ['', false],
    [' ', false],
    ['{"a":1}{"b":2}', false],
    ['1,"version":"forged"', false],
    ['{"a":1},"version":"forged"', false],
    ['{"a":1,}', false],
    ['[1,]', false],
    ['[,1]', false],
    ['{"a" 1}', false],
    ['{"a":}', false],
    ['{1:2}', false],
    ['01', false],
    ['1.', false],
    ['.5', false],
    ['1e', false],
    ['-', false],
    ['+1', false],
    ['"\u0001"', false],
    ['"\\x"', false],
    ['"\\u12G4"', false],
    ['"unterminated', false],
    ['tru', false],
    ['nul', false],
    ['NaN', false],
    ['[1}', false],
    ['{"a":1]', false],
    ['[[1]', false],
    ['\u00a0{}', false],
  ])('%j → %s', (text, expected) => {
    expect(isOneJsonValue(text)).toBe(expected)
    expect(parses(text)).toBe(expected)
  })

  it('takes nesting far deeper than the call stack allows, as JSON.parse does', () => {
    const deep = '['.repeat(200_000) + ']'.repeat(200_000)
    expect(isOneJsonValue(deep)).toBe(true)
    expect(isOneJsonValue(deep.slice(0, -1))).toBe(false)
    const objects = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)
    expect(isOneJsonValue(objects)).toBe(true)
    expect(isOneJsonValue(objects + ',"b":2}')).toBe(false)
  })

  it('accepts any JSON value, however serialized', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 0, max: 3 }), (v, indent) => {
        expect(isOneJsonValue(JSON.stringify(v, null, indent))).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })

  it('agrees with JSON.parse on JSON with one character changed, dropped or added', () => {
    const alphabet = fc.constantFrom(
      ...' \t\n"\\{}[],:-+.0123456789eEtruefalsnl/u\u0000\u001f\u2028ab'.split(''),
    )
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.nat(),
        alphabet,
        fc.constantFrom('set', 'drop', 'add'),
        (v, at, ch, op) => {
          const text = JSON.stringify(v) ?? 'null'
          const k = at % (text.length + 1)
          const mutated =
            op === 'set'
              ? text.slice(0, k) + ch + text.slice(k + 1)
              : op === 'drop'
                ? text.slice(0, k) + text.slice(k + 1)
                : text.slice(0, k) + ch + text.slice(k)
          expect(isOneJsonValue(mutated)).toBe(parses(mutated))
        },
      ),
      { numRuns: 20_000 },
    )
  })

  it('agrees with JSON.parse on arbitrary strings of JSON characters', () => {
    const chars = fc.constantFrom(...'{}[]",:0123456789-.eE truefalsnl\\u'.split(''))
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 24 }), (cs) => {
        const text = cs.join('')
        expect(isOneJsonValue(text)).toBe(parses(text))
      }),
      { numRuns: 20_000 },
    )
  })
})
