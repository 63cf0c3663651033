// Proves that the package as published works for a consumer, not just inside this repo: builds, packs
// (the tarball must hold only dist/ and the docs), installs the tarball into an empty project with Fastify 5,
// Express 5, Koa 3 and their types, require()s and imports every subpath, runs a live round trip (snapshot,
// POST, pushed state) through each framework with the Node client, and type-checks ESM and CJS TypeScript
// consumers, plus a file whose wrong uses must be reported (so the types are real, not `any`).
// Usage: node scripts/pack-check.mjs [--no-build] [--keep]   (--keep leaves the temp dir for a look)
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const started = Date.now()
const root = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const tmp = mkdtempSync(join(tmpdir(), 'listenjs-pack-check-'))
process.on('exit', () =>
  args.includes('--keep') ? console.log(`# kept ${tmp}`) : rmSync(tmp, { recursive: true }),
)
const write = (file, text) => writeFileSync(join(tmp, file), text.trimStart())

function fail(name, details) {
  console.log(`not ok - ${name}`)
  console.error(details.trim())
  process.exit(1)
}
/** Runs a child process; prints `ok - name`, or fails with the child's output. Returns its stdout. */
function step(name, cmd, cmdArgs, { cwd = tmp, expectFailure = false, verify } = {}) {
  const shell = process.platform === 'win32' && cmd !== 'node' // npm and npx are .cmd files on Windows
  const r = spawnSync(cmd === 'node' ? process.execPath : cmd, cmdArgs, { cwd, shell, encoding: 'utf8' })
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`
  // expectFailure: null accepts either exit code and leaves the judgement to `verify`.
  const exitOk = expectFailure === null || (r.status === 0) !== expectFailure
  const problem = r.error?.message ?? (exitOk ? verify?.(output) : `exit code ${r.status}`)
  if (problem) fail(name, `$ ${cmd} ${cmdArgs.join(' ')}\n${problem}\n${output}`)
  console.log(`ok - ${name}`)
  return r.stdout
}

// 1. Build and pack; only dist/ and the docs may ship.
if (!args.includes('--no-build')) step('build', 'npm', ['run', 'build'], { cwd: root })
const packed = step('npm pack', 'npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root })
const [pack] = JSON.parse(packed)
const docs = ['README.md', 'PROTOCOL.md', 'CHANGELOG.md', 'ARCHITECTURE.md', 'BENCHMARKS.md', 'LICENSE']
const shipped = pack.files.map((f) => f.path)
// Besides dist/ and the docs, only what the README links to (its pictures and pages) may ship.
const linked = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
  .map((m) => m[1])
  .filter((target) => !/^[a-z]+:/i.test(target))
const strays = shipped.filter(
  (p) => !p.startsWith('dist/') && !docs.includes(p) && p !== 'package.json' && !linked.includes(p),
)
if (strays.length) fail('tarball contents', `files outside dist/ and the docs:\n${strays.join('\n')}`)
// Every relative link of the README works where it is read from the installed package.
const broken = linked.filter((target) => !shipped.includes(target))
if (broken.length)
  fail('README links', `relative links to files the package does not ship:\n${broken.join('\n')}`)
console.log(`ok - README links (${linked.length} relative links, all shipped)`)
const size = `${pack.entryCount} files, ${pack.size} B packed, ${pack.unpackedSize} B unpacked`
console.log(`ok - tarball contents (${pack.filename}: ${size})`)
const missing = docs.filter((doc) => !pack.files.some((f) => f.path === doc))
if (missing.length) console.log(`# note: the tarball has no ${missing.join(', ')}`)

// 2. An empty consumer project with the tarball, the peer frameworks and their types.
write('package.json', JSON.stringify({ name: 'listenjs-consumer', version: '0.0.0', private: true }))
step('npm install', 'npm', [
  // --engine-strict: on a supported Node, nothing in the tree may ask for another one.
  ...['install', '--engine-strict', '--no-audit', '--no-fund', '--prefer-offline', join(tmp, pack.filename)],
  ...['fastify@5', 'express@5', 'koa@3', '@koa/router@15', 'ws', 'typescript@~5.9', 'react@19'],
  '@tanstack/query-core@5',
  'ioredis@5',
  '@opentelemetry/api@1',
  ...['@types/node@22', '@types/express@5', '@types/koa', '@types/ws', '@types/react@19'],
])

// 3a. Every subpath loads through require() and through import, with its key exports.
const EXPORTS = `
const fn = (value, name) => assert.equal(typeof value, 'function', name + ' is not a function')
fn(root.createHub, 'createHub'); fn(root.Hub, 'Hub'); fn(root.isReplay, 'isReplay')
assert.ok(new root.ListenjsError('closed', 'x') instanceof Error, 'ListenjsError')
assert.equal(root.CloseCode.GoingAway, 1001); assert.equal(typeof root.PUBLIC, 'symbol')
fn(fastify.default, 'fastify default'); fn(fastify.isReplay, 'fastify isReplay')
assert.equal(fastify.default[Symbol.for('skip-override')], true, 'fastify default is not a fastify-plugin')
for (const [name, m] of Object.entries({ express, koa })) {
  fn(m.listenjs, name + ' listenjs'); assert.equal(m.default, m.listenjs, name + ' default')
}
fn(client.createClient, 'createClient'); fn(client.listen, 'listen'); fn(client.defaultClient, 'defaultClient')
fn(react.useListen, 'useListen'); fn(react.ListenProvider, 'ListenProvider')
fn(tanstack.liveQueries, 'liveQueries'); fn(tanstack.pathOfKey, 'pathOfKey')
fn(patches.patches, 'patches'); fn(patches.applyPatch, 'applyPatch'); fn(patches.checksum, 'checksum')
fn(http.HttpSocket, 'HttpSocket'); fn(http.httpFallback, 'httpFallback'); fn(tabs.shareAcrossTabs, 'shareAcrossTabs'); fn(testing.connect, 'testing connect'); fn(otel.instrument, 'instrument')`
const load = (esm) =>
  [
    'root',
    'fastify',
    'express',
    'koa',
    'client',
    'react',
    'tanstack',
    'patches',
    'http',
    'tabs',
    'testing',
    'otel',
    'assert',
  ].map((name) => {
    const from =
      {
        root: 'listenjs',
        assert: 'node:assert/strict',
        patches: 'listenjs/client/patches',
        http: 'listenjs/client/http',
        tabs: 'listenjs/client/tabs',
      }[name] ?? `listenjs/${name}`
    return esm ? `import * as ${name} from '${from}'` : `const ${name} = require('${from}')`
  })
step('cjs require', 'node', ['-e', [...load(false), EXPORTS].join('\n')])
// The command line: `npx listenjs` from the installed package.
step('npx listenjs --help', 'npx', ['--no-install', 'listenjs', '--help'], {
  verify: (output) => (output.includes('listenjs tail <url> <path') ? undefined : 'no usage printed'),
})
step('esm import', 'node', ['--input-type=module', '-e', [...load(true), EXPORTS].join('\n')])

// 3b. A live round trip per framework: the snapshot of GET /items, a POST /items, then the pushed state.
const LIVE = `
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { json } from 'node:stream/consumers'
import WebSocket from 'ws'
import { createClient } from 'listenjs/client'
const items = []
const start = async (live, app) => {
  const server = live.attach(app.listen(0, '127.0.0.1'))
  await once(server, 'listening')
  const close = async () => { await live.hub.close(); await new Promise((resolve) => server.close(resolve)) }
  return { url: 'http://127.0.0.1:' + server.address().port, close }
}
const servers = {
  async fastify() {
    const { default: Fastify } = await import('fastify')
    const { default: listenjs } = await import('listenjs/fastify')
    const app = Fastify()
    await app.register(listenjs)
    app.get('/items', async () => items)
    app.post('/items', async (request, reply) => reply.code(201).send(items.push(request.body)))
    return { url: await app.listen({ port: 0, host: '127.0.0.1' }), close: () => app.close() }
  },
  async express() {
    const { default: express } = await import('express')
    const { listenjs } = await import('listenjs/express')
    const live = listenjs()
    const app = express().use(express.json()).use(live)
    app.get('/items', (req, res) => res.json(items))
    app.post('/items', (req, res) => res.status(201).json(items.push(req.body)))
    return start(live, app)
  },
  async koa() {
    const { default: Koa } = await import('koa')
    const { Router } = await import('@koa/router')
    const { listenjs } = await import('listenjs/koa')
    const live = listenjs()
    const router = new Router().get('/items', (ctx) => { ctx.body = items })
    router.post('/items', async (ctx) => { ctx.status = 201; ctx.body = items.push(await json(ctx.req)) })
    return start(live, new Koa().use(live.middleware).use(router.routes()))
  },
}
const framework = process.argv[2]
const { url, close } = await servers[framework]()
const seen = []
let check
const waitFor = (what, test) =>
  new Promise((resolve, reject) => {
    const timeout = () => reject(new Error('no ' + what + ' in 5 s, saw ' + JSON.stringify(seen)))
    const timer = setTimeout(timeout, 5000)
    check = () => test() && (clearTimeout(timer), resolve())
    check()
  })
const client = createClient({ url: url + '/listen', WebSocket })
const onError = (error) => { console.error('listen error:', error); process.exit(1) }
client.listen('/items', (data, meta) => (seen.push({ data, ...meta }), check?.()), { onError })
await waitFor('snapshot', () => seen.some((s) => s.snapshot && s.data.length === 0))
const headers = { 'content-type': 'application/json' }
const response = await fetch(url + '/items', { method: 'POST', headers, body: '{"id":"a"}' })
assert.equal(response.status, 201)
await waitFor('pushed state', () => seen.some((s) => !s.snapshot && s.data[0]?.id === 'a'))
client.close()
await close()
`
write('live.mjs', LIVE)
for (const framework of ['fastify', 'express', 'koa'])
  step(`${framework} live round trip`, 'node', ['live.mjs', framework])

// 3c. TypeScript consumers, ESM (.mts) and CJS (.cts) from the same source, each its own program:
// like every dual package, listenjs ships one set of declarations per format, and one program that
// loads both sees two unrelated `Hub` types (the usual dual-package hazard; documented in README).
// skipLibCheck is on because of third-party types: @types/koa uses `contentDisposition.Options` from
// @types/content-disposition, but express 5.3 hoists content-disposition@2, whose own types lack it.
write(
  'tsconfig.json',
  `{
  "compilerOptions": { "module": "nodenext", "moduleResolution": "nodenext", "target": "es2022",
    "strict": true, "noEmit": true, "skipLibCheck": true, "types": ["node"] },
  "files": ["consumer.mts"]
}`,
)
write('tsconfig.cjs.json', JSON.stringify({ extends: './tsconfig.json', files: ['consumer.cts'] }))
const CONSUMER = `
import { createHub, CloseCode, Hub, ListenjsError, PUBLIC, isReplay, type HubOptions } from 'listenjs'
import Fastify from 'fastify'
import listenjs, { isReplay as isFastifyReplay } from 'listenjs/fastify'
import express from 'express'
import expressListenjs, { type ExpressListenjs } from 'listenjs/express'
import Koa from 'koa'
import { Router } from '@koa/router'
import { listenjs as koaListenjs, type KoaListenjs } from 'listenjs/koa'
import WebSocket from 'ws'
import { createClient, listen, type Client, type Meta } from 'listenjs/client'
import { ListenProvider, useListen, type ListenState } from 'listenjs/react'
import { liveQueries } from 'listenjs/tanstack'
import { QueryClient } from '@tanstack/query-core'
import { Redis } from 'ioredis'
import { redisBackplane, redisPublisher, type RedisBackplane } from 'listenjs/redis'
export const backplane: RedisBackplane = redisBackplane({ publisher: new Redis(), subscriber: new Redis() })
export const publisher = redisPublisher({ url: 'redis://127.0.0.1:6379', prefix: 'app' })
const options: HubOptions = { path: '/listen', identify: () => PUBLIC }
const hub: Hub = createHub(options)
const error: ListenjsError = new ListenjsError('invalid_option', 'bad', { path: '/x' })
hub.notify('/items', { code: CloseCode.GoingAway satisfies number, message: error.message })
export async function fastifyApp() {
  const app = Fastify()
  await app.register(listenjs, { path: '/listen' })
  app.listenjs.notify('/x')
  const decorated: Hub = app.listenjs
  app.get('/items', { config: { listenjs: { public: true } } }, async (req) => [isFastifyReplay(req)])
  return decorated
}
export const live: ExpressListenjs = expressListenjs()
express().use(express.json()).use(live).get('/items', (req, res) => res.json({ replay: isReplay(req) }))
const koa: KoaListenjs = koaListenjs()
new Koa().use(koa.middleware).use(new Router().get('/items', (ctx) => { ctx.body = [] }).routes())
const client: Client = createClient({ url: 'ws://127.0.0.1/listen', WebSocket })
client.listen<{ id: string }[]>('/items', (items, meta: Meta) => {
  const id: string | undefined = items[0]?.id
  const version: string = meta.version
  console.log(id, version, meta.snapshot)
})()
listen('/x', () => {}, { onError: (e) => e.code })
export function useItems(): string | undefined {
  const state: ListenState<{ id: string }[]> = useListen<{ id: string }[]>('/items', { client })
  return state.status === 'live' ? state.data?.[0]?.id : state.error?.code
}
export const provider = ListenProvider({ client, children: null })
export const stop: () => void = liveQueries(new QueryClient(), client, { pathOf: (key) => String(key[0]) })
`
write('consumer.mts', CONSUMER)
write('consumer.cts', CONSUMER)
step('typescript consumer (.mts)', 'npx', ['tsc', '-p', '.', '--pretty', 'false'])
step('typescript consumer (.cts)', 'npx', ['tsc', '-p', 'tsconfig.cjs.json', '--pretty', 'false'])

// 3c'. The same consumers with skipLibCheck off, and once more with bundler resolution: listenjs's own
// declarations must check clean. (Errors inside other packages' types are theirs; see above.)
const strict = { skipLibCheck: false }
write('tsconfig.strict.json', JSON.stringify({ extends: './tsconfig.json', compilerOptions: strict }))
write('tsconfig.strict-cjs.json', JSON.stringify({ extends: './tsconfig.cjs.json', compilerOptions: strict }))
write(
  'tsconfig.bundler.json',
  JSON.stringify({
    extends: './tsconfig.json',
    compilerOptions: { ...strict, module: 'esnext', moduleResolution: 'bundler' },
    files: ['consumer.ts'],
  }),
)
write('consumer.ts', CONSUMER)
for (const [name, config] of [
  ['nodenext ESM', 'tsconfig.strict.json'],
  ['nodenext CJS', 'tsconfig.strict-cjs.json'],
  ['bundler', 'tsconfig.bundler.json'],
]) {
  step(`typescript consumer, skipLibCheck off (${name})`, 'npx', ['tsc', '-p', config, '--pretty', 'false'], {
    expectFailure: null,
    verify: (output) => {
      const ours = output.split('\n').filter((line) => /^(consumer\.|node_modules\/listenjs\/)/.test(line))
      return ours.length === 0
        ? undefined
        : `errors in listenjs's declarations or the consumer:\n${ours.join('\n')}`
    },
  })
}

// 3d. Wrong uses must not type-check: each line marked `// error` must be reported, and no other line.
const BAD = `
import { createHub } from 'listenjs'
import { Hub } from 'listenjs/fastify' // error: Hub is exported by 'listenjs' only
import Fastify from 'fastify'
import { listenjs as expressListenjs } from 'listenjs/express'
import { listenjs as koaListenjs } from 'listenjs/koa'
import { createClient } from 'listenjs/client'
import { useListen } from 'listenjs/react'
import { redisBackplane } from 'listenjs/redis'
redisBackplane({ publisher: 42 }) // error
createHub({ path: 42 }) // error
useListen(42) // error
Fastify().listenjs.notify(42) // error
expressListenjs().attach('not a server') // error
koaListenjs({ heartbeat: { intervalMs: 'soon' } }) // error
createClient({ url: 'ws://x' }).listen<{ id: string }[]>('/items', (items) => items[0]?.name) // error
export const isHub = (x: unknown) => x instanceof Hub
`
write('bad.mts', BAD)
write('tsconfig.bad.json', JSON.stringify({ extends: './tsconfig.json', files: ['bad.mts'] }))
const expected = BAD.trimStart()
  .split('\n')
  .flatMap((line, i) => (line.includes('// error') ? [i + 1] : []))
step('typescript rejects wrong uses', 'npx', ['tsc', '-p', 'tsconfig.bad.json', '--pretty', 'false'], {
  expectFailure: true,
  verify: (output) => {
    const reported = new Set([...output.matchAll(/^bad\.mts\((\d+),\d+\): error/gm)].map((m) => Number(m[1])))
    const same = reported.size === expected.length && expected.every((line) => reported.has(line))
    return same ? undefined : `expected errors on lines ${expected} of bad.mts, got ${[...reported]}`
  },
})

console.log(`# all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`)
