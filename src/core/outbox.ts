/**
 * What leaves for a socket, and what waits when it cannot leave: the slow-consumer rule (SPEC §2.8).
 * A socket with more than `limits.softPendingBytes` unsent is slow: its frames wait, newest per path
 * (a slow consumer gets the latest state, not a queue of old ones), and go when it drains; past
 * `limits.hardPendingBytes` it is closed with 4509. The outbox owns the parked frames and their
 * counters; nothing else touches them.
 */
import type { Kernel } from './kernel'
import { POLICY } from './options'
import { CloseCode } from './protocol'
import type { Connection } from './registry'

export class Outbox {
  /** Frames sent to sockets since the hub started. */
  messagesSent = 0
  /** States that replaced an older unsent state of the same path for a slow socket. */
  collapsed = 0
  /** Sockets closed with 4509. */
  slowClosed = 0

  /** `limits.softPendingBytes` (options never change). */
  private readonly soft: number

  constructor(private readonly kernel: Kernel) {
    this.soft = kernel.options.limits.softPendingBytes
  }

  /**
   * Sends a frame about `path` to one socket, or parks it while the socket is slow. `hold`: more
   * frames are likely to follow in this turn (see `HubSocket.send`). `whole`: what to park instead
   * (the full state of a patch: a parked frame may replace an older one, so it must not depend on
   * it). Kept small: it runs once per recipient of every fan-out.
   */
  send(connection: Connection, path: string, frame: Buffer, hold = false, whole = frame): void {
    if (connection.closed) return
    if (connection.parked === undefined && connection.socket.bufferedAmount() <= this.soft) {
      connection.socket.send(frame, hold)
      this.messagesSent++
      return
    }
    this.park(connection, path, whole)
  }

  /** Parks `frame` as the newest about `path` for a slow socket; closes it with 4509 past the hard limit. */
  private park(connection: Connection, path: string, frame: Buffer): void {
    const { hardPendingBytes } = this.kernel.options.limits
    const parked = (connection.parked ??= new Map())
    const older = parked.get(path)
    if (older) {
      parked.delete(path)
      connection.parkedBytes -= older.length
      this.collapsed++
    }
    parked.set(path, frame)
    connection.parkedBytes += frame.length
    if (connection.socket.bufferedAmount() + connection.parkedBytes > hardPendingBytes) {
      this.kernel.options.logger.warn(
        { id: connection.id },
        'listenjs: closing a socket that fell too far behind',
      )
      this.slowClosed++
      this.forgetAll(connection)
      this.close(connection, CloseCode.SlowConsumer, 'too far behind')
      // Its close frame waits behind what is unsent: a client that reads again gets it; one that
      // never does is cut off after a grace period.
      setTimeout(() => connection.socket.terminate(), POLICY.slowCloseGraceMs).unref()
    }
  }

  /** Sends what waited for a slow socket, oldest path first, while it stays under the soft limit. */
  drained(connection: Connection): void {
    const parked = connection.parked
    if (parked === undefined || connection.closed) return
    const soft = this.kernel.options.limits.softPendingBytes
    for (const [path, frame] of parked) {
      if (connection.socket.bufferedAmount() > soft) return
      parked.delete(path)
      connection.parkedBytes -= frame.length
      connection.socket.send(frame)
      this.messagesSent++
    }
    connection.parked = undefined
  }

  /** Drops the frame waiting for `path` (the socket unsubscribed from it). */
  forget(connection: Connection, path: string): void {
    const frame = connection.parked?.get(path)
    if (!frame) return
    connection.parked?.delete(path)
    connection.parkedBytes -= frame.length
    // No frame waiting is no map: `send` then writes directly again.
    if (connection.parked?.size === 0) connection.parked = undefined
  }

  /** Drops every frame waiting for `connection`. */
  forgetAll(connection: Connection): void {
    connection.parked = undefined
    connection.parkedBytes = 0
  }

  /** Starts closing `connection` (once): nothing more is sent to it. */
  close(connection: Connection, code: number, reason: string): void {
    if (connection.closed) return
    connection.closed = true
    connection.socket.close(code, reason)
  }

  /** Unsent and parked bytes, summed over `connections`. */
  pendingBytes(connections: Iterable<Connection>): number {
    let sum = 0
    for (const c of connections) sum += c.socket.bufferedAmount() + c.parkedBytes
    return sum
  }
}
