/**
 * The live app of test/fixtures/live-server.mjs, run as a child process so that tests in jsdom (which
 * lacks Node's timers and fetch) talk to a real server over real sockets, and plain HTTP helpers
 * built on node:http (available in every Jest environment).
 */
import { fork, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import path from 'node:path'
import { until } from './wait'

/** A running live app. */
export interface LiveServer {
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly base: string
  /** `ws://127.0.0.1:<port>/listen` */
  readonly wsUrl: string
  /** Sends one request; resolves with the status and the parsed JSON body (undefined when empty). */
  request(method: string, urlPath: string, body?: unknown): Promise<{ status: number; json: unknown }>
  /** The hub's counters, and `connects`: sockets opened since the server started. */
  stats(): Promise<{
    connections: number
    subscriptions: number
    connects: number
    patches: { computed: number; declined: number }
  }>
  stop(): Promise<void>
}

/** Starts the live app on a free port. */
export async function startLiveServer(): Promise<LiveServer> {
  const child: ChildProcess = fork(path.join(__dirname, '..', 'fixtures', 'live-server.mjs'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message) => resolve((message as { port: number }).port))
    child.once('exit', (code) => reject(new Error(`live server exited with ${code}`)))
  })
  const base = `http://127.0.0.1:${port}`
  const request: LiveServer['request'] = (method, urlPath, body) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body)
      const req = http.request(
        `${base}${urlPath}`,
        { method, headers: payload ? { 'content-type': 'application/json' } : {} },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as unknown) : undefined })
          })
        },
      )
      req.on('error', reject)
      req.end(payload)
    })
  return {
    port,
    base,
    wsUrl: `ws://127.0.0.1:${port}/listen`,
    request,
    stats: async () => (await request('GET', '/_stats')).json as Awaited<ReturnType<LiveServer['stats']>>,
    async stop() {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.disconnect()
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** {@link until} with the longer wait these child-process tests need. */
export const eventually = (predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> =>
  until(predicate, timeoutMs)
