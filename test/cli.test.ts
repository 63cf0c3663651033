/**
 * `listenjs tail` as a user runs it: the package's built bin once, and the CLI bundled with esbuild into `.tmp/` (so that `ws` resolves
 * from the repo's node_modules), spawned as a child process against a real Fastify fixture. Events are
 * ordered by waiting for output lines, never by sleeping.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { build } from 'esbuild'
import { colorOf } from '../src/cli/tail'
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

/**
 * The environment of a run: this one without the colour variables (Jest gives its workers
 * `FORCE_COLOR=1` when it runs in a terminal), then `env`.
 */
function environment(env: Record<string, string>): NodeJS.ProcessEnv {
  const { FORCE_COLOR: _force, NO_COLOR: _no, ...rest } = process.env
  return { ...rest, ...env }
}

/**
 * Runs the CLI with `args`, stdout and stderr piped; with `tty`, inside util-linux `script`, whose
 * pseudo-terminal is the CLI's stdout and stderr (both then arrive on stdout, lines ending in CRLF).
 */
function run(args: string[], env: Record<string, string> = {}, tty = false, script = cli): Run {
  const command = [process.execPath, script, ...args]
  const child = tty
    ? spawn('script', ['-qfec', command.map(quote).join(' '), '/dev/null'], { env: environment(env) })
    : spawn(process.execPath, [script, ...args], { env: environment(env) })
  const stdout: string[] = []
  const stderr: string[] = []
  const collect = (into: string[]) => {
    let rest = ''
    return (chunk: Buffer): void => {
      const parts = (rest + chunk.toString()).split(/\r?\n/)
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

/** `text` as one word for `sh -c`. */
const quote = (text: string): string => `'${text.replaceAll("'", `'\\''`)}'`

/** util-linux `script` runs a command with a pseudo-terminal as its stdout (not on macOS or Windows). */
const ttyRuns = spawnSync('script', ['-qec', 'test -t 1', '/dev/null']).status === 0

const HEADER = /^\d{4}-\d\d-\d\dT\S+Z \/items (snapshot|change) \S+$/
const RED = '\x1b[31m'
const GREEN = '\x1b[32m'
const RESET = '\x1b[39m'

describe('listenjs tail', () => {
  let fixture: Fixture
  const runs: Run[] = []
  const startWith = (env: Record<string, string>, ...args: string[]): Run => {
    const started = run(args, env)
    runs.push(started)
    return started
  }
  const start = (...args: string[]): Run => startWith({}, ...args)
  const servers: net.Server[] = []
  /** A TCP server that hangs up on every connection: an endpoint that never opens. */
  const hangingUp = async (): Promise<string> => {
    const server = net.createServer((socket) => socket.destroy())
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/listen`
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
    for (const server of servers.splice(0)) server.close()
    await fixture.close()
  })

  /**
   * Starts `--diff` on /items holding items one and two, renames two to deux, and resolves with the
   * lines printed for that change (after its header).
   */
  async function diffOfRename(tail: Run): Promise<string[]> {
    await tail.lines(/ snapshot /)
    await until(() => tail.stdout.includes(']'))
    const response = await fetch(`${fixture.url}/items/2`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'deux' }),
    })
    expect(response.ok).toBe(true)
    await tail.lines(/ change /)
    const header = tail.stdout.findIndex((line) => line.includes(' change '))
    await until(() => tail.stdout.length >= header + 3)
    return tail.stdout.slice(header + 1)
  }

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

  it('runs as the package’s own bin (the built dist/cli.js), and exits 0 after --count states', async () => {
    const root = path.join(__dirname, '..')
    const bin = (
      JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { bin: { listenjs: string } }
    ).bin.listenjs
    const tail = run(
      ['tail', fixture.url, '/items', '--json', '--count', '2'],
      {},
      false,
      path.join(root, bin),
    )
    runs.push(tail)
    await tail.lines(/"kind":"snapshot"/)
    await post('from the bin')
    expect(await tail.exit).toBe(0)
    const states = tail.stdout
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { kind: string; data: unknown })
    expect(states.map((state) => state.kind)).toEqual(['snapshot', 'change'])
    expect(states[1]?.data).toEqual([{ id: '1', title: 'from the bin' }])
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
    expect(await diffOfRename(tail)).toEqual(['-    "title": "two"', '+    "title": "deux"'])
  })

  describe('colours of --diff', () => {
    beforeEach(() => {
      fixture.state.create('one')
      fixture.state.create('two')
    })

    it.each([
      ['FORCE_COLOR=1', { FORCE_COLOR: '1' }],
      ['FORCE_COLOR=1 over NO_COLOR=1', { FORCE_COLOR: '1', NO_COLOR: '1' }],
    ])('colours the removed line red and the added one green when piped, with %s', async (_name, env) => {
      const tail = startWith(env, 'tail', fixture.url, '/items', '--diff')
      expect(await diffOfRename(tail)).toEqual([
        `${RED}-    "title": "two"${RESET}`,
        `${GREEN}+    "title": "deux"${RESET}`,
      ])
      // Only those lines: the headers and the snapshot are plain.
      const coloured = tail.stdout.filter((line) => line.includes('\x1b'))
      expect(coloured).toHaveLength(2)
    })

    it.each([
      ['nothing set', {}],
      ['NO_COLOR=1', { NO_COLOR: '1' }],
      ['FORCE_COLOR=0', { FORCE_COLOR: '0' }],
      ['FORCE_COLOR=false', { FORCE_COLOR: 'false' }],
    ])('writes no escape byte when piped, with %s', async (_name, env) => {
      const tail = startWith(env, 'tail', fixture.url, '/items', '--diff')
      expect(await diffOfRename(tail)).toEqual(['-    "title": "two"', '+    "title": "deux"'])
      expect([...tail.stdout, ...tail.stderr].join('\n')).not.toContain('\x1b')
    })

    // On a terminal, where colours are the default and NO_COLOR is what turns them off.
    const onTty = ttyRuns ? it : it.skip

    onTty('colours on a TTY', async () => {
      const tail = run(['tail', fixture.url, '/items', '--diff', '--count', '2'], {}, true)
      runs.push(tail)
      expect(await diffOfRename(tail)).toEqual([
        `${RED}-    "title": "two"${RESET}`,
        `${GREEN}+    "title": "deux"${RESET}`,
      ])
      expect(await tail.exit).toBe(0)
    })

    onTty('writes no escape byte on a TTY with NO_COLOR=1', async () => {
      const tail = run(['tail', fixture.url, '/items', '--diff', '--count', '2'], { NO_COLOR: '1' }, true)
      runs.push(tail)
      expect(await diffOfRename(tail)).toEqual(['-    "title": "two"', '+    "title": "deux"'])
      expect(await tail.exit).toBe(0)
      expect(tail.stdout.join('\n')).not.toContain('\x1b')
    })

    it('decides as documented: FORCE_COLOR, then NO_COLOR, then whether stdout is a TTY', () => {
      expect(colorOf({}, true)).toBe(true)
      expect(colorOf({}, false)).toBe(false)
      expect(colorOf({ NO_COLOR: '1' }, true)).toBe(false)
      expect(colorOf({ NO_COLOR: '' }, true)).toBe(true)
      expect(colorOf({ FORCE_COLOR: '1' }, false)).toBe(true)
      expect(colorOf({ FORCE_COLOR: '' }, false)).toBe(true)
      expect(colorOf({ FORCE_COLOR: '3', NO_COLOR: '1' }, false)).toBe(true)
      expect(colorOf({ FORCE_COLOR: '0' }, true)).toBe(false)
      expect(colorOf({ FORCE_COLOR: 'false' }, true)).toBe(false)
    })
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

  describe('giving up', () => {
    it.each([
      ['answers 404', async () => `${fixture.url}/nowhere`, '(endpoint_not_found, HTTP 404)'],
      ['hangs up', hangingUp, '(endpoint_unreachable)'],
    ])(
      'exits 3 at once with --retries 0 on an endpoint that %s, saying so and never "retrying"',
      async (_name, endpoint, why) => {
        const url = await endpoint()
        const tail = start('tail', url, '/items', '--retries', '0')
        expect(await tail.exit).toBe(3)
        expect(tail.stdout.join('')).toBe('')
        // Exactly these lines: no "reconnecting…" status, no "Retrying." from the client's console.
        expect(tail.stderr.filter(Boolean)).toEqual([
          `listenjs: connecting to ${url.replace(/^http/, 'ws')}…`,
          `listenjs: gave up: connection closed with code 1006 ${why}`,
        ])
      },
    )

    it('exits 3 at once with --retries 0 when an open connection drops, without a reconnecting status', async () => {
      const tail = start('tail', fixture.url, '/items', '--retries', '0')
      await tail.lines(/ snapshot /)
      // 1001, going away: a close the client would retry at once if it retried.
      await fixture.hub.close()
      expect(await tail.exit).toBe(3)
      expect(tail.stderr.filter(Boolean)).toEqual([
        `listenjs: connecting to ${fixture.wsUrl}…`,
        'listenjs: open',
        'listenjs: gave up: connection closed with code 1001',
      ])
    })

    it('reconnects once with --retries 1, then exits 3, saying each', async () => {
      const url = await hangingUp()
      const tail = start('tail', url, '/items', '--retries', '1')
      expect(await tail.exit).toBe(3)
      expect(tail.stderr.filter(Boolean)).toEqual([
        `listenjs: connecting to ${url}…`,
        'listenjs: reconnecting… (endpoint_unreachable)',
        'listenjs: gave up: connection closed with code 1006 (endpoint_unreachable)',
      ])
    })
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
