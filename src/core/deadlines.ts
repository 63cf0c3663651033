/**
 * Many deadlines of one length (every replay's timeout, every socket's first-message deadline) on
 * one timer: they all last the same, so the oldest is always the next to expire, and adding or
 * removing one costs a Map operation instead of a timer of its own.
 */
export class Deadlines<T> {
  /** Items and the time they expire, oldest first (insertion order). */
  private readonly items = new Map<T, number>()
  private timer: NodeJS.Timeout | undefined

  /**
   * @param ms - how long every deadline lasts
   * @param expire - called with an item whose deadline passed (it is removed first)
   * @param inScope - runs the timer's creation (the hub passes its own async scope, so the timer
   *   keeps no request's context alive)
   */
  constructor(
    private readonly ms: number,
    private readonly expire: (item: T) => void,
    private readonly inScope: (set: () => void) => void = (set) => set(),
  ) {}

  /** Starts `item`'s deadline: `ms` from now. */
  add(item: T): void {
    this.items.set(item, Date.now() + this.ms)
    if (this.timer === undefined) this.arm(this.ms)
  }

  /** Ends `item`'s deadline before it expires (nothing if it already did). */
  delete(item: T): void {
    this.items.delete(item)
  }

  /** Ends every deadline and stops the timer. */
  clear(): void {
    this.items.clear()
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private arm(delay: number): void {
    this.inScope(() => {
      this.timer = setTimeout(() => this.fire(), delay).unref()
    })
  }

  private fire(): void {
    this.timer = undefined
    const now = Date.now()
    for (const [item, deadline] of this.items) {
      if (deadline > now) {
        this.arm(deadline - now)
        return
      }
      this.items.delete(item)
      this.expire(item)
    }
  }
}
