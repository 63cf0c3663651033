/**
 * Applying the RFC 6902 JSON Patches of `patch` messages (`listenjs.v1.1`) to the state a client
 * holds, and checking the result's sum. Bundled into the browser client, so it is kept small.
 */
import { checksum } from '../core/checksum'
import type { PatchOp } from '../core/protocol'
import type { PatchSupport } from './types'

export { checksum }

type Json = Record<string, unknown>

const fail = (why: string, op: PatchOp): never => {
  throw new Error(`listenjs: bad patch op at ${op.path}: ${why}`)
}

/** `node` with the op applied at `keys[i]` and below, as a new container; `node` itself is unchanged. */
function at(node: unknown, keys: string[], i: number, op: PatchOp): unknown {
  if (typeof node !== 'object' || node === null) return fail('not a container', op)
  const key = keys[i] as string
  const last = i === keys.length - 1
  const adds = last && op.op === 'add'
  if (Array.isArray(node)) {
    const copy = node.slice()
    const index = adds && key === '-' ? copy.length : /^(0|[1-9]\d*)$/.test(key) ? +key : -1
    if (index < 0 || index > copy.length - (adds ? 0 : 1)) fail('no such index', op)
    if (!last) copy[index] = at(copy[index], keys, i + 1, op)
    else if (op.op === 'replace') copy[index] = op.value
    else if (op.op === 'add') copy.splice(index, 0, op.value)
    else copy.splice(index, 1)
    return copy
  }
  if (!adds && !Object.hasOwn(node, key)) fail('no such member', op)
  const copy: Json = { ...node }
  if (!last) copy[key] = at(copy[key], keys, i + 1, op)
  else if (op.op === 'remove') delete copy[key]
  else copy[key] = op.value
  return copy
}

/**
 * `state` with the RFC 6902 `ops` applied in order (`add`, `remove` and `replace`; JSON Pointer paths,
 * `''` being the whole document, `-` the end of an array for `add`). Returns a new value and never
 * changes `state` or anything in it: the containers on an op's path are copied, all others are shared
 * with `state`, so memoised views of unchanged parts stay valid. Throws on an unknown op, a path that
 * does not start with `/`, a missing member or index, an index out of range, a non-container on the
 * way, and any path with a `__proto__` segment (never assigned, so nothing can reach a prototype).
 */
export function applyPatch(state: unknown, ops: readonly PatchOp[]): unknown {
  for (const op of ops) {
    if (op.op !== 'add' && op.op !== 'remove' && op.op !== 'replace') fail('unknown op', op)
    const { path } = op
    if (path === '') {
      state = op.op === 'remove' ? fail('cannot remove the document', op) : op.value
      continue
    }
    if (typeof path !== 'string' || path[0] !== '/') fail('bad path', op)
    const keys = path
      .slice(1)
      .split('/')
      .map((key) => key.replace(/~1/g, '/').replace(/~0/g, '~'))
    if (keys.includes('__proto__')) fail('__proto__', op)
    state = at(state, keys, 0, op)
  }
  return state
}

/**
 * Patch support for the client, what `createClient({ patches })` takes: with it the client offers
 * `listenjs.v1.1`, and each `patch` message's ops are applied to the state it holds; the result is
 * kept only when its {@link checksum} is the message's `sum` (otherwise, or when the ops do not
 * apply, this returns `undefined` and the client subscribes the path again without a version). A
 * separate module, so that apps without patches do not ship it.
 */
export const patches: PatchSupport = (state, { ops, sum }) => {
  try {
    const next = applyPatch(state, ops)
    return checksum(next) === sum ? next : undefined
  } catch {
    return undefined
  }
}
