/**
 * Real Redis for tests: the shared one at REDIS_URL (default 127.0.0.1:6379), and test-owned
 * `redis-server` processes for outage tests (the shared one is never stopped). Without Redis, tests
 * skip with a loud message; with CI=true they fail instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import net from 'node:net'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Whether the shared Redis answers PING (checked once per test file). */
export function redisAvailable(): boolean {
  const url = new URL(REDIS_URL)
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      `const s=require('net').connect(${Number(url.port || 6379)},'${url.hostname}',()=>s.write('PING\\r\\n'));` +
        `s.on('data',d=>process.exit(String(d).startsWith('+PONG')?0:1));s.on('error',()=>process.exit(1));` +
        `setTimeout(()=>process.exit(1),1000)`,
    ],
    { timeout: 3000 },
  )
  const up = probe.status === 0
  if (!up) {
    const message = `Redis is not reachable at ${REDIS_URL}`
    if (process.env.CI === 'true') throw new Error(`${message}; with CI=true Redis tests must run, not skip`)
    process.stderr.write(`\n!!! SKIPPING REDIS TESTS: ${message}. Start redis-server to run them. !!!\n\n`)
  }
  return up
}

/** `describe` when Redis is up, a loud skip otherwise (a failure with CI=true). */
export const describeWithRedis: jest.Describe = (redisAvailable() ? describe : describe.skip) as jest.Describe

/** A channel prefix of its own for one test. */
export const uniquePrefix = (): string => `test-${randomUUID()}`

/** A free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Whether a Redis on 127.0.0.1:`port` answers PING. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('PING\r\n'))
    const done = (up: boolean): void => {
      socket.destroy()
      resolve(up)
    }
    socket.once('data', (data) => done(String(data).startsWith('+PONG')))
    socket.once('error', () => done(false))
    socket.setTimeout(500, () => done(false))
  })
}

/** A redis-server owned by one test, on its own port, that can be killed and restarted. */
export class OwnedRedis {
  private child: ChildProcess | undefined
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    this.child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    )
    const deadline = Date.now() + 5000
    while (!(await ping(this.port))) {
      if (Date.now() > deadline) throw new Error('redis-server did not start')
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** Kills the server at once (no shutdown handshake), as a crash would. */
  async kill(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    this.child = undefined
  }
}
