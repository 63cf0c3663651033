/**
 * The RFC 6902 JSON Patch from one state of a resource to the next, computed by the server for the
 * `patch` message (the client applies it with `src/client/patches.ts`). Both states are values as
 * `JSON.parse` produces them. It is not a minimal diff: objects are compared key by key, and arrays
 * lose their common prefix and suffix, then their middles are compared position by position, which
 * is linear and finds the usual changes of a list (one element inserted, removed or edited) in one op.
 */
import type { PatchOp } from './protocol'

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Whether two JSON values are deeply equal (`0` and `-0` are equal, as their JSON texts are). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false
    return true
  }
  if (Array.isArray(b)) return false
  const keys = Object.keys(a)
  if (keys.length !== Object.keys(b).length) return false
  for (const key of keys) {
    if (!Object.hasOwn(b, key) || !deepEqual((a as Json)[key], (b as Json)[key])) return false
  }
  return true
}

/** The ops being built and how many are allowed; `add` returns false when one more is too many. */
class Ops {
  readonly list: PatchOp[] = []
  constructor(private readonly max: number) {}

  add(op: PatchOp): boolean {
    // A client assigning a `__proto__` key would hit the prototype setter: such changes go in full.
    if (this.list.length >= this.max || (op.path + '/').includes('/__proto__/')) return false
    this.list.push(op)
    return true
  }
}

/** `key` as a JSON Pointer (RFC 6901) reference token. */
const escape = (key: string): string =>
  key.includes('~') || key.includes('/') ? key.replaceAll('~', '~0').replaceAll('/', '~1') : key

function walk(a: unknown, b: unknown, path: string, ops: Ops): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) return arrays(a, b, path, ops)
  if (isObject(a) && isObject(b)) return objects(a, b, path, ops)
  return ops.add({ op: 'replace', path, value: b })
}

function objects(a: Json, b: Json, path: string, ops: Ops): boolean {
  for (const key in a) {
    if (!Object.hasOwn(a, key)) continue
    const at = path + '/' + escape(key)
    if (!Object.hasOwn(b, key)) {
      if (!ops.add({ op: 'remove', path: at })) return false
    } else if (!walk(a[key], b[key], at, ops)) return false
  }
  for (const key in b) {
    if (Object.hasOwn(b, key) && !Object.hasOwn(a, key)) {
      if (!ops.add({ op: 'add', path: path + '/' + escape(key), value: b[key] })) return false
    }
  }
  return true
}

function arrays(a: readonly unknown[], b: readonly unknown[], path: string, ops: Ops): boolean {
  let start = 0
  let endA = a.length
  let endB = b.length
  while (start < endA && start < endB && deepEqual(a[start], b[start])) start++
  while (endA > start && endB > start && deepEqual(a[endA - 1], b[endB - 1])) {
    endA--
    endB--
  }
  const common = Math.min(endA, endB)
  for (let i = start; i < common; i++) if (!walk(a[i], b[i], path + '/' + i, ops)) return false
  for (let i = common; i < endB; i++)
    if (!ops.add({ op: 'add', path: path + '/' + i, value: b[i] })) return false
  for (let i = endA - 1; i >= common; i--) if (!ops.add({ op: 'remove', path: path + '/' + i })) return false
  return true
}

/**
 * The RFC 6902 ops turning `a` into `b` (both JSON values), `[]` when they are deeply equal, or
 * `undefined` when the full state should be sent instead: more than `maxOps` ops would be needed, or
 * an op would go through a `__proto__` key. Objects are compared key by key (`remove` for keys gone,
 * `add` for new keys, recursion into changed values that are both arrays or both objects, `replace`
 * otherwise). Arrays lose their deeply-equal common prefix and suffix; what remains is compared
 * position by position over the shorter length, then the rest of `b` is added (at increasing indexes)
 * or the rest of `a` removed (from the highest index down). A change of the root's kind is one
 * `replace` of path `''`. Values in the ops are the sub-values of `b` themselves, not copies.
 */
export function diff(a: unknown, b: unknown, maxOps = 64): PatchOp[] | undefined {
  const ops = new Ops(maxOps)
  return walk(a, b, '', ops) ? ops.list : undefined
}
