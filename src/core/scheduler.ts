/**
 * The replay scheduler of a hub: fair across connections, bounded per connection, and cancellable.
 *
 * Every replay is queued in the lane of the connection it is charged to. Lanes take turns (round
 * robin): a connection with hundreds of queued replays, or with replays that hang until their
 * timeout, delays another connection's replay by at most one turn, never by its whole backlog.
 * At most `concurrency` replays run at once for the hub, and at most `perLane` of them for one lane,
 * so one connection's hung replays cannot hold every slot. A queued replay that nobody needs any more
 * is cancelled at once, so the queue returns to zero when the load stops.
 */

/** A queued job's handle. */
export interface Ticket {
  /** Drops the job if it has not started (idempotent; a started job runs to its end). */
  cancel(): void
}

/**
 * One connection's queue: jobs in arrival order (a linked list, so a job leaves from anywhere at
 * once), and how many of its jobs run now.
 */
interface Lane {
  readonly owner: object
  first: Job | undefined
  last: Job | undefined
  waiting: number
  running: number
}

/** A queued job; its own ticket. One object per job, no closure. */
class Job implements Ticket {
  queued = true
  prev: Job | undefined
  next: Job | undefined
  constructor(
    readonly queue: FairQueue,
    readonly lane: Lane,
    readonly run: () => Promise<void>,
  ) {}
  cancel(): void {
    this.queue.cancel(this)
  }
}

/** Jobs waiting, per lane, in turn order; see the module comment. */
export class FairQueue {
  private readonly lanes = new Map<object, Lane>()
  /** Lanes with a waiting job and a free slot, in turn order. */
  private readonly ready = new Set<Lane>()
  private running = 0
  private queued = 0

  /**
   * @param concurrency - jobs in flight at once, for the whole hub
   * @param perLane - jobs in flight at once for one lane (one connection)
   * @param run - runs a job; the hub passes one that escapes the caller's async context
   */
  constructor(
    private readonly concurrency: number,
    private readonly perLane: number,
    private readonly run: (job: () => Promise<void>) => Promise<void>,
  ) {}

  /** Jobs waiting to start. */
  get size(): number {
    return this.queued
  }

  /** Jobs running now. */
  get inFlight(): number {
    return this.running
  }

  /** Jobs of `owner`'s lane waiting or running now. */
  pendingIn(owner: object): number {
    const lane = this.lanes.get(owner)
    return lane === undefined ? 0 : lane.waiting + lane.running
  }

  /** The most jobs one lane has waiting now (0 when none waits). */
  maxQueuedPerLane(): number {
    let most = 0
    for (const lane of this.lanes.values()) most = Math.max(most, lane.waiting)
    return most
  }

  /**
   * Queues `run` in the lane of `owner` (any object: the hub passes a connection). A job must not
   * reject; if it does, the error is swallowed here.
   */
  push(owner: object, run: () => Promise<void>): Ticket {
    let lane = this.lanes.get(owner)
    if (!lane) {
      lane = { owner, first: undefined, last: undefined, waiting: 0, running: 0 }
      this.lanes.set(owner, lane)
    }
    const job = new Job(this, lane, run)
    job.prev = lane.last
    if (lane.last) lane.last.next = job
    else lane.first = job
    lane.last = job
    lane.waiting++
    this.queued++
    this.settle(lane)
    this.pump()
    return job
  }

  /** @internal Drops `job` if it still waits (see {@link Ticket.cancel}). */
  cancel(job: Job): void {
    if (!job.queued) return
    this.unlink(job)
    this.settle(job.lane)
  }

  /** Drops every job that has not started. */
  clear(): void {
    for (const lane of [...this.lanes.values()]) {
      while (lane.first) this.unlink(lane.first)
      this.settle(lane)
    }
  }

  /** Takes a waiting job out of its lane. */
  private unlink(job: Job): void {
    const { lane } = job
    job.queued = false
    if (job.prev) job.prev.next = job.next
    else lane.first = job.next
    if (job.next) job.next.prev = job.prev
    else lane.last = job.prev
    job.prev = job.next = undefined
    lane.waiting--
    this.queued--
  }

  /** Puts `lane` in turn when it can start a job, takes it out when it cannot, forgets it when idle. */
  private settle(lane: Lane): void {
    if (lane.waiting > 0 && lane.running < this.perLane) {
      this.ready.add(lane)
      return
    }
    this.ready.delete(lane)
    if (lane.waiting === 0 && lane.running === 0) this.lanes.delete(lane.owner)
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const lane = this.ready.values().next().value
      if (lane === undefined) return
      // Its turn is taken: it goes to the back of the line (settle re-adds it at the end).
      this.ready.delete(lane)
      const job = lane.first as Job
      this.unlink(job)
      lane.running++
      this.running++
      this.settle(lane)
      const done = (): void => {
        this.running--
        lane.running--
        if (!this.ready.has(lane)) this.settle(lane)
        this.pump()
      }
      this.run(job.run).then(done, done)
    }
  }
}
