import { STATUS_CODES, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import * as wsModule from 'ws'
import { WebSocketServer, type WebSocket } from 'ws'
import type { OriginCheck, ResolvedOptions } from './options'
import { CloseCode, SUBPROTOCOL } from './protocol'
import type { HubSocket } from './registry'

/** What the hub gets back for each accepted socket: where to send its messages, drains and close. */
export interface SocketSinks {
  message(data: Buffer, isBinary: boolean): void
  /** The client sent a WebSocket ping frame; counted like a message. Answered with a pong if true. */
  ping(): boolean
  /** A frame given to `send` reached the kernel: unsent bytes went down. */
  drained(): void
  closed(code: number): void
}

const TEXT = { binary: false } as const

/** ws's frame builder (exported by ws, not declared by @types/ws). */
const { Sender } = wsModule as unknown as {
  Sender: {
    frame(
      data: Buffer,
      options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean },
    ): Buffer[]
  }
}

/**
 * Each frame as it goes on the wire (a text frame, unmasked, header and payload in one buffer),
 * built once however many sockets it goes to.
 */
const onTheWire = new WeakMap<Buffer, Buffer>()
function wireFrame(frame: Buffer): Buffer {
  let wire = onTheWire.get(frame)
  if (!wire) {
    wire = Buffer.concat(
      Sender.frame(frame, { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false }),
    )
    onTheWire.set(frame, wire)
  }
  return wire
}

/** The WebSocket endpoint: the one place that knows about `ws`. */
export interface Endpoint {
  /** Handles one `upgrade` event of `server`; ignores upgrades for other paths. */
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    server: { listenerCount(event: string): number },
  ): void
  /** Waits up to `graceMs` for open sockets to finish closing, then terminates the rest. */
  close(graceMs: number): Promise<void>
}

/**
 * Creates the endpoint (`ws` in `noServer` mode). The upgrade is checked before any WebSocket exists:
 * wrong path → left alone; disallowed `Origin` → HTTP 403; too many sockets from one address → 429.
 */
export function createEndpoint(
  options: ResolvedOptions,
  onConnection: (socket: HubSocket, request: IncomingMessage) => SocketSinks,
): Endpoint {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.limits.messageBytes,
    // Compression would be per socket; a frame shared by a group is written as it is.
    perMessageDeflate: false,
    // Pings are answered by the hub after its rate limit, so a ping flood gets 4429, not a silent cut.
    autoPong: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  })
  const perAddress = new Map<string, number>()
  // One write per socket per turn: a socket is corked at its first frame of a turn and uncorked once,
  // at the end of the turn, so that several paths changing together leave in one write.
  const corked = new Set<Socket>()
  let uncorkScheduled = false
  const uncorkAll = (): void => {
    uncorkScheduled = false
    for (const socket of corked) socket.uncork()
    corked.clear()
  }
  const cork = (socket: Socket | undefined): void => {
    if (!socket || corked.has(socket)) return
    socket.cork()
    corked.add(socket)
    if (!uncorkScheduled) {
      uncorkScheduled = true
      setImmediate(uncorkAll)
    }
  }

  const release = (address: string): void => {
    const left = (perAddress.get(address) ?? 1) - 1
    if (left <= 0) perAddress.delete(address)
    else perAddress.set(address, left)
  }

  const accept = (ws: WebSocket, req: IncomingMessage, address: string): void => {
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
    ws.on('error', (error) => options.logger.debug({ err: error }, 'listenjs: socket error'))
    if (ws.protocol !== SUBPROTOCOL) {
      ws.once('close', () => release(address))
      ws.close(CloseCode.UnsupportedProtocol, `${SUBPROTOCOL} subprotocol required`)
      return
    }
    // ws keeps its TCP socket in a private field. With it, a frame framed once is written to every
    // socket as one buffer, and the socket's `drain` tells when a slow socket can take more; without
    // it (another ws version), frames go through ws.send with a completion callback.
    const raw = (ws as unknown as { _socket?: Socket })._socket
    const written = (): void => sinks.drained()
    const send = raw
      ? (frame: Buffer): void => {
          if (ws.readyState !== ws.OPEN || !raw.writable) return
          cork(raw)
          raw.write(wireFrame(frame))
        }
      : (frame: Buffer): void => ws.send(frame, TEXT, written)
    raw?.on('drain', written)
    const sinks = onConnection(
      {
        send,
        close: (code, reason) => ws.close(code, reason),
        terminate: () => ws.terminate(),
        bufferedAmount: () => ws.bufferedAmount,
      },
      req,
    )
    ws.on('message', (data, isBinary) => sinks.message(data as Buffer, isBinary))
    ws.on('ping', (data) => {
      if (sinks.ping()) ws.pong(data)
    })
    ws.once('close', (code) => {
      release(address)
      if (raw && corked.delete(raw)) raw.uncork()
      sinks.closed(code)
    })
  }

  return {
    handleUpgrade(req, socket, head, server) {
      const url = req.url ?? ''
      const q = url.indexOf('?')
      if ((q === -1 ? url : url.slice(0, q)) !== options.path) {
        // Someone else may serve this path; when nobody listens but us, answer instead of hanging.
        if (server.listenerCount('upgrade') <= 1) refuse(socket, 404)
        return
      }
      if (!originAllowed(req, options.allowedOrigins, options.trustProxy)) return refuse(socket, 403)
      const address = req.socket.remoteAddress ?? ''
      if ((perAddress.get(address) ?? 0) >= options.limits.connectionsPerAddress) return refuse(socket, 429)
      wss.handleUpgrade(req, socket, head, (ws) => accept(ws, req, address))
    },
    async close(graceMs) {
      const open = [...wss.clients]
      if (open.length > 0) {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          Promise.all(
            open.map((ws) =>
              ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once('close', r)),
            ),
          ),
          new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
        ])
        clearTimeout(timer)
        for (const ws of wss.clients) ws.terminate()
      }
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

/**
 * Whether the upgrade's `Origin` may connect. No `Origin` (a non-browser client) is allowed. A list
 * matches exact origins only (`null` only when listed). The default allows only the page's own
 * origin: the scheme of the connection (or `X-Forwarded-Proto` behind a trusted proxy) and the `Host`
 * header (or `X-Forwarded-Host`).
 */
function originAllowed(
  req: IncomingMessage,
  allowed: readonly string[] | OriginCheck | undefined,
  trustProxy: boolean,
): boolean {
  const origin = req.headers.origin
  if (origin === undefined) return true
  if (typeof allowed === 'function') {
    try {
      return allowed(origin, req) === true
    } catch {
      return false
    }
  }
  if (allowed !== undefined) return allowed.includes(origin)
  const forwarded = (name: string): string | undefined => {
    const value = trustProxy ? req.headers[name] : undefined
    const first = (Array.isArray(value) ? value[0] : value)?.split(',')[0]?.trim()
    return first === '' ? undefined : first
  }
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true
  const scheme = (forwarded('x-forwarded-proto') ?? (encrypted ? 'https' : 'http')).toLowerCase()
  const host = forwarded('x-forwarded-host') ?? req.headers.host
  if ((scheme !== 'http' && scheme !== 'https') || host === undefined) return false
  try {
    // Both through URL, so that default ports and case compare equal.
    return new URL(origin).origin === new URL(`${scheme}://${host}`).origin
  } catch {
    return false
  }
}

/** Answers an upgrade with a plain HTTP error and closes the TCP socket; no WebSocket is created. */
function refuse(socket: Duplex, status: number): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  socket.once('finish', () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
  )
}
