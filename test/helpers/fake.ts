/**
 * The hub without a transport: a fake socket handed over with `hub.opened()`, and an app whose
 * answers the test releases by hand. Rules are observed exactly, with no network and no sleeps.
 */
import http from 'node:http'
import type { IncomingMessage } from 'node:http'
import { Hub } from '../../src/core/hub'
import type { HubOptions } from '../../src/core/options'
import type { HubSocket, SocketEvents } from '../../src/core/socket'

/** A socket that records what the hub does with it. */
export class FakeSocket implements HubSocket {
  readonly frames: Array<Record<string, unknown>> = []
  closedWith: { code: number; reason: string } | undefined
  terminated = false
  /** What the test says is unsent. */
  buffered = 0
  /** The subprotocol the transport would have selected (`listenjs.v1.1`: patches). */
  protocol: string | undefined = undefined
  /** A one-way transport (the HTTP stream): the client cannot answer `ping`. */
  oneWay: boolean | undefined = undefined
  events!: SocketEvents

  send(frame: Buffer): void {
    this.frames.push(JSON.parse(frame.toString('utf8')) as Record<string, unknown>)
  }
  close(code: number, reason: string): void {
    this.closedWith ??= { code, reason }
  }
  terminate(): void {
    this.terminated = true
  }
  bufferedAmount(): number {
    return this.buffered
  }

  /** Sends a client message. */
  message(message: object): void {
    this.events.onMessage(Buffer.from(JSON.stringify(message)), false)
  }
  /** Frames of `type` received so far. */
  of(type: string): Array<Record<string, unknown>> {
    return this.frames.filter((f) => f.type === type)
  }
}

/** An upgrade request as the transport would pass it. */
export function upgradeRequest(headers: Record<string, string> = {}): IncomingMessage {
  return {
    headers: { host: 'app.test', ...headers },
    url: '/listen',
    socket: { remoteAddress: '192.0.2.1', encrypted: false },
  } as unknown as IncomingMessage
}

/** A GET answer the test releases: `release()` answers with the state at that moment. */
export interface Held {
  readonly path: string
  release(): void
}

/**
 * A hub on an app with one resource per path, whose state is `state.get(path)`. While `hold` is
 * true, GET answers wait in `held` until released.
 */
export function fakeHub(options: HubOptions = {}) {
  const state = new Map<string, unknown>()
  const held: Held[] = []
  const control = { hold: false }
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/'
    const answer = (): void => {
      const value = state.get(path)
      if (value === undefined) {
        res.statusCode = 404
        res.end()
        return
      }
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify(value))
    }
    if (control.hold) held.push({ path, release: answer })
    else answer()
  })
  const hub = new Hub(options)
  hub.attach(server)
  const connect = (headers?: Record<string, string>, protocol?: string): FakeSocket => {
    const socket = new FakeSocket()
    socket.protocol = protocol
    socket.events = hub.opened(socket, upgradeRequest(headers))
    return socket
  }
  return { hub, state, held, control, connect }
}

/** Lets pending replays and the hub's end-of-turn work run. */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve))
}
