/**
 * The server-driven heartbeat (SPEC §4): every `heartbeat.intervalMs` each socket gets a `ping`
 * message; one that has not answered (any message counts) within `heartbeat.timeoutMs` is
 * terminated, and so is one still silent at the next ping. Browsers cannot see ping frames, so
 * this is an application message.
 */
import { PING_FRAME } from './frames'
import type { Kernel } from './kernel'
import type { Connection } from './registry'

export class Heartbeat {
  private interval: NodeJS.Timeout | undefined
  private deadline: NodeJS.Timeout | undefined

  constructor(
    private readonly kernel: Kernel,
    private readonly connections: () => Iterable<Connection>,
  ) {}

  /** Starts pinging (once; later calls do nothing). */
  start(): void {
    if (this.interval) return
    const { intervalMs, timeoutMs } = this.kernel.options.heartbeat
    this.kernel.inScope(() => {
      this.interval = setInterval(() => {
        for (const connection of this.connections()) {
          // A stream cannot answer: it is pinged (the client's sign of life) and closes with its connection.
          if (connection.socket.oneWay) {
            connection.socket.send(PING_FRAME)
            continue
          }
          if (connection.awaitingPong) {
            connection.socket.terminate()
            continue
          }
          connection.awaitingPong = true
          connection.socket.send(PING_FRAME)
        }
        clearTimeout(this.deadline)
        this.deadline = setTimeout(() => {
          for (const connection of this.connections())
            if (connection.awaitingPong) connection.socket.terminate()
        }, timeoutMs)
        this.deadline.unref()
      }, intervalMs)
      this.interval.unref()
    })
  }

  /** Stops pinging. */
  stop(): void {
    clearInterval(this.interval)
    clearTimeout(this.deadline)
  }
}
