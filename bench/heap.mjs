// Where the idle memory per connection goes: `node bench/heap.mjs [n] [server…]` connects n sockets
// (default 2000, one subscription each) to each server (default: raw fastify sio), takes a heap
// snapshot before and after (both after forced GC), and prints the per-connection difference by
// object kind (constructor or closure name), largest first. Diagnostic only; not part of `npm run bench`.
import path from 'node:path'
import { readFileSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Child, killChildren } from './lib.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)
const args = process.argv.slice(2)
const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 2000)
const servers = args.filter((a) => !/^\d+$/.test(a))
const KIND = { raw: 'raw', sio: 'sio', fastify: 'listen', express: 'listen', koa: 'listen' }
process.on('exit', killChildren)
const limit = setTimeout(() => {
  console.error('heap: time limit reached')
  killChildren()
  process.exit(2)
}, 300_000)

/** Self size and count per object kind in a V8 heap snapshot. */
function byKind(file) {
  const snapshot = JSON.parse(readFileSync(file, 'utf8'))
  const fields = snapshot.snapshot.meta.node_fields
  const types = snapshot.snapshot.meta.node_types[0]
  const { nodes, strings } = snapshot
  const width = fields.length
  const iType = fields.indexOf('type')
  const iName = fields.indexOf('name')
  const iSize = fields.indexOf('self_size')
  const out = new Map()
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + iType]]
    let name = strings[nodes[i + iName]]
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '(strings)'
    else if (type === 'code') name = '(code)'
    else if (type === 'number') name = '(heap numbers)'
    else if (type === 'array') name = `(array) ${name}`
    else if (type === 'closure') name = `(closure) ${name}`
    else if (type === 'hidden') name = `(hidden) ${name}`
    const key = name.length > 80 ? `${name.slice(0, 77)}…` : name
    const entry = out.get(key) ?? { size: 0, count: 0 }
    entry.size += nodes[i + iSize]
    entry.count++
    out.set(key, entry)
  }
  return out
}

for (const name of servers.length ? servers : ['raw', 'fastify', 'sio']) {
  const server = new Child(path.join(here, 'server.mjs'), [name], { execArgv: ['--expose-gc'], name })
  const gen = new Child(path.join(here, 'generator.mjs'), ['0', '1'], { name: 'generator' })
  const { port } = await server.call('info')
  // Warm up with a few connections so that one-time allocations are in both snapshots.
  await gen.call(
    'connect',
    { system: name, kind: KIND[name], port, lo: 0, hi: 50, paths: ['/items'] },
    60_000,
  )
  const before = path.join(root, '.tmp', `heap-${name}-before.heapsnapshot`)
  const after = path.join(root, '.tmp', `heap-${name}-after.heapsnapshot`)
  await server.call('heapSnapshot', { file: before }, 120_000)
  await gen.call(
    'connect',
    { system: name, kind: KIND[name], port, lo: 50, hi: 50 + n, paths: ['/items'] },
    120_000,
  )
  await server.call('heapSnapshot', { file: after }, 120_000)
  const a = byKind(before)
  const b = byKind(after)
  const rows = [...b.entries()]
    .map(([key, v]) => ({
      key,
      size: v.size - (a.get(key)?.size ?? 0),
      count: v.count - (a.get(key)?.count ?? 0),
    }))
    .filter((r) => r.size > 0)
    .sort((x, y) => y.size - x.size)
  const total =
    rows.reduce((s, r) => s + r.size, 0) -
    [...a.entries()].reduce((s, [k, v]) => s + (b.has(k) ? 0 : v.size), 0)
  console.log(
    `\n${name}: ${(total / n).toFixed(0)} B of heap per connection (snapshot difference, ${n} connections)`,
  )
  for (const r of rows.slice(0, 25)) {
    console.log(
      `  ${(r.size / n).toFixed(0).padStart(6)} B  ${(r.count / n).toFixed(2).padStart(6)} per conn  ${r.key}`,
    )
  }
  await gen.call('close', { system: name })
  await Promise.all([server.stop(), gen.stop()])
  rmSync(before, { force: true })
  rmSync(after, { force: true })
}
clearTimeout(limit)
