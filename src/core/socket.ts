/**
 * The seam between the hub and its transport. The core never imports a socket library: a
 * transport (the `ws` one in `src/node/`) hands each accepted socket to the hub as a
 * {@link HubSocket}, and reports what happens to it through the {@link SocketEvents} it gets back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ResolvedOptions } from './options'

/** What the hub needs of a socket. */
export interface HubSocket {
  /**
   * Sends one text frame (the buffer holds UTF-8 JSON). A socket's first frame in a turn is written
   * at once unless `hold` says more are likely to follow; held frames, and every later frame of the
   * turn, leave together in one write when the turn ends.
   */
  send(frame: Buffer, hold?: boolean): void
  /** Starts the closing handshake. */
  close(code: number, reason: string): void
  /** Destroys the socket at once. */
  terminate(): void
  /** Bytes given to `send` that have not reached the kernel yet. */
  bufferedAmount(): number
  /**
   * The subprotocol the transport selected: `listenjs.v1.1` lets the hub send patches to this socket;
   * anything else (or nothing) is `listenjs.v1`.
   */
  readonly protocol?: string
  /**
   * A one-way transport (the HTTP stream): the client cannot answer `ping`, so the heartbeat does not
   * wait for an answer; the socket lives until its connection closes.
   */
  readonly oneWay?: boolean
}

/** What a transport reports about one socket, to the object `opened` returned for it. */
export interface SocketEvents {
  /** A message arrived. */
  onMessage(data: Buffer, isBinary: boolean): void
  /** A WebSocket ping frame arrived; the transport answers it with a pong only if this returns true. */
  onPing(): boolean
  /** The socket wrote out what it held after being full. */
  onDrain(): void
  /** The socket closed (for any reason) with `code`. */
  onClose(code: number): void
}

/** Hands an accepted socket to the hub; `request` is its upgrade request. */
export type Opened = (socket: HubSocket, request: IncomingMessage) => SocketEvents

/** A WebSocket transport for one hub: it accepts sockets on the hub's path and hands them over. */
export interface Transport {
  /** Handles one `upgrade` event of `server`; leaves upgrades for other paths alone. */
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    server: { listenerCount(event: string): number },
  ): void
  /**
   * Serves one request for the HTTP stream (a `POST` on the hub's path): the same checks as an
   * upgrade, then one streamed response, seen by the hub as a socket. `body`: what a framework's body
   * parser made of the body already, if it read it. Transports without it serve WebSockets only.
   */
  handleRequest?(req: IncomingMessage, res: ServerResponse, body?: unknown): void
  /** Waits up to `graceMs` for open sockets to finish closing, then terminates the rest. */
  close(graceMs: number): Promise<void>
}

/** Creates the transport of a hub with its options; `opened` takes each accepted socket. */
export type TransportFactory = (options: ResolvedOptions, opened: Opened) => Transport
