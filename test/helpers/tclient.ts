import WebSocket from 'ws'
import { SUBPROTOCOL } from '../../src/core/protocol'

/** A message as the test client received it (parsed JSON). */
export type Frame = { type: string; [key: string]: unknown }

/**
 * A raw WebSocket test client with a queue: `next()` resolves with the next message or rejects
 * after a timeout, so tests wait for events instead of sleeping.
 */
export class TestClient {
  readonly messages: Frame[] = []
  private readonly waiters: Array<{
    resolve: (f: Frame) => void
    reject: (e: Error) => void
    timer: NodeJS.Timeout
  }> = []
  readonly closed: Promise<{ code: number; reason: string }>
  private autoPong = true

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame
      if (frame.type === 'ping' && this.autoPong) {
        ws.send(JSON.stringify({ type: 'pong' }))
        return
      }
      const waiter = this.waiters.shift()
      if (waiter) {
        clearTimeout(waiter.timer)
        waiter.resolve(frame)
      } else this.messages.push(frame)
    })
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
    )
  }

  /** Connects and consumes the `welcome` message. */
  static async connect(
    url: string,
    options: {
      protocols?: string[]
      headers?: Record<string, string>
      welcome?: boolean
      localAddress?: string
    } = {},
  ): Promise<TestClient> {
    const ws = new WebSocket(url, options.protocols ?? [SUBPROTOCOL], {
      headers: options.headers,
      localAddress: options.localAddress,
    })
    const client = new TestClient(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
    })
    if (options.welcome !== false) {
      const welcome = await client.next()
      if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${welcome.type}`)
    }
    return client
  }

  /** Stops answering pings (to test the heartbeat). */
  silence(): void {
    this.autoPong = false
  }

  /** Sends a message (an object is JSON-encoded, a string or buffer is sent as it is). */
  send(message: object | string | Buffer): void {
    this.ws.send(typeof message === 'object' && !Buffer.isBuffer(message) ? JSON.stringify(message) : message)
  }

  subscribe(path: string): void {
    this.send({ type: 'subscribe', path })
  }

  unsubscribe(path: string): void {
    this.send({ type: 'unsubscribe', path })
  }

  /** The next message; rejects after `timeoutMs`. */
  next(timeoutMs = 3000): Promise<Frame> {
    const queued = this.messages.shift()
    if (queued) return Promise.resolve(queued)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.timer === timer)
        if (i !== -1) this.waiters.splice(i, 1)
        reject(new Error(`no message within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiters.push({ resolve, reject, timer })
    })
  }

  /** The next message of `type` (others before it are dropped). */
  async nextOf(type: string, timeoutMs = 3000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const frame = await this.next(Math.max(1, deadline - Date.now()))
      if (frame.type === type) return frame
    }
  }

  /** Resolves true when no message arrives within `ms` (used to prove that nothing is pushed). */
  async quiet(ms = 300): Promise<boolean> {
    try {
      const frame = await this.next(ms)
      this.messages.unshift(frame)
      return false
    } catch {
      return true
    }
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    this.ws.close()
    await this.closed
  }
}
