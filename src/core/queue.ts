/**
 * The one replay queue of a hub: jobs run in arrival order with at most `concurrency` in flight.
 * Deduplication (a group already waiting is not queued twice) is the caller's: it keeps a flag.
 */
export class ReplayQueue {
  private readonly waiting: Array<() => Promise<void>> = []
  private head = 0
  private running = 0

  /**
   * @param concurrency - jobs in flight at once
   * @param run - runs a job; the hub passes one that escapes the caller's async context
   */
  constructor(
    private readonly concurrency: number,
    private readonly run: (job: () => Promise<void>) => Promise<void>,
  ) {}

  /** Jobs waiting to start. */
  get size(): number {
    return this.waiting.length - this.head
  }

  /** Jobs running now. */
  get inFlight(): number {
    return this.running
  }

  /** Queues `job`. A job must not reject; if it does, the error is swallowed here. */
  push(job: () => Promise<void>): void {
    this.waiting.push(job)
    this.pump()
  }

  /** Drops every job that has not started. */
  clear(): void {
    this.waiting.length = 0
    this.head = 0
  }

  private pump(): void {
    while (this.running < this.concurrency && this.head < this.waiting.length) {
      const job = this.waiting[this.head++] as () => Promise<void>
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head)
        this.head = 0
      }
      this.running++
      this.run(job)
        .catch(() => {})
        .finally(() => {
          this.running--
          this.pump()
        })
    }
  }
}
