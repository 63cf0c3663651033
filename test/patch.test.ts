import fc from 'fast-check'
import { applyPatch, patches } from '../src/client/patches'
import { checksum } from '../src/core/checksum'
import { diff } from '../src/core/diff'
import type { PatchOp } from '../src/core/protocol'

/**
 * RFC 8785 (JCS), the reference the checksum is checked against (it hashes while it walks, building
 * no text): sorted keys, no whitespace, JSON.stringify for the rest.
 */
function canonical(value: unknown): string {
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

/** A JSON value as the server and the client hold it: what JSON.parse produces (own `__proto__` keys). */
const json = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown)

const event = fc.record({
  id: fc.integer({ min: 0, max: 50 }),
  title: fc.string(),
  start: fc.constantFrom('2025-01-01T09:00', '2025-01-01T10:00', '2025-01-02T09:00'),
  attendees: fc.array(fc.constantFrom('ann', 'bob', 'cy'), { maxLength: 3 }),
})
const calendar = fc.array(event, { maxLength: 30 })
/** A calendar and another made from it by a few inserts, deletes and edits. */
const calendars = fc
  .tuple(
    calendar,
    fc.array(fc.tuple(fc.constantFrom('insert', 'delete', 'edit'), fc.nat(), event), { maxLength: 4 }),
  )
  .map(([a, edits]) => {
    const b = a.map((e) => ({ ...e }))
    for (const [kind, n, e] of edits) {
      const i = n % (b.length + 1)
      if (kind === 'insert') b.splice(i, 0, e)
      else if (i < b.length) {
        if (kind === 'delete') b.splice(i, 1)
        else b[i] = { ...(b[i] as typeof e), title: e.title }
      }
    }
    return JSON.parse(JSON.stringify([a, b])) as [typeof a, typeof b] // fc.record may give null prototypes
  })

const fnv1a = (text: string): number => {
  let h = 0x811c9dc5
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 16777619) >>> 0
  return h
}

const deepFreeze = <T>(v: T): T => {
  if (typeof v === 'object' && v !== null) {
    for (const child of Object.values(v)) deepFreeze(child)
    Object.freeze(v)
  }
  return v
}

const roundTrips = (a: unknown, b: unknown, maxOps?: number): void => {
  const before = structuredClone(a)
  deepFreeze(a)
  const ops = diff(a, b, maxOps)
  if (ops === undefined) return
  expect(ops.length).toBeLessThanOrEqual(maxOps ?? 64)
  const result = applyPatch(a, ops)
  expect(result).toStrictEqual(b)
  expect(canonical(result)).toBe(canonical(b))
  expect(checksum(result)).toBe(checksum(b))
  expect(a).toStrictEqual(before)
}

const list = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: i, title: `event ${i}`, start: `T${i}`, attendees: ['ann'] }))

describe('diff and applyPatch', () => {
  it('turns any JSON value into any other, without changing the input', () => {
    fc.assert(fc.property(json, json, (a, b) => roundTrips(a, b)))
    fc.assert(fc.property(json, (a) => expect(diff(a, structuredClone(a))).toEqual([])))
  })

  it('turns calendars into edited calendars, in few ops', () => {
    fc.assert(
      fc.property(calendars, fc.integer({ min: 1, max: 64 }), ([a, b], maxOps) => {
        roundTrips(a, b, maxOps)
        expect(diff(a, b, 1000)).toBeDefined()
      }),
    )
  })

  it('inserts, deletes and edits one element of a 1000-list in one op, sharing the rest', () => {
    const a = deepFreeze(list(1000))
    const inserted = [
      ...a.slice(0, 500),
      { id: -1, title: 'new', start: 'T', attendees: [] },
      ...a.slice(500),
    ]
    expect(diff(a, inserted)).toEqual([{ op: 'add', path: '/500', value: inserted[500] }])
    expect(diff(a, [...a.slice(0, 500), ...a.slice(501)])).toEqual([{ op: 'remove', path: '/500' }])
    const edited = a.map((e, i) => (i === 500 ? { ...e, title: 'moved' } : structuredClone(e)))
    const ops = diff(a, edited) as PatchOp[]
    expect(ops).toEqual([{ op: 'replace', path: '/500/title', value: 'moved' }])
    const result = applyPatch(a, ops) as typeof a
    expect(result).toEqual(edited)
    expect(result.every((e, i) => (i === 500 ? e !== a[i] : e === a[i]))).toBe(true)
    expect(result[500]?.attendees).toBe(a[500]?.attendees)
  })

  it('escapes keys, replaces the root on a change of kind, and gives up past maxOps', () => {
    expect(diff({ 'a/b': 1, 'c~d': 2 }, { 'a/b': 3, 'c~d': 4 })).toEqual([
      { op: 'replace', path: '/a~1b', value: 3 },
      { op: 'replace', path: '/c~0d', value: 4 },
    ])
    expect(applyPatch({ 'a/b': 1, 'c~d': 2 }, [{ op: 'replace', path: '/c~0d', value: 5 }])).toEqual({
      'a/b': 1,
      'c~d': 5,
    })
    expect(diff({ a: 1 }, [1])).toEqual([{ op: 'replace', path: '', value: [1] }])
    expect(diff(1, 'x')).toEqual([{ op: 'replace', path: '', value: 'x' }])
    expect(diff([], [1, 2, 3], 2)).toBeUndefined()
    expect(diff([], [1, 2, 3], 3)).toHaveLength(3)
    expect(diff([1, 2, 3], [])).toEqual([
      { op: 'remove', path: '/2' },
      { op: 'remove', path: '/1' },
      { op: 'remove', path: '/0' },
    ])
  })

  it('refuses __proto__, on both sides', () => {
    const a = JSON.parse('{"__proto__":{"x":1},"y":1}') as unknown
    expect(diff(a, JSON.parse('{"__proto__":{"x":2},"y":1}'))).toBeUndefined()
    expect(diff(a, JSON.parse('{"y":1}'))).toBeUndefined()
    expect(diff({ y: 1 }, a)).toBeUndefined()
    expect(diff(a, JSON.parse('{"__proto__":{"x":1},"y":2}'))).toEqual([
      { op: 'replace', path: '/y', value: 2 },
    ])
    for (const path of ['/__proto__/polluted', '/a/__proto__', '/a/__proto__/polluted', '/__proto__']) {
      for (const op of ['add', 'replace'] as const) {
        expect(() => applyPatch(JSON.parse('{"a":{},"__proto__":{}}'), [{ op, path, value: 1 }])).toThrow()
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('polluted')
  })

  it('throws on ops that do not apply', () => {
    const state = { a: { b: 1 }, list: [1, 2] }
    const bad: unknown[] = [
      { op: 'remove', path: '/c' },
      { op: 'replace', path: '/c', value: 1 },
      { op: 'add', path: '/c/d', value: 1 },
      { op: 'add', path: '/a/b/c', value: 1 },
      { op: 'remove', path: '/list/2' },
      { op: 'add', path: '/list/3', value: 1 },
      { op: 'add', path: '/list/01', value: 1 },
      { op: 'remove', path: '/list/-' },
      { op: 'replace', path: '/list/-1', value: 1 },
      { op: 'remove', path: '' },
      { op: 'add', path: 'a', value: 1 },
      { op: 'move', from: '/a', path: '/b' },
      { op: 'copy', from: '/a', path: '/b' },
    ]
    for (const op of bad) expect(() => applyPatch(state, [op as PatchOp])).toThrow(Error)
    expect(state).toEqual({ a: { b: 1 }, list: [1, 2] })
  })

  it('applies add, remove and replace as RFC 6902 says', () => {
    const state = { list: [1, 2], o: { k: 1 } }
    expect(applyPatch(state, [{ op: 'add', path: '/list/-', value: 3 }])).toEqual({
      list: [1, 2, 3],
      o: { k: 1 },
    })
    expect(applyPatch(state, [{ op: 'add', path: '/list/0', value: 0 }])).toEqual({
      list: [0, 1, 2],
      o: { k: 1 },
    })
    expect(applyPatch(state, [{ op: 'add', path: '/o/k', value: 2 }])).toEqual({ list: [1, 2], o: { k: 2 } })
    expect(applyPatch(state, [{ op: 'remove', path: '/list/0' }])).toEqual({ list: [2], o: { k: 1 } })
    expect(applyPatch(state, [{ op: 'replace', path: '', value: 7 }])).toBe(7)
    expect(applyPatch(state, []) === state).toBe(true)
  })

  it('patches: the applied state when its checksum is the sum, undefined otherwise', () => {
    const state = { list: [1, 2], o: { k: 1 } }
    const ops = [{ op: 'replace', path: '/o/k', value: 2 }] as const
    const next = { list: [1, 2], o: { k: 2 } }
    expect(patches(state, { ops, sum: checksum(next) })).toEqual(next)
    expect(patches(state, { ops, sum: checksum(state) })).toBeUndefined()
    expect(patches(state, { ops: [{ op: 'remove', path: '/nope' }], sum: checksum(state) })).toBeUndefined()
  })
})

describe('canonical and checksum', () => {
  it("gives the sum of PROTOCOL.md's example", () => {
    expect(canonical(JSON.parse('{"b":[1,"é"],"a":null}'))).toBe('{"a":null,"b":[1,"é"]}')
    expect(checksum(JSON.parse('{"b":[1,"é"],"a":null}'))).toBe(3817508276)
  })

  it('serializes as RFC 8785 does', () => {
    const numbers: [number, string][] = [
      [1e21, '1e+21'],
      [-0, '0'],
      [0.000001, '0.000001'],
      [1e-7, '1e-7'],
      [Number('333333333.33333329'), '333333333.3333333'],
      [1e30, '1e+30'],
      [4.5, '4.5'],
      [0.002, '0.002'],
      [1e-27, '1e-27'],
      [9007199254740992, '9007199254740992'],
      [-1.5e-300, '-1.5e-300'],
    ]
    for (const [n, text] of numbers) expect(canonical(n)).toBe(text)
    // RFC 8785 section 3.2.3: keys sorted by UTF-16 code units (the emoji's surrogates before U+FB33).
    const keys = ['\u20ac', '\r', '\ufb33', '1', '\u{1f600}', '\u0080', '\u00f6']
    const sorted = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\u{1f600}', '\ufb33']
    const text = canonical(Object.fromEntries(keys.map((k) => [k, 1])))
    expect(text).toBe('{' + sorted.map((k) => JSON.stringify(k) + ':1').join(',') + '}')
    expect(canonical({ b: [true, null, 'x', { d: 1, c: 2 }], a: {} })).toBe(
      '{"a":{},"b":[true,null,"x",{"c":2,"d":1}]}',
    )
    expect(canonical('\ud800')).toBe('"\\ud800"')
  })

  it('is FNV-1a 32 over the UTF-8 of the canonical text', () => {
    expect(fnv1a('')).toBe(0x811c9dc5)
    expect(fnv1a('a')).toBe(0xe40c292c)
    expect(checksum('')).toBe(fnv1a('""'))
    expect(checksum({ b: 1, a: 2 })).toBe(checksum({ a: 2, b: 1 }))
    expect(checksum({ b: 1, a: 2 })).toBe(fnv1a('{"a":2,"b":1}'))
    expect(checksum('é€😀\u0080\u07ff\u0800\uffff')).toBe(fnv1a('"é€😀\u0080\u07ff\u0800\uffff"'))
    // Strings that must be escaped, lone surrogates, pairs, in keys and values alike.
    const escaped = { 'k"\\\n': 'a"b\\c\n\u0001\ud800x\udc00', '😀': ['\udbff\udfff', '\u007f'] }
    expect(checksum(escaped)).toBe(fnv1a(canonical(escaped)))
    fc.assert(fc.property(json, (v) => expect(checksum(v)).toBe(fnv1a(canonical(v)))))
    const unicode = fc.string({ unit: 'binary' })
    fc.assert(fc.property(unicode, (s) => expect(checksum(s)).toBe(fnv1a(JSON.stringify(s)))))
    fc.assert(
      fc.property(fc.dictionary(unicode, unicode), (o) => expect(checksum(o)).toBe(fnv1a(canonical(o)))),
    )
    fc.assert(
      fc.property(json, (v) => Number.isInteger(checksum(v)) && checksum(v) >= 0 && checksum(v) < 2 ** 32),
    )
  })
})
