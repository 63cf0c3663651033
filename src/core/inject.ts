/**
 * The in-process request a replay makes: Node's own `IncomingMessage` and `ServerResponse` (so every
 * framework, Express's prototype swap included, treats it as a real request), over a socket stand-in
 * that carries the subscriber's address and TLS state. The response's body is collected instead of
 * written anywhere, as text (what a frame carries), bounded in size; its status and the two headers a
 * replay needs are read when it ends.
 */
import { EventEmitter } from 'node:events'
import { IncomingMessage, ServerResponse, type IncomingHttpHeaders } from 'node:http'

/** What the app answered. */
export interface Answer {
  readonly status: number
  readonly contentType: string | undefined
  readonly etag: string | undefined
  /** The body, decoded as UTF-8. */
  readonly body: string
}

/** The request to make. */
export interface InjectRequest {
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly remoteAddress: string
  readonly encrypted: boolean
}

/** Why there is no answer: the body outgrew its bound, or the app's handler threw. */
export type NoAnswer = 'too_large' | 'error'

/**
 * A socket that goes nowhere: what frameworks read of a connection (address, TLS, whether it is
 * still open) and nothing else. An event emitter, not a stream: nothing is ever read or written.
 */
class ReplaySocket extends EventEmitter {
  readonly remotePort = 0
  readonly localAddress = '127.0.0.1'
  readonly localPort = 0
  readable = true
  writable = true
  destroyed = false
  constructor(
    readonly remoteAddress: string,
    readonly encrypted: boolean,
  ) {
    super()
  }
  destroy(): this {
    if (this.destroyed) return this
    this.destroyed = true
    this.readable = this.writable = false
    this.emit('close', false)
    return this
  }
  setTimeout(): this {
    return this
  }
  setNoDelay(): this {
    return this
  }
  setKeepAlive(): this {
    return this
  }
  ref(): this {
    return this
  }
  unref(): this {
    return this
  }
}

type Chunk = string | Uint8Array
type Callback = (error?: Error | null) => void

/**
 * Makes `GET request.path` through `dispatch` (`(req, res) => server.emit('request', req, res)`).
 * `prepare` runs before dispatch, with the pair (to mark the request). `done` is called once: with
 * the answer when the response ends, or with why there is none. A handler that never answers never
 * calls it (that is the caller's timeout); a dispatch that throws calls it with `'error'`.
 * @returns the response, for the caller to destroy on its timeout
 */
export function inject(
  dispatch: (req: IncomingMessage, res: ServerResponse) => void,
  request: InjectRequest,
  maxBodyBytes: number,
  prepare: (req: IncomingMessage, res: ServerResponse) => void,
  done: (answer: Answer | NoAnswer) => void,
): ServerResponse {
  const socket = new ReplaySocket(request.remoteAddress, request.encrypted)
  const req = new IncomingMessage(socket as never)
  req.method = 'GET'
  req.url = request.path
  req.httpVersion = '1.1'
  req.httpVersionMajor = 1
  req.httpVersionMinor = 1
  const headers: IncomingHttpHeaders = {}
  const raw: string[] = []
  for (const name in request.headers) {
    const value = request.headers[name]
    if (value === undefined) continue
    headers[name] = value
    raw.push(name, value)
  }
  req.headers = headers
  req.rawHeaders = raw
  req.complete = true
  req.push(null)

  const res = new ServerResponse(req)
  // The body: text while every chunk is UTF-8 text (what frameworks write), bytes once one is not.
  let text = ''
  let bytes: Buffer[] | undefined
  let size = 0
  let written: unknown
  let settled = false
  const settle = (outcome: Answer | NoAnswer): void => {
    if (settled) return
    settled = true
    done(outcome)
  }
  /** Adds a chunk; false once the body is over its bound (the response is then destroyed). */
  const collect = (chunk: Chunk | undefined | null, encoding: unknown): boolean => {
    if (chunk === undefined || chunk === null) return true
    const utf8 = typeof encoding !== 'string' || encoding === 'utf8' || encoding === 'utf-8'
    if (typeof chunk === 'string' && utf8 && bytes === undefined) {
      size += Buffer.byteLength(chunk)
      text += chunk
    } else {
      const buffer =
        typeof chunk === 'string'
          ? Buffer.from(chunk, utf8 ? 'utf8' : (encoding as BufferEncoding))
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      if (bytes === undefined) bytes = text === '' ? [] : [Buffer.from(text)]
      bytes.push(buffer)
      size += buffer.length
    }
    if (size <= maxBodyBytes) return true
    settle('too_large')
    res.destroy()
    return false
  }
  // Own properties: they survive a framework replacing the response's prototype.
  const writeHead = res.writeHead
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    // Headers given to writeHead itself are not kept where getHeader() sees them.
    written ??= args.find((a) => typeof a === 'object' && a !== null)
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
  } as ServerResponse['writeHead']
  res.write = function (this: ServerResponse, chunk: Chunk, encoding?: unknown, callback?: Callback) {
    if (this.writableEnded || settled) return false
    if (!this.headersSent) this.writeHead(this.statusCode)
    if (!collect(chunk, encoding)) return false
    const next = typeof encoding === 'function' ? encoding : callback
    if (typeof next === 'function') process.nextTick(next as Callback)
    return true
  } as ServerResponse['write']
  res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, callback?: unknown) {
    if (this.writableEnded) return this
    if (typeof chunk === 'function') [callback, chunk] = [chunk, undefined]
    else if (typeof encoding === 'function') [callback, encoding] = [encoding, undefined]
    if (!this.headersSent) this.writeHead(this.statusCode)
    if (!settled) collect(chunk as Chunk | undefined, encoding)
    ;(this as { finished: boolean }).finished = true
    const status = this.statusCode
    const header = (name: string): string | undefined =>
      headerValue(this.getHeader(name) ?? writtenHeader(written, name))
    const contentType = header('content-type')
    const etag = header('etag')
    // Settled after 'finish': what the app's listeners of it record (the route's options) is in.
    process.nextTick(() => {
      this.emit('prefinish')
      this.emit('finish')
      settle({ status, contentType, etag, body: bytes ? Buffer.concat(bytes).toString('utf8') : text })
      if (typeof callback === 'function') (callback as Callback)()
      this.emit('close')
      socket.destroy()
    })
    return this
  } as ServerResponse['end']
  prepare(req, res)
  try {
    dispatch(req, res)
  } catch {
    settle('error')
  }
  return res
}

/** A header given to `writeHead` (an object, or a flat `[name, value, …]` list), by lower-case name. */
export function writtenHeader(written: unknown, name: string): unknown {
  if (Array.isArray(written)) {
    for (let i = 0; i + 1 < written.length; i += 2) {
      if (String(written[i]).toLowerCase() === name) return written[i + 1]
    }
    return undefined
  }
  if (typeof written !== 'object' || written === null) return undefined
  const headers = written as Record<string, unknown>
  const direct = headers[name]
  if (direct !== undefined) return direct
  for (const key in headers) {
    if (Object.hasOwn(headers, key) && key.toLowerCase() === name) return headers[key]
  }
  return undefined
}

/** A header's value as one string (the first of a list). */
export function headerValue(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined
  return Array.isArray(value) ? String(value[0]) : String(value)
}
