/**
 * The README is true where it is read: every code snippet in it is extracted (never copied by hand),
 * type-checked against the real entry points, and the server quickstarts are run: a real client gets
 * the snapshot and the push of a write through each of them.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { build } from 'esbuild'
import { TestClient } from './helpers/tclient'

const root = path.join(__dirname, '..')
const dir = path.join(root, '.tmp', 'readme')

interface Snippet {
  readonly line: number
  readonly lang: string
  readonly code: string
  /** The heading it stands under. */
  readonly heading: string
}

/** Every fenced code block of the README, with its language and heading. */
function snippets(): Snippet[] {
  const lines = readFileSync(path.join(root, 'README.md'), 'utf8').split('\n')
  const out: Snippet[] = []
  let heading = ''
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '')
    const open = /^```(\w+)/.exec(line)
    if (!open) continue
    const end = lines.indexOf('```', i + 1)
    out.push({ line: i + 1, lang: open[1] as string, code: lines.slice(i + 1, end).join('\n'), heading })
    i = end
  }
  return out
}

/** What the snippets leave to the reader: the app's data and functions, declared once. */
const PRELUDE = `
interface Appointment { id: string; title: string }
declare const db: { appointments: { list(): Appointment[]; create(body: unknown): Appointment } }
declare function render(value: unknown): void
declare function handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void
declare function badge(status: string): void
declare function getToken(): Promise<string>
declare function showDeleted(): void
declare function getJson(url: string): Promise<unknown>
declare const body: string
declare const app: import('fastify').FastifyInstance
declare const listenjs: typeof import('listenjs/fastify').default
declare const listen: typeof import('listenjs/client').listen
declare const client: import('listenjs/client').Client
declare const expressApp: import('express').Express
declare const liveMiddleware: import('listenjs/express').ExpressListenjs
`

const code = snippets().filter((s) => ['ts', 'tsx', 'js'].includes(s.lang))

describe('README snippets', () => {
  it('are found', () => {
    expect(code.length).toBeGreaterThanOrEqual(12)
  })

  it('all type-check against the entry points', () => {
    mkdirSync(dir, { recursive: true })
    writeFileSync(path.join(dir, 'prelude.d.ts'), PRELUDE)
    const files = code.map((snippet) => {
      const file = `line-${snippet.line}.${snippet.lang === 'tsx' ? 'tsx' : 'ts'}`
      writeFileSync(path.join(dir, file), `${snippet.code}\nexport {}\n`)
      return file
    })
    const tsconfig = {
      compilerOptions: {
        target: 'es2022',
        module: 'esnext',
        moduleResolution: 'bundler',
        jsx: 'react-jsx',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
        lib: ['es2022', 'dom'],
        baseUrl: root,
        paths: {
          listenjs: ['src/index.ts'],
          'listenjs/*': ['src/adapters/*.ts', 'src/*/index.ts'],
        },
      },
      files: ['prelude.d.ts', ...files],
    }
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig))
    const tsc = spawnSync(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', dir, '--pretty', 'false'],
      {
        encoding: 'utf8',
      },
    )
    // Name each failing snippet by its README line.
    const report = `${tsc.stdout}${tsc.stderr}`.replace(/line-(\d+)\.tsx?/g, 'README.md snippet at line $1')
    expect(report).toBe('')
  }, 60_000)
})

/** A quickstart, bundled as it is written (its port 3000 made 0), run in its own process. */
async function runQuickstart(snippet: Snippet): Promise<{ port: number; stop(): void }> {
  mkdirSync(dir, { recursive: true })
  const entry = path.join(dir, `run-${snippet.line}.ts`)
  // The reader's database, and a note of the port the server got.
  const prelude = `
import http from 'node:http'
const rows: Array<{ id: string; title: string }> = []
;(globalThis as any).db = { appointments: {
  list: () => rows,
  create: (body: any) => { const row = { id: String(rows.length + 1), title: body?.title }; rows.push(row); return row },
} }
;(globalThis as any).handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
  if (req.method === 'POST') { (globalThis as any).db.appointments.create({ title: 'posted' }); res.statusCode = 201 }
  res.setHeader('content-type', 'application/json'); res.end(JSON.stringify(rows))
}
const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (this: http.Server, ...args: any[]) {
  this.once('listening', () => console.log('PORT ' + (this.address() as any).port))
  return (listen as any).apply(this, args)
}
`
  writeFileSync(entry, `${prelude}\n${snippet.code.replace(/3000/g, '0')}\nexport {}\n`)
  const out = path.join(dir, `run-${snippet.line}.mjs`)
  await build({
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    format: 'esm',
    platform: 'node',
    packages: 'external',
    logLevel: 'silent',
    alias: {
      'listenjs/fastify': path.join(root, 'src/adapters/fastify.ts'),
      'listenjs/express': path.join(root, 'src/adapters/express.ts'),
      'listenjs/koa': path.join(root, 'src/adapters/koa.ts'),
      listenjs: path.join(root, 'src/index.ts'),
    },
  })
  const child = spawn(process.execPath, [out], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    let text = ''
    child.stdout.on('data', (chunk) => {
      text += String(chunk)
      const found = /PORT (\d+)/.exec(text)
      if (found) resolve(Number(found[1]))
    })
    child.once('exit', (code) => reject(new Error(`the snippet at line ${snippet.line} exited with ${code}`)))
  })
  return { port, stop: () => child.kill() }
}

const quickstarts = code.filter((s) => /listen\(.*3000/.test(s.code))

describe.each(quickstarts.map((s) => [`${s.heading} (README line ${s.line})`, s] as const))(
  'the quickstart %s',
  (_name, snippet) => {
    it('serves a live resource: snapshot, then the push of a write', async () => {
      const server = await runQuickstart(snippet)
      const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/listen`)
      try {
        client.subscribe('/appointments')
        expect(await client.next(10_000)).toMatchObject({ type: 'data', json: [] })
        const res = await fetch(`http://127.0.0.1:${server.port}/appointments`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ title: 'from the README' }),
        })
        expect(res.status).toBeLessThan(300)
        const pushed = await client.next(10_000)
        expect(pushed).toMatchObject({ type: 'data', path: '/appointments' })
        expect((pushed.json as unknown[]).length).toBe(1)
      } finally {
        await client.close()
        server.stop()
      }
    }, 30_000)
  },
)

it('the README has a runnable quickstart for Fastify, Express, Koa and a plain http server', () => {
  expect(quickstarts.map((s) => s.heading)).toEqual(['Fastify', 'Express', 'Koa', 'Any `http` server'])
})
