import { STATUS_CODES, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import type { ResolvedOptions } from '../core/options'
import { pathnameOf } from '../core/paths'
import { clientAddress } from '../core/proxy'
import { CloseCode, SUBPROTOCOL, SUBPROTOCOL_PATCHES } from '../core/protocol'
import type { HubSocket, Opened, SocketEvents, Transport } from '../core/socket'
import { rawSocketOf, textFrame } from './ws-internals'
import { originAllowed } from './origin'
import { selectProtocol, streamServer } from './stream'

const TEXT = { binary: false } as const
/** `WebSocket.OPEN`. */
const OPEN = 1

/**
 * Each frame as it goes on the wire (a text frame, unmasked, header and payload in one buffer),
 * built once however many sockets it goes to.
 */
const onTheWire = new WeakMap<Buffer, Buffer>()
function wireFrame(frame: Buffer): Buffer {
  let wire = onTheWire.get(frame)
  if (!wire) {
    // Only called with a raw socket, which exists only when frames can be built.
    wire = textFrame(frame) as Buffer
    onTheWire.set(frame, wire)
  }
  return wire
}

/**
 * Creates the endpoint (`ws` in `noServer` mode). The upgrade is checked before any WebSocket exists:
 * wrong path → left alone; no `Host` → HTTP 400; disallowed `Origin` → HTTP 403; too many sockets from one address → 429.
 *
 * Every open socket costs one `Link` (methods on its prototype) and nothing else of ours: the
 * listeners are shared functions that find their link through `this`.
 */
export function wsTransport(options: ResolvedOptions, opened: Opened): Transport {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.limits.messageBytes,
    // Compression would be per socket; a frame shared by a group is written as it is.
    perMessageDeflate: false,
    // Pings are answered by the hub after its rate limit, so a ping flood gets 4429, not a silent cut.
    autoPong: false,
    // Version 1.1 (patches) when the client offers it and the hub sends patches; else version 1.
    handleProtocols: (protocols) => selectProtocol(protocols, options.patches !== false) ?? false,
  })
  const perAddress = new Map<string, number>()
  const links = new WeakMap<object, Link>()

  // A socket's first frame in a turn is written at once, so the kernel starts sending while the
  // fan-out goes on, unless the hub expects more frames in this turn (`hold`); a held frame, or a
  // second frame in the same turn, corks the socket until the turn ends, so that several paths
  // changing together leave in one write.
  let turn = 0
  let turnEnding = false
  const corked: Socket[] = []
  // A fan-out sends one frame to many sockets in a row: the last frame's wire bytes are kept for the
  // turn (no lookup per socket), and forgotten when it ends.
  let lastFrame: Buffer | undefined
  let lastWire: Buffer | undefined
  const endTurn = (): void => {
    turnEnding = false
    turn++
    lastFrame = lastWire = undefined
    for (const socket of corked) socket.uncork()
    corked.length = 0
  }

  class Link implements HubSocket {
    events!: SocketEvents
    /** The turn of this socket's last frame, and the turn in which it was corked. */
    private sentIn = -1
    private corkedIn = -1
    private waitingDrain = false

    constructor(
      readonly ws: WebSocket,
      /** ws's TCP socket (a private field of ws), when this ws version has it. */
      readonly raw: Socket | undefined,
      readonly address: string,
    ) {}

    get protocol(): string {
      return this.ws.protocol
    }

    send(frame: Buffer, hold = false): void {
      const { ws, raw } = this
      if (!raw) {
        ws.send(frame, TEXT, () => this.events.onDrain())
        return
      }
      if (ws.readyState !== OPEN || !raw.writable) return
      if (!turnEnding) {
        turnEnding = true
        setImmediate(endTurn)
      }
      if ((hold || this.sentIn === turn) && this.corkedIn !== turn) {
        this.corkedIn = turn
        raw.cork()
        corked.push(raw)
      }
      this.sentIn = turn
      if (frame !== lastFrame) {
        lastWire = wireFrame(frame)
        lastFrame = frame
      }
      if (!raw.write(lastWire as Buffer) && !this.waitingDrain) {
        this.waitingDrain = true
        raw.once('drain', onDrain)
      }
    }

    close(code: number, reason: string): void {
      this.ws.close(code, reason)
    }

    terminate(): void {
      this.ws.terminate()
    }

    bufferedAmount(): number {
      // ws's getter adds what its sender holds back to the TCP socket's unsent bytes; its sender
      // holds nothing back here (it only queues while compressing, which is off, or while reading a
      // Blob, which the hub never sends), so the socket's count is the same number, one lookup less
      // per frame sent.
      const { raw } = this
      return raw ? raw.writableLength : this.ws.bufferedAmount
    }

    drained(): void {
      this.waitingDrain = false
      this.events.onDrain()
    }
  }

  function onDrain(this: Socket): void {
    links.get(this)?.drained()
  }
  function onMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
    const link = links.get(this)
    if (link) link.events.onMessage(data, isBinary)
  }
  function onPing(this: WebSocket, data: Buffer): void {
    const link = links.get(this)
    if (link?.events.onPing()) this.pong(data)
  }
  function onError(error: Error): void {
    options.logger.debug({ err: error }, 'listenjs: socket error')
  }
  // A socket corked in this turn and closed stays in `corked` until the turn ends: its close frame
  // leaves then, and uncorking a destroyed socket does nothing.
  function onClose(this: WebSocket, code: number): void {
    const link = links.get(this)
    if (!link) return
    release(link.address)
    link.events.onClose(code)
  }

  const release = (address: string): void => {
    const left = (perAddress.get(address) ?? 1) - 1
    if (left <= 0) perAddress.delete(address)
    else perAddress.set(address, left)
  }
  // HTTP streams count with the sockets of their address.
  const { serve: serveStream, close: closeStreams } = streamServer(options, opened, {
    take(address) {
      const open = perAddress.get(address) ?? 0
      if (open >= options.limits.connectionsPerAddress) return false
      perAddress.set(address, open + 1)
      return true
    },
    release,
  })

  const accept = (ws: WebSocket, req: IncomingMessage, address: string): void => {
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
    ws.on('error', onError)
    if (ws.protocol !== SUBPROTOCOL && ws.protocol !== SUBPROTOCOL_PATCHES) {
      ws.once('close', () => release(address))
      ws.close(CloseCode.UnsupportedProtocol, `${SUBPROTOCOL} subprotocol required`)
      return
    }
    // With ws's TCP socket, a frame framed once is written to every socket as one buffer, and the
    // socket's `drain` tells when a full socket can take more; without it (another ws version),
    // frames go through ws.send with a completion callback.
    const raw = rawSocketOf(ws)
    const link = new Link(ws, raw, address)
    links.set(ws, link)
    if (raw) links.set(raw, link)
    link.events = opened(link, req)
    ws.on('message', onMessage)
    ws.on('ping', onPing)
    ws.on('close', onClose)
  }

  return {
    handleUpgrade(req, socket, head, server) {
      if (pathnameOf(req.url ?? '') !== options.path) {
        // Someone else may serve this path; when nobody listens but us, answer instead of hanging.
        if (server.listenerCount('upgrade') <= 1) refuse(socket, 404)
        return
      }
      // Replays carry the upgrade's Host; one is never invented (HTTP/1.1 requires it anyway).
      if (!req.headers.host) return refuse(socket, 400)
      if (!originAllowed(req, options.allowedOrigins, options.trustProxy)) return refuse(socket, 403)
      const address = clientAddress(
        req.socket.remoteAddress ?? '',
        req.headers['x-forwarded-for'],
        options.trustProxy,
      )
      if ((perAddress.get(address) ?? 0) >= options.limits.connectionsPerAddress) return refuse(socket, 429)
      wss.handleUpgrade(req, socket, head, (ws) => accept(ws, req, address))
    },
    handleRequest(req, res, body) {
      serveStream(req, res, body)
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
      closeStreams()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
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
