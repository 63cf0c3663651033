/**
 * The replay scheduler's rules, deterministically: jobs are promises the test settles by hand, so
 * the order in which lanes take turns is observed exactly, with no timers.
 */
import { FairQueue } from '../src/core/scheduler'

/** A job that records when it starts and finishes when the test says so. */
function harness(concurrency: number, perLane: number) {
  const started: string[] = []
  const finishers = new Map<string, () => void>()
  const queue = new FairQueue(concurrency, perLane, (job) => job())
  const job = (name: string) => () =>
    new Promise<void>((resolve) => {
      started.push(name)
      finishers.set(name, resolve)
    })
  const finish = async (name: string): Promise<void> => {
    finishers.get(name)?.()
    // Let the queue's `finally` run and start the next job.
    for (let i = 0; i < 5; i++) await Promise.resolve()
  }
  return { queue, started, job, finish }
}

describe('FairQueue', () => {
  it('lets connections take turns: a backlog of 100 delays another connection by one turn', async () => {
    const { queue, started, job, finish } = harness(1, 1)
    const attacker = {}
    const legit = {}
    for (let i = 0; i < 100; i++) queue.push(attacker, job(`a${i}`))
    queue.push(legit, job('legit'))
    expect(started).toEqual(['a0'])
    await finish('a0')
    expect(started).toEqual(['a0', 'legit'])
    await finish('legit')
    expect(started).toEqual(['a0', 'legit', 'a1'])
  })

  it('never gives one connection more than perLane slots, even when the others are idle', async () => {
    const { queue, started, job, finish } = harness(8, 2)
    const hung = {}
    for (let i = 0; i < 10; i++) queue.push(hung, job(`h${i}`))
    expect(started).toEqual(['h0', 'h1'])
    expect(queue.inFlight).toBe(2)
    expect(queue.size).toBe(8)
    // Another connection starts at once: the hung lane holds only its own two slots.
    queue.push({}, job('other'))
    expect(started).toEqual(['h0', 'h1', 'other'])
    await finish('h0')
    expect(started.at(-1)).toBe('h2')
  })

  it('cancels a queued job at once and forgets an idle lane', async () => {
    const { queue, started, job, finish } = harness(1, 1)
    const a = {}
    queue.push(a, job('first'))
    const tickets = Array.from({ length: 50 }, (_, i) => queue.push(a, job(`churn${i}`)))
    expect(queue.size).toBe(50)
    expect(queue.maxQueuedPerLane()).toBe(50)
    for (const ticket of tickets) ticket.cancel()
    tickets[0]!.cancel() // twice: nothing more
    expect(queue.size).toBe(0)
    expect(queue.maxQueuedPerLane()).toBe(0)
    await finish('first')
    expect(started).toEqual(['first'])
    expect(queue.inFlight).toBe(0)
  })

  it('cancelling a started job does nothing; clear drops only what waits', async () => {
    const { queue, started, job, finish } = harness(1, 1)
    const ticket = queue.push({}, job('running'))
    queue.push({}, job('waiting'))
    ticket.cancel()
    expect(queue.inFlight).toBe(1)
    queue.clear()
    expect(queue.size).toBe(0)
    await finish('running')
    expect(started).toEqual(['running'])
  })

  it('serves lanes in the order they became ready, round after round', async () => {
    const { queue, started, job, finish } = harness(1, 1)
    const lanes = [{}, {}, {}]
    lanes.forEach((lane, l) => {
      for (let i = 0; i < 2; i++) queue.push(lane, job(`${l}.${i}`))
    })
    for (let i = 0; i < 6; i++) await finish(started.at(-1)!)
    expect(started).toEqual(['0.0', '1.0', '2.0', '0.1', '1.1', '2.1'])
  })
})
