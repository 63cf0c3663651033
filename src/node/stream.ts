/**
 * The HTTP stream: the transport for networks that block WebSockets (PROTOCOL.md, "The HTTP
 * stream"). A `POST` on the hub's path carries the client messages a socket would send first (its
 * `auth`, every `subscribe` with the version held); the answer is one long `text/event-stream`
 * response carrying the very server messages a socket would get, one event each, and a last `close`
 * event with the close code a socket would have got. Nothing is kept between two requests: a client
 * that changes what it listens to opens a new stream with its whole set, and any process can serve it.
 */
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'
import type { ResolvedOptions } from '../core/options'
import { CloseCode, SUBPROTOCOL, SUBPROTOCOL_PATCHES } from '../core/protocol'
import { clientAddress } from '../core/proxy'
import type { HubSocket, Opened, SocketEvents } from '../core/socket'
import { originAllowed } from './origin'

/** What a stream request asks for: the subprotocols it speaks and its first messages. */
export interface StreamRequest {
  readonly protocols: readonly string[]
  readonly messages: readonly unknown[]
}

/** The largest body of a stream request (its messages, each bounded by `limits.messageBytes` too). */
export const STREAM_BODY_BYTES = 262_144

/** A response header naming the subprotocol the stream speaks. */
export const PROTOCOL_HEADER = 'x-listenjs-protocol'

/**
 * The request's body as it was read (by a framework's body parser: an object; else a string or a
 * buffer), checked: `{ protocols?: string[], messages: unknown[] }`. A reason when it is not that.
 */
export function streamRequestOf(body: unknown): StreamRequest | string {
  let value = body
  if (typeof value === 'string' || Buffer.isBuffer(value)) {
    try {
      value = JSON.parse(String(value))
    } catch {
      return 'the body is not JSON'
    }
  }
  if (typeof value !== 'object' || value === null) return 'the body must be a JSON object'
  const { protocols = [SUBPROTOCOL], messages } = value as { protocols?: unknown; messages?: unknown }
  if (!Array.isArray(messages)) return 'messages must be an array'
  if (!Array.isArray(protocols) || !protocols.every((p) => typeof p === 'string'))
    return 'protocols must be an array of strings'
  return { protocols, messages }
}

/**
 * The subprotocol a socket or a stream speaks, among those `offered`: version 1.1 (patches) when
 * offered and the hub sends patches, else version 1; undefined when neither is offered.
 */
export function selectProtocol(
  offered: { has(protocol: string): boolean },
  patches: boolean,
): string | undefined {
  if (patches && offered.has(SUBPROTOCOL_PATCHES)) return SUBPROTOCOL_PATCHES
  return offered.has(SUBPROTOCOL) ? SUBPROTOCOL : undefined
}

/** Reads a request body of at most `limit` bytes; rejects past it. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(new Error('too large'))
        req.destroy()
      } else chunks.push(chunk)
    })
    req.once('end', () => resolve(Buffer.concat(chunks)))
    req.once('error', reject)
  })
}

/**
 * Each frame as an event (`data: <frame>` and a blank line; a frame holding line breaks, a
 * pretty-printed body, takes one `data:` line per line), built once however many streams it goes to.
 */
const asEvent = new WeakMap<Buffer, Buffer>()
function eventOf(frame: Buffer): Buffer {
  let event = asEvent.get(frame)
  if (event === undefined) {
    const parts: Buffer[] = [Buffer.from('data: ')]
    let start = 0
    for (let at = frame.indexOf(10); at !== -1; at = frame.indexOf(10, start)) {
      parts.push(frame.subarray(start, at), Buffer.from('\ndata: '))
      start = at + 1
    }
    parts.push(start === 0 ? frame : frame.subarray(start), Buffer.from('\n\n'))
    event = Buffer.concat(parts)
    asEvent.set(frame, event)
  }
  return event
}

/**
 * One open stream, seen by the hub as a socket: each frame is written as one event (see `eventOf`).
 */
export class StreamLink implements HubSocket {
  events!: SocketEvents
  readonly oneWay = true
  /** The close code it was closed with; 1006 when the client went away. */
  code = 1006
  private ended = false

  constructor(
    readonly res: ServerResponse,
    readonly protocol: string,
  ) {}

  send(frame: Buffer): void {
    if (this.ended) return
    if (!this.res.write(eventOf(frame))) this.res.once('drain', () => this.events.onDrain())
  }

  close(code: number, reason: string): void {
    if (this.ended) return
    this.ended = true
    this.code = code
    this.res.end(`event: close\ndata: ${JSON.stringify({ code, reason })}\n\n`)
  }

  terminate(): void {
    this.ended = true
    this.res.destroy()
  }

  bufferedAmount(): number {
    return this.res.writableLength
  }
}

/** How streams count against `limits.connectionsPerAddress`, with the sockets of their address. */
export interface AddressCount {
  /** Counts one more for `address`; false when it has as many as allowed already. */
  take(address: string): boolean
  release(address: string): void
}

/**
 * The headers that let a page of another allowed origin read the stream (CORS, with credentials:
 * cookies go with it as with an upgrade). None for a request without `Origin`.
 */
function corsHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const origin = req.headers.origin
  if (origin === undefined) return {}
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-credentials': 'true',
    'access-control-expose-headers': PROTOCOL_HEADER,
    vary: 'Origin',
  }
}

/**
 * Serves the HTTP stream for a transport: the checks of an upgrade (`Host`, `Origin`, the count per
 * address), a CORS preflight (`OPTIONS`) for pages of other allowed origins, then the stream, handed
 * to the hub as a socket through `opened`. `close()` cuts the streams still open.
 */
export function streamServer(
  options: ResolvedOptions,
  opened: Opened,
  addresses: AddressCount,
): { serve(req: IncomingMessage, res: ServerResponse, body?: unknown): void; close(): void } {
  const streams = new Set<StreamLink>()
  const serve = (req: IncomingMessage, res: ServerResponse, body?: unknown): void => {
    const fail = (status: number, reason?: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' })
      res.end(reason ?? STATUS_CODES[status])
    }
    if (!req.headers.host) return fail(400)
    if (!originAllowed(req, options.allowedOrigins, options.trustProxy)) return fail(403)
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        ...corsHeaders(req),
        'access-control-allow-methods': 'POST',
        'access-control-allow-headers': 'content-type, authorization',
        'access-control-max-age': '600',
      })
      res.end()
      return
    }
    const address = clientAddress(
      req.socket.remoteAddress ?? '',
      req.headers['x-forwarded-for'],
      options.trustProxy,
    )
    // Counted from now, while the body is read: a client cannot open more by sending slowly.
    if (!addresses.take(address)) return fail(429)
    res.once('close', () => addresses.release(address))
    // A body parser that ran before may have read it, or left it (and an empty object) alone.
    const unread =
      !req.readableEnded &&
      (body === undefined || (typeof body === 'object' && body !== null && Object.keys(body).length === 0))
    const read = unread ? readBody(req, STREAM_BODY_BYTES) : Promise.resolve(body)
    read.then(
      (value) => {
        if (res.destroyed) return
        const request = streamRequestOf(value)
        if (typeof request === 'string') return fail(400, request)
        const protocol = selectProtocol(new Set(request.protocols), options.patches !== false)
        if (protocol === undefined) return fail(400, `${SUBPROTOCOL} required`)
        res.writeHead(200, {
          ...corsHeaders(req),
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          // Proxies that buffer responses (nginx) pass this one through as it is written.
          'x-accel-buffering': 'no',
          [PROTOCOL_HEADER]: protocol,
        })
        const link = new StreamLink(res, protocol)
        streams.add(link)
        res.once('close', () => {
          streams.delete(link)
          link.events.onClose(link.code)
        })
        link.events = opened(link, req)
        // The messages of the body, handled as a socket's first messages, in order, each bounded as
        // a socket's is (a framework's body parser may have read a larger body than ours would).
        for (const message of request.messages) {
          if (res.writableEnded) break
          const data = Buffer.from(JSON.stringify(message) ?? 'null')
          if (data.length > options.limits.messageBytes) {
            link.close(CloseCode.MessageTooBig, 'message too big')
            break
          }
          link.events.onMessage(data, false)
        }
      },
      () => fail(413),
    )
  }
  return {
    serve,
    close() {
      for (const link of streams) link.terminate()
    },
  }
}
