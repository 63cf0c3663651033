/**
 * `listenjs tail` as a user runs it: the CLI bundled with esbuild into `.tmp/` (so that `ws` resolves
 * from the repo's node_modules), spawned as a child process against a real Fastify fixture. Events are
 * ordered by waiting for output lines, never by sleeping.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { build } from 'esbuild'
import { startFixture, type Fixture } from './helpers/apps'
import { until } from './helpers/wait'

const outdir = path.join(__dirname, '..', '.tmp', `cli-test-${process.pid}`)
const cli = path.join(outdir, 'cli.cjs')

/** A running CLI: its output lines so far, and its exit code once its output is closed. */
interface Run {
  readonly child: ChildProcess
  readonly stdout: string[]
  readonly stderr: string[]
  readonly exit: Promise<number | null>
  /** Resolves once `count` stdout lines match `pattern`; fails with both outputs after 5 s. */
  lines(pattern: RegExp, count?: number): Promise<string[]>
}

function run(...args: string[]): Run {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, NO_COLOR: '1' } })
  const stdout: string[] = []
  const stderr: string[] = []
  const collect = (into: string[]) => {
    let rest = ''
    return (chunk: Buffer): void => {
      const parts = (rest + chunk.toString()).split('\n')
      rest = parts.pop() ?? ''
      into.push(...parts)
    }
  }
  child.stdout.on('data', collect(stdout))
  child.stderr.on('data', collect(stderr))
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return {
    child,
    stdout,
    stderr,
    exit,
    async lines(pattern, count = 1) {
      const matching = (): string[] => stdout.filter((line) => pattern.test(line))
      await until(() => matching().length >= count, 5000).catch(() => {
        throw new Error(
          `no ${count} lines matching ${pattern}\nstdout:\n${stdout.join('\n')}\nstderr:\n${stderr.join('\n')}`,
        )
      })
      return matching()
    },
  }
}

const HEADER = /^\d{4}-\d\d-\d\dT\S+Z \/items (snapshot|change) \S+$/

describe('listenjs tail', () => {
  let fixture: Fixture
  const runs: Run[] = []
  const start = (...args: string[]): Run => {
    const started = run(...args)
    runs.push(started)
    return started
  }
  const post = (title: string) =>
    fetch(`${fixture.url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title }),
    })

  beforeAll(async () => {
    mkdirSync(outdir, { recursive: true })
    const entry = path.join(__dirname, '..', 'src', 'cli', 'index.ts')
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      outfile: cli,
      external: ['ws'],
      logLevel: 'error',
    })
  })
  afterAll(() => rmSync(outdir, { recursive: true, force: true }))
  beforeEach(async () => {
    fixture = await startFixture('fastify')
  })
  afterEach(async () => {
    for (const { child } of runs.splice(0)) child.kill('SIGKILL')
    await fixture.close()
  })

  it('prints the snapshot then each change as a header line and pretty JSON', async () => {
    const tail = start('tail', fixture.url, '/items')
    await tail.lines(/ \/items snapshot /)
    expect(tail.stdout.slice(-2)).toEqual([expect.stringMatching(HEADER), '[]'])
    await post('one')
    await tail.lines(/ \/items change /)
    const header = tail.stdout.findIndex((line) => line.includes(' change '))
    await until(() => tail.stdout.length >= header + 6)
    expect(tail.stdout.slice(header + 1)).toEqual([
      '[',
      '  {',
      '    "id": "1",',
      '    "title": "one"',
      '  }',
      ']',
    ])
    expect(tail.stderr).toContain('listenjs: open')
  })

  it('prints one JSON line per state with --json, from the ws:// endpoint', async () => {
    const tail = start('tail', fixture.wsUrl, '/items', '--json')
    await tail.lines(/snapshot/)
    await post('one')
    const [snapshot, change] = (await tail.lines(/^\{/, 2)).map((line) => JSON.parse(line))
    expect(snapshot).toEqual({ path: '/items', kind: 'snapshot', version: expect.any(String), data: [] })
    expect(change).toEqual({
      path: '/items',
      kind: 'change',
      version: expect.any(String),
      data: [{ id: '1', title: 'one' }],
    })
    expect(change.version).not.toBe(snapshot.version)
  })

  it('prints only the changed lines with --diff', async () => {
    fixture.state.create('one')
    fixture.state.create('two')
    const tail = start('tail', fixture.url, '/items', '--diff')
    await tail.lines(/ snapshot /)
    await until(() => tail.stdout.includes(']'))
    await fetch(`${fixture.url}/items/2`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'deux' }),
    })
    await tail.lines(/ change /)
    await until(() => tail.stdout.length >= tail.stdout.findIndex((line) => line.includes(' change ')) + 3)
    const after = tail.stdout.slice(tail.stdout.findIndex((line) => line.includes(' change ')) + 1)
    expect(after).toEqual(['-    "title": "two"', '+    "title": "deux"'])
  })

  it('gets /private with --token, and exits 2 with the refusal on stderr without', async () => {
    const authorized = start('tail', fixture.url, '/private', '--token', 'alice-token', '--json')
    const [line] = await authorized.lines(/^\{/)
    expect(JSON.parse(line ?? '')).toMatchObject({ path: '/private', data: { secret: 'alice' } })

    const refused = start('tail', fixture.url, '/private')
    expect(await refused.exit).toBe(2)
    expect(refused.stdout.join('')).toBe('')
    expect(refused.stderr.join('\n')).toMatch(/\/private refused: unauthorized \(HTTP 401\)/)
  })

  it('sends --cookie and --header on the WebSocket upgrade', async () => {
    const byCookie = start(
      'tail',
      fixture.url,
      '/private',
      '--cookie',
      'session=alice',
      '--count',
      '1',
      '--json',
    )
    const byHeader = start(
      'tail',
      fixture.url,
      '/private',
      '--header',
      'Authorization: Bearer alice-token',
      '--count',
      '1',
    )
    expect(await byCookie.exit).toBe(0)
    expect(await byHeader.exit).toBe(0)
    expect(JSON.parse(byCookie.stdout[0] ?? '').data).toEqual({ secret: 'alice' })
    expect(byHeader.stdout.slice(1)).toContain('  "secret": "alice"')
  })

  it('exits 0 after --count states in total', async () => {
    const tail = start('tail', fixture.url, '/items', '/views', '--count', '2', '--json')
    expect(await tail.exit).toBe(0)
    expect(
      tail.stdout
        .filter(Boolean)
        .map((line) => JSON.parse(line).path)
        .sort(),
    ).toEqual(['/items', '/views'])
  })

  it('exits 0 on SIGINT', async () => {
    const tail = start('tail', fixture.url, '/items')
    await tail.lines(/ snapshot /)
    tail.child.kill('SIGINT')
    expect(await tail.exit).toBe(0)
  })

  it('exits 3 when the client gives up on an endpoint that answers 404, with --retries 0', async () => {
    const tail = start('tail', `${fixture.url}/nowhere`, '/items', '--retries', '0')
    expect(await tail.exit).toBe(3)
    expect(tail.stderr.join('\n')).toMatch(/gave up: .*\(endpoint_not_found, HTTP 404\)/)
  })

  it.each([
    '',
    'tail',
    'tail http://127.0.0.1:1',
    'tail http://127.0.0.1:1 /items --bogus',
    'tail ftp://127.0.0.1:1 /items',
    'tail http://127.0.0.1:1 /items --count two',
    'tail http://127.0.0.1:1 /items --header nocolon',
    'tail http://127.0.0.1:1 /items --diff --json',
    'watch http://127.0.0.1:1 /items',
  ])('exits 1 on bad usage: "%s"', async (line) => {
    const tail = start(...line.split(' ').filter(Boolean))
    expect(await tail.exit).toBe(1)
    expect(tail.stderr.join('\n')).not.toMatch(/\n\s+at /)
  })

  it('prints usage and the exit codes with --help', async () => {
    const help = start('tail', '--help')
    expect(await help.exit).toBe(0)
    expect(help.stdout.join('\n')).toMatch(/Usage: listenjs tail <url> <path…>[\s\S]*Exit codes:/)
  })
})
