/**
 * The in-process request a replay makes: Node's own `IncomingMessage` and `ServerResponse` (so every
 * framework, Express's prototype swap included, treats it as a real request), over a socket stand-in
 * that carries the subscriber's address and TLS state. The response's bytes are collected instead of
 * written anywhere; its status and headers (those given to `writeHead` too) are read when it ends.
 */
import { IncomingMessage, ServerResponse, type IncomingHttpHeaders } from 'node:http'
import { Duplex } from 'node:stream'

/** What the app answered. */
export interface Answer {
  readonly status: number
  /** Every header of the answer, by lower-case name. */
  readonly headers: Readonly<Record<string, unknown>>
  readonly body: Buffer
}

/** The request to make. */
export interface InjectRequest {
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly remoteAddress: string
  readonly encrypted: boolean
}

/** A socket that goes nowhere: what frameworks read of a connection (address, TLS) and nothing else. */
class ReplaySocket extends Duplex {
  readonly remotePort = 0
  readonly localAddress = '127.0.0.1'
  readonly localPort = 0
  constructor(
    readonly remoteAddress: string,
    readonly encrypted: boolean,
  ) {
    super()
  }
  override _read(): void {}
  override _write(_chunk: unknown, _encoding: BufferEncoding, callback: () => void): void {
    callback()
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
 * `prepare` runs before dispatch, with the pair (to mark the request, bound the body). Resolves when
 * the response ends; never rejects (a handler that never answers is the caller's timeout).
 */
export function inject(
  dispatch: (req: IncomingMessage, res: ServerResponse) => void,
  request: InjectRequest,
  prepare: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Answer> {
  const socket = new ReplaySocket(request.remoteAddress, request.encrypted)
  const req = new IncomingMessage(socket as never)
  req.method = 'GET'
  req.url = request.path
  req.httpVersion = '1.1'
  req.httpVersionMajor = 1
  req.httpVersionMinor = 1
  const headers: IncomingHttpHeaders = {}
  const raw: string[] = []
  for (const [name, value] of Object.entries(request.headers)) {
    headers[name] = value
    raw.push(name, value)
  }
  req.headers = headers
  req.rawHeaders = raw
  req.complete = true
  req.push(null)

  const res = new ServerResponse(req)
  const chunks: Buffer[] = []
  let written: Readonly<Record<string, unknown>> | undefined
  return new Promise<Answer>((resolve) => {
    const collect = (chunk: Chunk | undefined, encoding: unknown): void => {
      if (chunk === undefined || chunk === null) return
      chunks.push(
        typeof chunk === 'string'
          ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      )
    }
    // Own properties: they survive a framework replacing the response's prototype.
    const writeHead = res.writeHead
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      // Headers given to writeHead itself are not kept where getHeaders() sees them.
      written ??= args.find((a): a is Record<string, unknown> => typeof a === 'object' && a !== null)
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as ServerResponse['writeHead']
    res.write = function (this: ServerResponse, chunk: Chunk, encoding?: unknown, callback?: Callback) {
      if (this.writableEnded) return false
      if (!this.headersSent) this.writeHead(this.statusCode)
      collect(chunk, encoding)
      const done = typeof encoding === 'function' ? encoding : callback
      if (typeof done === 'function') process.nextTick(done as Callback)
      return true
    } as ServerResponse['write']
    res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, callback?: unknown) {
      if (this.writableEnded) return this
      if (typeof chunk === 'function') [callback, chunk] = [chunk, undefined]
      else if (typeof encoding === 'function') [callback, encoding] = [encoding, undefined]
      if (!this.headersSent) this.writeHead(this.statusCode)
      collect(chunk as Chunk | undefined, encoding)
      ;(this as { finished: boolean }).finished = true
      const answer = { status: this.statusCode, headers: { ...lowerCased(written), ...this.getHeaders() } }
      // Resolved after 'finish': what the app's listeners of it record (the route's options) is in.
      process.nextTick(() => {
        this.emit('prefinish')
        this.emit('finish')
        resolve({ ...answer, body: Buffer.concat(chunks) })
        if (typeof callback === 'function') (callback as Callback)()
        this.emit('close')
        socket.destroy()
      })
      return this
    } as ServerResponse['end']
    prepare(req, res)
    dispatch(req, res)
  })
}

function lowerCased(headers: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (!headers) return out
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) out[String(headers[i]).toLowerCase()] = headers[i + 1]
    return out
  }
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value
  return out
}
