/**
 * PROTOCOL.md, driven from the outside: a real hub (`createHub` on a plain `http` server, real sockets
 * on 127.0.0.1) spoken to with raw `ws` frames only. No listenjs client code and no constant of
 * `src/core/protocol.ts` is used: every string on the wire is written here as PROTOCOL.md spells it,
 * so that the document and the server cannot drift apart.
 *
 * The first test reads PROTOCOL.md's tables (client messages, server messages, error codes, close
 * codes, and the HTTP statuses of the upgrade) and checks that they list exactly what this file
 * exercises; the last one checks that every one of them was seen on the wire during the run.
 *
 * Time: where a rule is about time (heartbeat, first-message deadline, rate limit, the slow-consumer
 * grace), the hub runs on Jest's fake clock and the test moves it; everything else waits for events
 * (a frame, a close, a pong), never for a delay. A "marker" (a `subscribe` to an invalid path, which
 * the hub answers at once with `bad_path`) proves that the hub has handled every earlier message of a
 * socket, since a socket's messages are handled in order.
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import net, { type AddressInfo, type Socket } from 'node:net'
import path from 'node:path'
import WebSocket from 'ws'
import type { Hub } from '../src/core/hub'
import type { HubOptions, Logger } from '../src/core/options'
import { createHub } from '../src/node'

/** The subprotocols, as PROTOCOL.md names them. */
const V1 = 'listenjs.v1'
const V11 = 'listenjs.v1.1'

/** PROTOCOL.md's checksum, written from its text: FNV-1a 32 over the UTF-8 of RFC 8785 JSON. */
function jcs(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jcs).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}
function fnv1a(value: unknown): number {
  let hash = 2166136261
  for (const byte of new TextEncoder().encode(jcs(value))) hash = Math.imul(hash ^ byte, 16777619) >>> 0
  return hash
}

// ---------------------------------------------------------------------------------------------
// What PROTOCOL.md lists, and what this file exercises

const EXERCISED = {
  client: ['subscribe', 'unsubscribe', 'auth', 'pong'],
  server: ['welcome', 'ping', 'reauth', 'subscribed', 'data', 'patch', 'gone', 'error'],
  errors: ['unauthorized', 'not_found', 'bad_path', 'limit', 'failed', 'bad_message'],
  closes: [1000, 1001, 1002, 1006, 1007, 1008, 1009, 1011, 1012, 4400, 4403, 4406, 4407, 4408, 4429, 4509],
  upgrade: [400, 403, 404, 429],
}

/** What was seen on the wire during this run: `client:<type>`, `server:<type>`, `error:<code>`, … */
const seen = new Set<string>()

const DOC = readFileSync(path.join(__dirname, '..', 'PROTOCOL.md'), 'utf8')

/** The text under `heading`, up to the next heading of any level. */
function section(heading: string): string {
  const lines = DOC.split('\n')
  const start = lines.findIndex((line) => line.trim() === heading)
  if (start === -1) throw new Error(`PROTOCOL.md has no "${heading}"`)
  const end = lines.findIndex((line, i) => i > start && /^#+ /.test(line))
  return lines.slice(start + 1, end === -1 ? undefined : end).join('\n')
}

/** The first cell of every row of the tables of `text` (header and separator rows left out). */
function firstCells(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|\s*-/.test(line))
    .map((line) => (line.split('|')[1] ?? '').trim())
    .filter((cell) => cell.startsWith('`') || /^\d+$/.test(cell))
    .map((cell) => cell.replace(/`/g, ''))
}

// ---------------------------------------------------------------------------------------------
// A raw client

type Frame = { type: string; [key: string]: unknown }

/** Every raw socket a test opened; terminated after each test. */
const sockets: Raw[] = []

/**
 * One raw WebSocket: records every frame, pong frame and the close; `next()` waits for the next
 * frame (and fails if the socket closes first). No timers: a frame that never comes fails the test
 * by Jest's own timeout.
 */
class Raw {
  readonly frames: Frame[] = []
  private read = 0
  pongFrames = 0
  closedWith: { code: number; reason: string } | undefined
  readonly closed: Promise<{ code: number; reason: string }>
  private waiters: Array<() => void> = []

  constructor(readonly ws: WebSocket) {
    sockets.push(this)
    ws.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false)
      const frame = JSON.parse(String(data)) as Frame
      seen.add(`server:${frame.type}`)
      if (frame.type === 'error') seen.add(`error:${String(frame.code)}`)
      this.frames.push(frame)
      this.changed()
    })
    ws.on('pong', () => {
      this.pongFrames++
      this.changed()
    })
    ws.on('error', () => {})
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        this.closedWith = { code, reason: String(reason) }
        this.changed()
        resolve(this.closedWith)
      }),
    )
  }

  /** Opens a socket; resolves once it is open (rejects with the HTTP status of a refused upgrade). */
  static open(
    url: string,
    options: { protocols?: string[]; headers?: Record<string, string> } = {},
  ): Promise<Raw> {
    const raw = new Raw(new WebSocket(url, options.protocols ?? [V1], { headers: options.headers }))
    return new Promise((resolve, reject) => {
      raw.ws.once('open', () => resolve(raw))
      raw.ws.once('error', reject)
      raw.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
    })
  }

  /** Opens a socket and reads its `welcome`. */
  static async welcomed(url: string, headers?: Record<string, string>): Promise<Raw & { id: string }> {
    const raw = await Raw.open(url, { headers })
    const welcome = await raw.next()
    expect(welcome).toMatchObject({ type: 'welcome' })
    return Object.assign(raw, { id: welcome.id as string })
  }

  private changed(): void {
    for (const wake of this.waiters.splice(0)) wake()
  }

  private async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await new Promise<void>((resolve) => this.waiters.push(resolve))
  }

  /** Sends a message (an object as JSON; a string as it is). */
  send(message: object | string): void {
    if (typeof message === 'object') {
      seen.add(`client:${String((message as { type?: unknown }).type)}`)
      this.ws.send(JSON.stringify(message))
    } else this.ws.send(message)
  }

  /** The next frame. */
  async next(): Promise<Frame> {
    await this.until(() => this.frames.length > this.read || this.closedWith !== undefined)
    const frame = this.frames[this.read]
    if (frame === undefined) throw new Error(`closed with ${this.closedWith?.code} before a frame came`)
    this.read++
    return frame
  }

  /** The next `count` frames, by path (answers to different paths come in any order). */
  async byPath(count: number): Promise<Map<string, Frame>> {
    const out = new Map<string, Frame>()
    for (let i = 0; i < count; i++) {
      const frame = await this.next()
      out.set(frame.path as string, frame)
    }
    return out
  }

  /** Sends a marker and waits for its answer: every earlier message of this socket was handled. */
  async marker(): Promise<void> {
    this.send({ type: 'subscribe', path: 'marker' })
    expect(await this.next()).toEqual({
      type: 'error',
      code: 'bad_path',
      message: expect.any(String),
      path: 'marker',
    })
  }

  /** Sends a WebSocket ping frame and waits for its pong frame (or the close). */
  async pingFrame(): Promise<boolean> {
    const before = this.pongFrames
    this.ws.ping()
    await this.until(() => this.pongFrames > before || this.closedWith !== undefined)
    return this.pongFrames > before
  }

  /** Waits for the close and checks its code. */
  async closesWith(code: number, reason?: string): Promise<void> {
    const closed = await this.closed
    expect(closed.code).toBe(code)
    if (reason !== undefined) expect(closed.reason).toBe(reason)
    seen.add(`close:${code}`)
  }
}

// ---------------------------------------------------------------------------------------------
// A server

/** What a GET answers. */
interface Answer {
  status?: number
  json?: unknown
  text?: string
  headers?: Record<string, string>
}

interface Server {
  hub: Hub
  wsUrl: string
  port: number
  /** GET answers by path (with query); a missing one is 404. */
  answers: Map<string, Answer | ((req: http.IncomingMessage) => Answer)>
  /** Paths whose next GET waits until `release(path)`. */
  hold: Set<string>
  held: Map<string, () => void>
  /** Sends a write (204, so a change of `path`). */
  write(method: string, path: string, headers?: Record<string, string>): Promise<number>
  close(): Promise<void>
}

const servers: Server[] = []

async function start(options: HubOptions = {}): Promise<Server> {
  const hub = createHub(options)
  const answers: Server['answers'] = new Map()
  const hold = new Set<string>()
  const held = new Map<string, () => void>()
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
    hub.track(req, res, url, () => undefined)
    if (req.method !== 'GET') {
      res.statusCode = 204
      res.end()
      return
    }
    // The answer is the state when the request came; a held one is written when released.
    const found = answers.get(url)
    const answer = (typeof found === 'function' ? found(req) : found) ?? { status: 404 }
    const reply = (): void => {
      res.statusCode = answer.status ?? 200
      for (const [name, value] of Object.entries(answer.headers ?? {})) res.setHeader(name, value)
      if (answer.text !== undefined) {
        res.setHeader('content-type', 'text/plain')
        res.end(answer.text)
      } else if (answer.json !== undefined) {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify(answer.json))
      } else res.end()
    }
    if (hold.delete(url)) held.set(url, reply)
    else reply()
  })
  hub.attach(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const started: Server = {
    hub,
    port,
    wsUrl: `ws://127.0.0.1:${port}/listen`,
    answers,
    hold,
    held,
    write: (method, target, headers = {}) =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method, path: target, headers }, (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        })
        req.on('error', reject)
        req.end()
      }),
    close: async () => {
      await hub.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
  servers.push(started)
  return started
}

/** Waits, one event-loop turn at a time (no timers: it works on the fake clock too), for `predicate`. */
async function poll(predicate: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    if (predicate()) return
    await new Promise((resolve) => setImmediate(resolve))
  }
  throw new Error(`never happened: ${what}`)
}

/** The fake clock, for rules about time. Set before the hub starts (its timers are made then). */
function fakeClock(): void {
  jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] })
}

afterEach(async () => {
  jest.useRealTimers()
  for (const raw of sockets.splice(0)) raw.ws.terminate()
  for (const server of servers.splice(0)) await server.close()
})

// ---------------------------------------------------------------------------------------------

describe('PROTOCOL.md', () => {
  it('lists exactly the messages, error codes, close codes and upgrade statuses this file exercises', () => {
    const sorted = <T>(list: readonly T[]): T[] => [...list].sort()
    expect(sorted(firstCells(section('## Client → server')))).toEqual(sorted(EXERCISED.client))
    expect(sorted(firstCells(section('## Server → client')))).toEqual(sorted(EXERCISED.server))
    expect(sorted(firstCells(section('### Error codes')))).toEqual(sorted(EXERCISED.errors))
    expect(sorted(firstCells(section('## Close codes')).map(Number))).toEqual(sorted(EXERCISED.closes))
    const statuses = [...section('## Connection').matchAll(/\*\*HTTP (\d{3})\*\*/g)].map((m) => Number(m[1]))
    expect(sorted([...new Set(statuses)])).toEqual(sorted(EXERCISED.upgrade))
  })
})

describe('connection', () => {
  it('sends welcome first, with an id and the heartbeat; a client need not wait for it', async () => {
    const server = await start({ heartbeat: { intervalMs: 1234, timeoutMs: 567 } })
    server.answers.set('/items', { json: [1] })
    const raw = await Raw.open(server.wsUrl)
    expect(raw.ws.protocol).toBe(V1)
    // Sent as soon as the socket is open, whether or not `welcome` has been read.
    raw.send({ type: 'subscribe', path: '/items' })
    expect(await raw.next()).toEqual({
      type: 'welcome',
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      heartbeat: { intervalMs: 1234, timeoutMs: 567 },
    })
    expect(await raw.next()).toMatchObject({ type: 'data', path: '/items', snapshot: true, json: [1] })
    // A query string on the endpoint is ignored.
    const queried = await Raw.open(`${server.wsUrl}?v=1`)
    expect(await queried.next()).toMatchObject({ type: 'welcome' })
  })

  it('selects listenjs.v1 from a list of subprotocols, and closes a socket that offers none with 4406', async () => {
    const server = await start()
    // A newer client offers its version first and v1 after it: a v1 server selects v1.
    const newer = await Raw.open(server.wsUrl, { protocols: ['listenjs.v2', V1] })
    expect(newer.ws.protocol).toBe(V1)
    expect(await newer.next()).toMatchObject({ type: 'welcome' })
    // Only other subprotocols: the server selects none, so the handshake fails on the client's side.
    await expect(Raw.open(server.wsUrl, { protocols: ['listenjs.v2'] })).rejects.toThrow(
      'Server sent no subprotocol',
    )
    // None at all: accepted, then closed with 4406 before any message.
    const none = await Raw.open(server.wsUrl, { protocols: [] })
    await none.closesWith(4406)
    expect(none.frames).toEqual([])
    await poll(() => server.hub.stats().connections === 1, 'only the v1 socket counted')
  })

  it('listenjs.v1.1: a patch from the state the socket holds, with the sum PROTOCOL.md defines; never to v1', async () => {
    // The example of PROTOCOL.md, "Patches".
    expect(fnv1a(JSON.parse('{"b":[1,"é"],"a":null}'))).toBe(3817508276)
    expect(DOC).toContain('its `sum` is `3817508276`')
    const server = await start()
    const list = (edited: string) =>
      Array.from({ length: 30 }, (_, i) => ({ id: i, title: i === 4 ? edited : `appointment ${i}`, at: 'é' }))
    server.answers.set('/items', { json: list('before') })
    const v11 = await Raw.open(server.wsUrl, { protocols: [V11, V1] })
    const v1 = await Raw.open(server.wsUrl, { protocols: [V11 + '.x', V1] })
    expect(v11.ws.protocol).toBe(V11)
    expect(v1.ws.protocol).toBe(V1)
    for (const raw of [v11, v1]) {
      expect(await raw.next()).toMatchObject({ type: 'welcome' })
      raw.send({ type: 'subscribe', path: '/items' })
    }
    const held = await v11.next()
    expect(await v1.next()).toMatchObject({ type: 'data', snapshot: true })
    server.answers.set('/items', { json: list('after') })
    await server.write('PUT', '/items/4')
    const patch = await v11.next()
    const data = await v1.next()
    expect(data).toMatchObject({ type: 'data', path: '/items', json: list('after') })
    expect(patch).toEqual({
      type: 'patch',
      path: '/items',
      version: data.version,
      from: held.version,
      sum: fnv1a(list('after')),
      ops: [{ op: 'replace', path: '/4/title', value: 'after' }],
    })
    // Unsubscribing and subscribing without a version (what a client does when a patch does not
    // verify) answers the whole state.
    v11.send({ type: 'unsubscribe', path: '/items' })
    v11.send({ type: 'subscribe', path: '/items' })
    expect(await v11.next()).toMatchObject({ type: 'data', snapshot: true, json: list('after') })
  })

  it('refuses upgrades with HTTP 400 (no Host), 403 (foreign Origin), 404 (other path) and 429 (per address)', async () => {
    const server = await start({ limits: { connectionsPerAddress: 1 } })
    const status = async (url: string, headers?: Record<string, string>): Promise<string> => {
      try {
        await Raw.open(url, { headers })
        return 'open'
      } catch (error) {
        return String((error as Error).message)
      }
    }
    // No Host: written by hand, since every WebSocket library sends one.
    const noHost = await new Promise<string>((resolve, reject) => {
      const tcp = net.connect(server.port, '127.0.0.1', () =>
        tcp.write(
          'GET /listen HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
            `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ${V1}\r\n\r\n`,
        ),
      )
      let text = ''
      tcp.on('data', (chunk) => (text += String(chunk)))
      tcp.on('close', () => resolve(text.split('\r\n')[0] ?? ''))
      tcp.on('error', reject)
    })
    expect(noHost).toBe('HTTP/1.1 400 Bad Request')
    seen.add('http:400')
    expect(await status(server.wsUrl, { origin: 'https://evil.example' })).toBe('HTTP 403')
    seen.add('http:403')
    expect(await status(server.wsUrl.replace('/listen', '/elsewhere'))).toBe('HTTP 404')
    seen.add('http:404')
    const first = await Raw.welcomed(server.wsUrl, { origin: `http://127.0.0.1:${server.port}` })
    expect(await status(server.wsUrl)).toBe('HTTP 429')
    seen.add('http:429')
    expect(first.ws.readyState).toBe(WebSocket.OPEN)
  })
})

describe('client messages', () => {
  it('subscribe: data with snapshot: true, as json, text, or json: null; versions are 27 base64url characters', async () => {
    const server = await start()
    server.answers.set('/items', { json: [{ id: '1' }] })
    server.answers.set('/text', { text: 'hello' })
    server.answers.set('/empty', { status: 204 })
    const raw = await Raw.welcomed(server.wsUrl)
    for (const path of ['/items', '/text', '/empty']) raw.send({ type: 'subscribe', path })
    const frames = await raw.byPath(3)
    const version = expect.stringMatching(/^[A-Za-z0-9_-]{27}$/)
    expect(frames.get('/items')).toEqual({
      type: 'data',
      path: '/items',
      version,
      snapshot: true,
      json: [{ id: '1' }],
    })
    expect(frames.get('/text')).toEqual({
      type: 'data',
      path: '/text',
      version,
      snapshot: true,
      text: 'hello',
    })
    expect(frames.get('/empty')).toEqual({
      type: 'data',
      path: '/empty',
      version,
      snapshot: true,
      json: null,
    })
  })

  it('subscribe with the current version: subscribed; with another: data; a path held already: nothing', async () => {
    const server = await start()
    server.answers.set('/items', { json: [1] })
    const first = await Raw.welcomed(server.wsUrl)
    first.send({ type: 'subscribe', path: '/items' })
    const { version } = await first.next()
    const again = await Raw.welcomed(server.wsUrl)
    again.send({ type: 'subscribe', path: '/items', version })
    expect(await again.next()).toEqual({ type: 'subscribed', path: '/items', version })
    // The same path again on the same socket: no answer at all (the marker's answer comes next).
    again.send({ type: 'subscribe', path: '/items', version })
    await again.marker()
    const stale = await Raw.welcomed(server.wsUrl)
    stale.send({ type: 'subscribe', path: '/items', version: 'an-older-version' })
    expect(await stale.next()).toMatchObject({ type: 'data', path: '/items', version, snapshot: true })
    expect(server.hub.stats().subscriptions).toBe(3)
  })

  it('versions: a strong ETag is the version as it is, quotes included; a weak one is not used', async () => {
    const server = await start()
    server.answers.set('/strong', { json: 1, headers: { etag: '"v1"' } })
    server.answers.set('/weak', { json: 1, headers: { etag: 'W/"w1"' } })
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'subscribe', path: '/strong' })
    raw.send({ type: 'subscribe', path: '/weak' })
    const frames = await raw.byPath(2)
    expect(frames.get('/strong')?.version).toBe('"v1"')
    expect(frames.get('/weak')?.version).toMatch(/^[A-Za-z0-9_-]{27}$/)
    // The version is sent back exactly as received: with its quotes it matches, without them it does not.
    const back = await Raw.welcomed(server.wsUrl)
    back.send({ type: 'subscribe', path: '/strong', version: '"v1"' })
    expect(await back.next()).toEqual({ type: 'subscribed', path: '/strong', version: '"v1"' })
    const unquoted = await Raw.welcomed(server.wsUrl)
    unquoted.send({ type: 'subscribe', path: '/strong', version: 'v1' })
    expect(await unquoted.next()).toMatchObject({ type: 'data', version: '"v1"', snapshot: true })
  })

  it('unsubscribe: nothing more is sent about the path; an unknown path is ignored', async () => {
    const server = await start()
    let n = 0
    server.answers.set('/items', () => ({ json: n }))
    const leaving = await Raw.welcomed(server.wsUrl)
    const witness = await Raw.welcomed(server.wsUrl)
    for (const raw of [leaving, witness]) {
      raw.send({ type: 'subscribe', path: '/items' })
      expect(await raw.next()).toMatchObject({ type: 'data', json: 0 })
    }
    leaving.send({ type: 'unsubscribe', path: '/items' })
    leaving.send({ type: 'unsubscribe', path: '/never-subscribed' })
    await leaving.marker()
    expect(server.hub.stats().subscriptions).toBe(1)
    n = 1
    expect(await server.write('POST', '/items')).toBe(204)
    // Both sockets are in one group: the push the witness gets is the one the other would have got.
    expect(await witness.next()).toMatchObject({ type: 'data', path: '/items', json: 1 })
    await leaving.marker()
    expect(leaving.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('auth: sent first, its token is forwarded to the replays; sent again, every path is checked again', async () => {
    const server = await start()
    server.answers.set('/private', (req) => {
      const auth = req.headers.authorization
      if (auth === 'Bearer good') return { json: { auth } }
      return { status: auth === undefined ? 401 : 403 }
    })
    server.answers.set('/items', { json: [1] })
    const raw = await Raw.welcomed(server.wsUrl)
    // Messages are handled in the order sent: the subscribe right after auth uses the token.
    raw.send({ type: 'auth', token: 'good' })
    raw.send({ type: 'subscribe', path: '/private' })
    raw.send({ type: 'subscribe', path: '/items' })
    const frames = await raw.byPath(2)
    expect(frames.get('/private')).toMatchObject({ type: 'data', json: { auth: 'Bearer good' } })
    const held = frames.get('/items')?.version
    // A new token on the open socket: each path answers subscribed (unchanged), data or error.
    raw.send({ type: 'auth', token: 'bad' })
    const rechecked = await raw.byPath(2)
    expect(rechecked.get('/private')).toEqual({
      type: 'error',
      code: 'unauthorized',
      message: expect.any(String),
      path: '/private',
      status: 403,
    })
    expect(rechecked.get('/items')).toEqual({ type: 'subscribed', path: '/items', version: held })
    expect(server.hub.stats().subscriptions).toBe(1)
  })

  it('reauth: sent before the credentials expire; at expiry, without a new auth, every path is checked again', async () => {
    fakeClock()
    const expiresAt = Date.now() + 10_000
    const server = await start({
      credentialsExpireAt: (request) => (request.headers.authorization ? expiresAt : undefined),
    })
    server.answers.set('/private', () => (Date.now() < expiresAt ? { json: 1 } : { status: 401 }))
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'auth', token: 'short' })
    raw.send({ type: 'subscribe', path: '/private' })
    expect(await raw.next()).toMatchObject({ type: 'data', path: '/private' })
    // Half the lifetime left is shorter than the lead (60 s): reauth comes after 5 s.
    jest.advanceTimersByTime(5000)
    expect(await raw.next()).toEqual({ type: 'reauth' })
    jest.advanceTimersByTime(5000)
    expect(await raw.next()).toEqual({
      type: 'error',
      code: 'unauthorized',
      message: expect.any(String),
      path: '/private',
      status: 401,
    })
  })

  it('auth with a token outside the RFC 6750 characters is a bad message', async () => {
    const server = await start()
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'auth', token: 'two words' })
    expect(await raw.next()).toEqual({ type: 'error', code: 'bad_message', message: expect.any(String) })
    await raw.closesWith(4400)
  })

  it('ignores unknown fields in client messages', async () => {
    const server = await start()
    server.answers.set('/items', { json: [1] })
    server.answers.set('/private', (req) => ({ json: req.headers.authorization ?? null }))
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'pong', since: 1 })
    raw.send({ type: 'auth', token: 't0k3n', scheme: 'Basic' })
    raw.send('{"type":"subscribe","path":"/private","priority":"high","__proto__":{"path":"/x"}}')
    raw.send({ type: 'subscribe', path: '/items', future: { nested: [1, 2] } })
    const frames = await raw.byPath(2)
    expect(frames.get('/private')).toMatchObject({ type: 'data', json: 'Bearer t0k3n' })
    expect(frames.get('/items')).toMatchObject({ type: 'data', json: [1] })
    raw.send({ type: 'unsubscribe', path: '/items', reason: 'done' })
    await raw.marker()
    expect(server.hub.stats().subscriptions).toBe(1)
  })

  it('closes with 4400 after an error without path for a message it does not understand', async () => {
    const server = await start()
    for (const bad of [
      'not json',
      '[]',
      '{}',
      JSON.stringify({ type: 'subscribe' }),
      JSON.stringify({ type: 'subscribe', path: '/a', version: 5 }),
      JSON.stringify({ type: 'resume', path: '/a' }),
    ]) {
      const raw = await Raw.welcomed(server.wsUrl)
      raw.send(bad)
      expect(await raw.next()).toEqual({ type: 'error', code: 'bad_message', message: expect.any(String) })
      await raw.closesWith(4400)
    }
    const binary = await Raw.welcomed(server.wsUrl)
    binary.ws.send(Buffer.from('{"type":"pong"}'), { binary: true })
    expect(await binary.next()).toMatchObject({ type: 'error', code: 'bad_message' })
    await binary.closesWith(4400)
  })
})

describe('server messages', () => {
  it('data carries origin to the writer only, when its write was tagged with X-Listenjs-Client', async () => {
    const server = await start()
    let n = 0
    server.answers.set('/items', () => ({ json: n }))
    const writer = await Raw.welcomed(server.wsUrl)
    const other = await Raw.welcomed(server.wsUrl)
    for (const raw of [writer, other]) {
      raw.send({ type: 'subscribe', path: '/items' })
      await raw.next()
    }
    n = 1
    await server.write('POST', '/items', { 'x-listenjs-client': writer.id })
    const mine = await writer.next()
    const theirs = await other.next()
    expect(mine).toEqual({
      type: 'data',
      path: '/items',
      version: expect.any(String),
      origin: writer.id,
      json: 1,
    })
    expect(theirs).toEqual({ type: 'data', path: '/items', version: mine.version, json: 1 })
  })

  it('gone after a change answered 404 or 410, the subscription staying; data when it is back', async () => {
    const server = await start()
    let answer: Answer = { json: 'here' }
    server.answers.set('/thing', () => answer)
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'subscribe', path: '/thing' })
    expect(await raw.next()).toMatchObject({ type: 'data', json: 'here' })
    answer = { status: 410 }
    await server.write('DELETE', '/thing')
    expect(await raw.next()).toEqual({ type: 'gone', path: '/thing', status: 410 })
    // Gone at most once until data returns: another change that still answers 410 sends nothing
    // (the marker's answer would come after it otherwise).
    const replays = server.hub.stats().replays
    await server.write('DELETE', '/thing')
    await poll(() => server.hub.stats().replays > replays, 'the second replay')
    await raw.marker()
    answer = { json: 'back' }
    await server.write('PUT', '/thing')
    expect(await raw.next()).toEqual({
      type: 'data',
      path: '/thing',
      version: expect.any(String),
      json: 'back',
    })
  })

  it('error codes with path: unauthorized, not_found, bad_path, failed; the socket stays', async () => {
    const server = await start({ paths: ['/api'] })
    server.answers.set('/api/private', { status: 401 })
    server.answers.set('/api/forbidden', { status: 403 })
    server.answers.set('/api/gone', { status: 410 })
    server.answers.set('/api/teapot', { status: 418 })
    server.answers.set('/api/moved', { status: 301, headers: { location: '/api/elsewhere' } })
    server.answers.set('/api/broken', { status: 500 })
    const raw = await Raw.welcomed(server.wsUrl)
    const cases: Array<[string, string, number | undefined]> = [
      ['/api/private', 'unauthorized', 401],
      ['/api/forbidden', 'unauthorized', 403],
      ['/other', 'unauthorized', 403], // the `paths` option, before any replay
      ['/api/missing', 'not_found', 404],
      ['/api/gone', 'not_found', 410],
      ['/api/teapot', 'failed', 418],
      ['/api/moved', 'failed', 301],
      ['/api/broken', 'failed', 500],
      ['/api/a/../b', 'bad_path', undefined],
      ['/api//b', 'bad_path', undefined],
    ]
    for (const [path] of cases) raw.send({ type: 'subscribe', path })
    const frames = await raw.byPath(cases.length)
    for (const [path, code, status] of cases) {
      expect(frames.get(path)).toEqual({
        type: 'error',
        code,
        message: expect.any(String),
        path,
        ...(status === undefined ? {} : { status }),
      })
    }
    expect(frames.get('/other')?.message).toBe('path not allowed')
    expect(server.hub.stats().subscriptions).toBe(0)
    await raw.marker()
    expect(raw.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('error limit past limits.subscriptionsPerSocket, for that path only', async () => {
    const server = await start({ limits: { subscriptionsPerSocket: 2 } })
    for (const path of ['/a', '/b', '/c']) server.answers.set(path, { json: path })
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'subscribe', path: '/a' })
    raw.send({ type: 'subscribe', path: '/b' })
    await raw.byPath(2)
    raw.send({ type: 'subscribe', path: '/c' })
    expect(await raw.next()).toEqual({
      type: 'error',
      code: 'limit',
      message: expect.any(String),
      path: '/c',
    })
    raw.send({ type: 'unsubscribe', path: '/a' })
    raw.send({ type: 'subscribe', path: '/c' })
    expect(await raw.next()).toMatchObject({ type: 'data', path: '/c', snapshot: true })
  })

  it('error failed on a push whose answer will not become state: the subscription ends', async () => {
    const server = await start()
    let answer: Answer = { json: 1 }
    server.answers.set('/flaky', () => answer)
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'subscribe', path: '/flaky' })
    await raw.next()
    answer = { status: 400 }
    await server.write('PATCH', '/flaky')
    expect(await raw.next()).toEqual({
      type: 'error',
      code: 'failed',
      message: expect.any(String),
      path: '/flaky',
      status: 400,
    })
    expect(server.hub.stats().subscriptions).toBe(0)
  })
})

describe('ordering', () => {
  it('answers to different paths come in any order; per path, the answer comes first', async () => {
    const server = await start()
    server.answers.set('/slow', { json: 'slow' })
    server.answers.set('/fast', { json: 'fast' })
    server.hold.add('/slow')
    const raw = await Raw.welcomed(server.wsUrl)
    raw.send({ type: 'subscribe', path: '/slow' })
    raw.send({ type: 'subscribe', path: '/fast' })
    // The later subscription is answered first: its replay finished first.
    expect(await raw.next()).toMatchObject({ type: 'data', path: '/fast', snapshot: true })
    await poll(() => server.held.has('/slow'), 'the slow replay to start')
    // A change of the path while its snapshot replay runs: the answer still comes first, then the state
    // after the change.
    server.answers.set('/slow', { json: 'changed' })
    await server.write('POST', '/slow')
    server.held.get('/slow')?.()
    expect(await raw.next()).toMatchObject({ type: 'data', path: '/slow', snapshot: true })
    const after = await raw.next()
    expect(after).toMatchObject({ type: 'data', path: '/slow', json: 'changed' })
    expect(after.snapshot).toBeUndefined()
  })
})

describe('close codes', () => {
  it('1000 and 4408 are the client’s own: the hub takes them as any close', async () => {
    const server = await start()
    const codes: number[] = []
    server.hub.on('disconnect', ({ code }) => codes.push(code))
    for (const code of [1000, 4408]) {
      const raw = await Raw.welcomed(server.wsUrl)
      raw.ws.close(code)
      await raw.closesWith(code)
      await poll(() => codes.includes(code), `the hub sees ${code}`)
    }
    expect(server.hub.stats().connections).toBe(0)
  })

  it('1001 on hub.close(), 1012 on hub.close({ restart: true })', async () => {
    for (const [restart, code, reason] of [
      [false, 1001, 'server shutdown'],
      [true, 1012, 'server restart'],
    ] as const) {
      const server = await start()
      const raw = await Raw.welcomed(server.wsUrl)
      void server.hub.close({ restart })
      await raw.closesWith(code, reason)
    }
  })

  it('1002, 1007, 1008 and 1009 for broken frames (sent by ws)', async () => {
    const server = await start({ limits: { messageBytes: 1024 } })
    const unmasked = await Raw.welcomed(server.wsUrl)
    ;(unmasked.ws as unknown as { _socket: Socket })._socket.write(Buffer.from([0x81, 0x00]))
    await unmasked.closesWith(1002)
    const notUtf8 = await Raw.welcomed(server.wsUrl)
    notUtf8.ws.send(Buffer.from([0x22, 0xc0, 0xae, 0x22]), { binary: false })
    await notUtf8.closesWith(1007)
    const fragments = await Raw.welcomed(server.wsUrl)
    fragments.ws.send('{"type":', { binary: false, fin: false })
    for (let i = 0; i < 16_384; i++) fragments.ws.send('', { binary: false, fin: false })
    await fragments.closesWith(1008)
    const large = await Raw.welcomed(server.wsUrl)
    large.send({ type: 'subscribe', path: `/${'a'.repeat(1000)}` })
    await large.closesWith(1009)
  })

  it('1011 when the hub fails handling a message; the error is logged, never sent', async () => {
    let thrown = false
    const logged: unknown[] = []
    const logger: Logger = {
      debug() {},
      info() {},
      warn() {},
      error(object: unknown, message?: string) {
        logged.push(message ?? object)
        if (!thrown && message?.includes('paths threw')) {
          thrown = true
          throw new Error('the logger broke')
        }
      },
    }
    const server = await start({
      logger,
      paths: (path) => {
        if (path === '/explode') throw new Error('secret detail')
        return true
      },
    })
    server.answers.set('/fine', { json: 1 })
    const broken = await Raw.welcomed(server.wsUrl)
    const other = await Raw.welcomed(server.wsUrl)
    broken.send({ type: 'subscribe', path: '/explode' })
    await broken.closesWith(1011, 'internal error')
    expect(broken.frames.filter((f) => f.type !== 'welcome')).toEqual([])
    expect(logged).toContain('listenjs: a message could not be handled')
    other.send({ type: 'subscribe', path: '/fine' })
    expect(await other.next()).toMatchObject({ type: 'data', path: '/fine' })
  })

  it('4403 when the app disconnects a socket', async () => {
    const server = await start()
    const revoked = await Raw.welcomed(server.wsUrl)
    const kept = await Raw.welcomed(server.wsUrl)
    expect(server.hub.disconnect((c) => c.id === revoked.id)).toBe(1)
    await revoked.closesWith(4403)
    await kept.marker()
  })
})

describe('on the clock', () => {
  beforeEach(fakeClock)

  it('ping every intervalMs; a socket that has sent no message within timeoutMs is cut (1006); ping frames do not count', async () => {
    const server = await start({ heartbeat: { intervalMs: 1000, timeoutMs: 500 } })
    const answering = await Raw.welcomed(server.wsUrl)
    const silent = await Raw.welcomed(server.wsUrl)
    const pinging = await Raw.welcomed(server.wsUrl)
    for (const raw of [answering, silent, pinging]) await raw.marker()
    jest.advanceTimersByTime(1000)
    for (const raw of [answering, silent, pinging]) expect(await raw.next()).toEqual({ type: 'ping' })
    answering.send({ type: 'pong' })
    await answering.marker()
    // A WebSocket ping frame is answered, but is no answer to `ping`.
    expect(await pinging.pingFrame()).toBe(true)
    jest.advanceTimersByTime(499)
    // A round trip after the move: had the socket been cut, the round trip could not complete.
    expect(await silent.pingFrame()).toBe(true)
    jest.advanceTimersByTime(1)
    await silent.closesWith(1006)
    await pinging.closesWith(1006)
    // Any message counts as a sign of life, not only pong.
    jest.advanceTimersByTime(500)
    expect(await answering.next()).toEqual({ type: 'ping' })
    await answering.marker()
    jest.advanceTimersByTime(1000)
    expect(await answering.next()).toEqual({ type: 'ping' })
    expect(answering.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('a socket still silent at the next ping is cut, when timeoutMs is longer than intervalMs', async () => {
    const server = await start({ heartbeat: { intervalMs: 1000, timeoutMs: 5000 } })
    const silent = await Raw.welcomed(server.wsUrl)
    await silent.marker()
    jest.advanceTimersByTime(1000)
    expect(await silent.next()).toEqual({ type: 'ping' })
    jest.advanceTimersByTime(999)
    expect(await silent.pingFrame()).toBe(true)
    jest.advanceTimersByTime(1)
    await silent.closesWith(1006)
  })

  it('4407 when no message came within limits.firstMessageMs; ping frames are not messages, pong is', async () => {
    const server = await start({ limits: { firstMessageMs: 500 } })
    const silent = await Raw.welcomed(server.wsUrl)
    const pinging = await Raw.welcomed(server.wsUrl)
    const ponging = await Raw.welcomed(server.wsUrl)
    ponging.send({ type: 'pong' })
    expect(await pinging.pingFrame()).toBe(true)
    jest.advanceTimersByTime(499)
    // A round trip after the move: had the deadline passed, the close frame would have come first.
    expect(await pinging.pingFrame()).toBe(true)
    expect(silent.closedWith).toBeUndefined()
    jest.advanceTimersByTime(1)
    await silent.closesWith(4407, 'no message')
    await pinging.closesWith(4407, 'no message')
    jest.advanceTimersByTime(10_000)
    await ponging.marker()
  })

  it('4429 past limits.messageBurst, messages and ping frames alike; refilled at messagesPerSecond', async () => {
    const server = await start({ limits: { messagesPerSecond: 1, messageBurst: 3 } })
    const talker = await Raw.welcomed(server.wsUrl)
    talker.send({ type: 'pong' })
    talker.send({ type: 'pong' })
    await talker.marker() // the third message: the bucket is empty now
    jest.advanceTimersByTime(1000) // one token back
    await talker.marker()
    talker.send({ type: 'pong' })
    await talker.closesWith(4429)
    const pinger = await Raw.welcomed(server.wsUrl)
    for (let i = 0; i < 3; i++) expect(await pinger.pingFrame()).toBe(true)
    expect(await pinger.pingFrame()).toBe(false)
    await pinger.closesWith(4429)
  })

  it('4509 when a socket that does not read falls past limits.hardPendingBytes', async () => {
    const server = await start({ limits: { softPendingBytes: 16 * 1024, hardPendingBytes: 256 * 1024 } })
    const paths = Array.from({ length: 32 }, (_, i) => `/p/${i}`)
    for (const path of paths) server.answers.set(path, { json: 0 })
    const raw = await Raw.welcomed(server.wsUrl)
    for (const path of paths) raw.send({ type: 'subscribe', path })
    await raw.byPath(paths.length)
    const tcp = (raw.ws as unknown as { _socket: Socket })._socket
    tcp.pause()
    const pad = 'x'.repeat(64 * 1024)
    for (let round = 1; round <= 200 && server.hub.stats().slowClosed === 0; round++) {
      for (const path of paths) server.hub.notify(path, { round, pad })
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(server.hub.stats().slowClosed).toBe(1)
    // It reads again (before the grace period, which the fake clock holds): what was sent, then 4509.
    tcp.resume()
    await raw.closesWith(4509, 'too far behind')
    expect(raw.frames.length).toBeGreaterThan(paths.length + 1)
  })
})

describe('coverage', () => {
  it('saw on the wire every message type, error code, close code and upgrade status PROTOCOL.md lists', () => {
    const missing = [
      ...EXERCISED.client.map((t) => `client:${t}`),
      ...EXERCISED.server.map((t) => `server:${t}`),
      ...EXERCISED.errors.map((c) => `error:${c}`),
      ...EXERCISED.closes.map((c) => `close:${c}`),
      ...EXERCISED.upgrade.map((s) => `http:${s}`),
    ].filter((key) => !seen.has(key))
    expect(missing).toEqual([])
  })
})
