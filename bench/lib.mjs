// Shared by the orchestrator, the servers and the load generators: the clock, the resource bodies,
// percentiles, and a small request/answer protocol over the child-process IPC channel.
import { execFileSync, fork } from 'node:child_process'
import http from 'node:http'
import os from 'node:os'
import { performance } from 'node:perf_hooks'
import { setTimeout, clearTimeout } from 'node:timers'

/**
 * Milliseconds since the epoch with sub-millisecond resolution. Every process on the host reads the
 * same clock this way, so a stamp taken in the server can be compared with a receipt time taken in a
 * load generator.
 */
export const now = () => performance.timeOrigin + performance.now()

/** The source addresses the load generators spread their sockets over (loopback only). */
export const SOURCE_ADDRESSES = ['2', '3', '4', '5', '6', '7', '8', '9'].map((n) => `127.0.0.${n}`)

/** The server listens here; nothing leaves the host. */
export const SERVER_HOST = '127.0.0.1'

/** A browser-like User-Agent, sent by the WebSocket clients and the pollers alike. */
export const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'

/**
 * The request a page's `fetch('/items')` makes in Chrome 126 (same origin), header for header, with a
 * short session cookie; conditional polling adds If-None-Match.
 */
export function pollRequest(port, gi, etag) {
  return (
    `GET /items HTTP/1.1\r\nHost: ${SERVER_HOST}:${port}\r\nConnection: keep-alive\r\n` +
    'sec-ch-ua: "Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"\r\n' +
    'sec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: "Linux"\r\n' +
    `User-Agent: ${USER_AGENT}\r\nAccept: application/json\r\n` +
    'Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n' +
    `Referer: http://${SERVER_HOST}:${port}/\r\n` +
    'Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n' +
    `Cookie: sid=${gi}\r\n` +
    (etag ? `If-None-Match: ${etag}\r\n` : '') +
    '\r\n'
  )
}

const ITEMS = [
  { id: 1, title: 'Dentist', at: '2025-05-01T09:00', room: 'A1', done: false },
  { id: 2, title: 'Team standup (weekly)', at: '2025-05-01T10:30', room: 'B2', done: true },
  { id: 3, title: 'Lunch with Ana at the harbour', at: '2025-05-01T12:15', room: 'C3', done: false },
]

/** A user's own appointments (a per-user view: the rows of a list filtered by owner). */
function ownItems(user) {
  return Array.from({ length: 6 }, (_, k) => ({
    id: k + 1,
    owner: user,
    title: `${['Dentist', 'Standup', 'Lunch', 'Review', 'Gym', 'Call'][k]} with the team of ${user}`,
    at: `2025-05-0${1 + (k % 5)}T${String(9 + k).padStart(2, '0')}:00`,
    room: `R${k}${user.length}`,
    notes: 'Bring the quarterly figures and the signed forms.',
    done: k % 2 === 0,
  }))
}

/**
 * The state of one path: `it` numbers the change (the orchestrator picks it, so a generator can tell
 * which change a frame belongs to) and `ts` is the moment the handler that made the change finished.
 * The serialized body is about 330 bytes for everyone's state; a user's own view (`user` given) is
 * about 1 KB, built anew for each request as a handler filtering by owner would.
 */
export function stateBody(path, it, ts, user) {
  return user === undefined ? { it, ts, path, items: ITEMS } : { it, ts, path, user, items: ownItems(user) }
}

/** The session id a socket or a poller sends in its cookie (`sid=<n>`): distinct per client. */
export function sidOf(cookie) {
  const match = /(?:^|;\s*)sid=(\d+)/.exec(cookie ?? '')
  return match ? match[1] : 'anonymous'
}

/** Percentile `p` (0–100) of an ascending array (nearest rank). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]
}

export function median(values) {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects after `ms` with a message naming what was waited for. */
export function withTimeout(promise, ms, what) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    }),
  ])
}

// ---------------------------------------------------------------------------------------------
// IPC: the parent calls a command in a child and waits for its answer, always with a timeout.

/** In a child: answers `{ id, cmd, ...args }` messages with the handler's result. Exits with its parent. */
export function serveCommands(handlers) {
  process.on('message', async (message) => {
    if (!message || typeof message.id !== 'number') return
    const handler = handlers[message.cmd]
    try {
      if (!handler) throw new Error(`unknown command ${message.cmd}`)
      const result = await handler(message.args ?? {})
      process.send({ id: message.id, ok: true, result })
    } catch (error) {
      process.send({ id: message.id, ok: false, error: String(error?.stack ?? error) })
    }
  })
  // No orphans: when the orchestrator goes away (even killed), the IPC channel closes.
  process.on('disconnect', () => process.exit(0))
}

const children = new Set()

/** Kills every child still running (SIGKILL). Safe to call more than once. */
export function killChildren() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  children.clear()
}

/**
 * Pins a child (every thread of it) to one CPU with `taskset`, where there are at least two CPUs and
 * taskset exists; returns whether it did.
 */
export function pin(child, cpu) {
  if (os.availableParallelism() < 2) return false
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(child.proc.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** A forked child process that answers commands. */
export class Child {
  constructor(file, args, { execArgv = [], name = file, env } = {}) {
    this.name = name
    this.pending = new Map()
    this.nextId = 1
    this.proc = fork(file, args, {
      execArgv,
      env: env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.add(this.proc)
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        children.delete(this.proc)
        for (const { reject, timer } of this.pending.values()) {
          clearTimeout(timer)
          reject(new Error(`${this.name} exited (${signal ?? code})`))
        }
        this.pending.clear()
        resolve()
      })
    })
    this.proc.on('message', (message) => {
      const waiter = this.pending.get(message?.id)
      if (!waiter) return
      this.pending.delete(message.id)
      clearTimeout(waiter.timer)
      if (message.ok) waiter.resolve(message.result)
      else waiter.reject(new Error(`${this.name}: ${message.error}`))
    })
  }

  /** Calls `cmd` in the child; rejects when it fails, when the child exits, or after `timeoutMs`. */
  call(cmd, args = {}, timeoutMs = 30_000) {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer })
      try {
        this.proc.send({ id, cmd, args })
      } catch (error) {
        this.pending.delete(id)
        clearTimeout(timer)
        reject(error)
      }
    })
  }

  /** Asks the child to exit, then kills it if it has not within `graceMs`. */
  async stop(graceMs = 3000) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    try {
      this.proc.disconnect()
    } catch {
      // already disconnected
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}

/** A real HTTP POST to the server (keep-alive, from 127.0.0.1), with `{"it": it}` as its body. */
export function post(server, url, it, timeoutMs = 15_000) {
  const body = JSON.stringify({ it })
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: SERVER_HOST,
        port: server.port,
        path: url,
        method: 'POST',
        agent: server.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: timeoutMs,
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
      },
    )
    req.on('timeout', () => req.destroy(new Error(`POST ${url} timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** Sends `cmd` to every generator; resolves with their answers. */
export const all = (gens, cmd, args, timeoutMs) => Promise.all(gens.map((g) => g.call(cmd, args, timeoutMs)))

/** Resolves when `server` holds `expected` subscriptions (polled); throws after `timeoutMs`. */
export async function waitSubscriptions(server, expected, timeoutMs = 120_000) {
  const deadline = now() + timeoutMs
  for (;;) {
    const { subscriptions } = await server.call('stats')
    if (subscriptions === expected) return
    if (now() > deadline) {
      throw new Error(`${server.name}: ${subscriptions} subscriptions, expected ${expected}`)
    }
    await sleep(50)
  }
}
