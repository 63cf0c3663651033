/**
 * The core's rules through its seam, deterministically: a fake socket handed over with
 * `hub.opened()`, GET answers released by the test, and a fake clock where time matters. The
 * real-socket suites keep their end-to-end role; these pin the rules themselves.
 */
import { CloseCode } from '../src/core/protocol'
import { POLICY, PUBLIC } from '../src/core/options'
import http from 'node:http'
import { Hub } from '../src/core/hub'
import { FakeSocket, fakeHub, settle, upgradeRequest } from './helpers/fake'

async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !predicate(); i++) await settle(1)
  if (!predicate()) throw new Error('condition not met')
}

describe('through the seam', () => {
  it('welcomes a socket with its id and the heartbeat it will get', () => {
    const { hub, connect } = fakeHub({ heartbeat: { intervalMs: 1000, timeoutMs: 500 } })
    const socket = connect()
    expect(socket.frames[0]).toMatchObject({
      type: 'welcome',
      heartbeat: { intervalMs: 1000, timeoutMs: 500 },
    })
    expect(hub.stats().connections).toBe(1)
    socket.events.onClose(1000)
    expect(hub.stats().connections).toBe(0)
    void hub.close()
  })

  it('never sends a state older than one the subscriber already got', async () => {
    const { hub, state, held, control, connect } = fakeHub()
    state.set('/a', { n: 0 })
    const socket = connect()
    socket.message({ type: 'subscribe', path: '/a' })
    await until(() => socket.of('data').length === 1)
    // A change: its replay starts and is held.
    control.hold = true
    state.set('/a', { n: 1 })
    hub.notify('/a')
    await until(() => held.length === 1)
    // Meanwhile an explicit payload, newer than that replay, reaches the subscriber.
    hub.notify('/a', { n: 2 })
    expect(socket.of('data').at(-1)).toMatchObject({ json: { n: 2 } })
    // The older replay answers now: its state is never sent.
    held.shift()!.release()
    await settle()
    expect(socket.of('data').map((f) => (f.json as { n: number }).n)).toEqual([0, 2])
    await hub.close()
  })

  it('coalesces changes within a turn into one replay', async () => {
    const { hub, state, connect } = fakeHub()
    state.set('/a', { n: 0 })
    const socket = connect()
    socket.message({ type: 'subscribe', path: '/a' })
    await until(() => socket.of('data').length === 1)
    const before = hub.stats().replays
    for (let n = 1; n <= 10; n++) {
      state.set('/a', { n })
      hub.notify('/a')
    }
    await until(() => socket.of('data').length === 2)
    expect(hub.stats().replays - before).toBe(1)
    expect(socket.of('data')[1]).toMatchObject({ json: { n: 10 } })
    await hub.close()
  })

  it('parks a slow socket’s frames newest per path and sends them when it drains', async () => {
    const { hub, state, connect } = fakeHub({ limits: { softPendingBytes: 100, hardPendingBytes: 10_000 } })
    state.set('/a', { n: 0 })
    state.set('/b', { n: 0 })
    const socket = connect()
    socket.message({ type: 'subscribe', path: '/a' })
    socket.message({ type: 'subscribe', path: '/b' })
    await until(() => socket.of('data').length === 2)
    socket.buffered = 1000
    for (const [path, n] of [
      ['/a', 1],
      ['/b', 1],
      ['/a', 2],
    ] as const) {
      state.set(path, { n })
      hub.notify(path)
      await until(() => hub.stats().replaysInFlight + hub.stats().replaysQueued === 0)
      await settle()
    }
    expect(socket.of('data')).toHaveLength(2)
    expect(hub.stats().collapsed).toBe(1)
    socket.buffered = 0
    socket.events.onDrain()
    expect(
      socket
        .of('data')
        .slice(2)
        .map((f) => [f.path, (f.json as { n: number }).n]),
      // In the order their newest state was parked: a collapsed path moves behind the others.
    ).toEqual([
      ['/b', 1],
      ['/a', 2],
    ])
    expect(hub.stats().pendingBytes).toBe(0)
    await hub.close()
  })

  it('closes a socket past the hard limit with 4509 and terminates it after the grace period', async () => {
    const { hub, state, connect } = fakeHub({ limits: { softPendingBytes: 10, hardPendingBytes: 100 } })
    state.set('/a', { n: 0, padding: 'x'.repeat(200) })
    const socket = connect()
    socket.buffered = 50
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] })
    try {
      socket.message({ type: 'subscribe', path: '/a' })
      await until(() => socket.closedWith !== undefined)
      expect(socket.closedWith).toEqual({ code: CloseCode.SlowConsumer, reason: 'too far behind' })
      expect(hub.stats().slowClosed).toBe(1)
      expect(socket.terminated).toBe(false)
      jest.advanceTimersByTime(POLICY.slowCloseGraceMs)
      expect(socket.terminated).toBe(true)
    } finally {
      jest.useRealTimers()
      await hub.close()
    }
  })

  it('closes a socket whose message could not be handled with 1011, and logs it; others go on', async () => {
    const errors: unknown[] = []
    const logger = { debug() {}, info() {}, warn() {}, error: (o: unknown) => errors.push(o) }
    const { hub, state, connect } = fakeHub({ logger })
    state.set('/a', { n: 0 })
    const broken = connect()
    const healthy = connect()
    broken.send = () => {
      throw new Error('socket broke')
    }
    broken.message({ type: 'subscribe', path: 'no-slash' })
    expect(broken.closedWith).toEqual({ code: CloseCode.InternalError, reason: 'internal error' })
    expect(errors).toHaveLength(1)
    healthy.message({ type: 'subscribe', path: '/a' })
    await until(() => healthy.of('data').length === 1)
    await hub.close()
  })

  it('refuses a subscription when the GET answers 404, keeping the socket', async () => {
    const { hub, connect } = fakeHub()
    const socket = connect()
    socket.message({ type: 'subscribe', path: '/missing' })
    await until(() => socket.of('error').length === 1)
    expect(socket.of('error')[0]).toMatchObject({ code: 'not_found', status: 404, path: '/missing' })
    expect(socket.closedWith).toBeUndefined()
    expect(hub.stats().subscriptions).toBe(0)
    await hub.close()
  })
})

describe('with a fake clock', () => {
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }))
  afterEach(() => jest.useRealTimers())

  it('pings every interval and terminates a socket that does not answer within the timeout', async () => {
    const { hub, connect } = fakeHub({ heartbeat: { intervalMs: 1000, timeoutMs: 300 } })
    const quiet = connect()
    const lively = connect()
    jest.advanceTimersByTime(1000)
    expect(quiet.of('ping')).toHaveLength(1)
    expect(lively.of('ping')).toHaveLength(1)
    lively.message({ type: 'pong' })
    jest.advanceTimersByTime(299)
    expect(quiet.terminated).toBe(false)
    jest.advanceTimersByTime(1)
    expect(quiet.terminated).toBe(true)
    expect(lively.terminated).toBe(false)
    await hub.close()
  })

  it('closes a socket that sends nothing within firstMessageMs with 4407, and only that one', async () => {
    const { hub, connect } = fakeHub({ limits: { firstMessageMs: 500 } })
    const silent = connect()
    jest.advanceTimersByTime(200)
    const speaking = connect()
    speaking.message({ type: 'pong' })
    jest.advanceTimersByTime(299)
    expect(silent.closedWith).toBeUndefined()
    jest.advanceTimersByTime(1)
    expect(silent.closedWith).toEqual({ code: CloseCode.FirstMessageTimeout, reason: 'no message' })
    jest.advanceTimersByTime(10_000)
    expect(speaking.closedWith).toBeUndefined()
    await hub.close()
  })

  it('allows messageBurst messages at once, refills at messagesPerSecond, and closes with 4429 past it', async () => {
    const { hub, connect } = fakeHub({ limits: { messagesPerSecond: 10, messageBurst: 5 } })
    const socket = connect()
    for (let i = 0; i < 5; i++) socket.message({ type: 'pong' })
    expect(socket.closedWith).toBeUndefined()
    jest.advanceTimersByTime(100) // one token back
    socket.message({ type: 'pong' })
    expect(socket.closedWith).toBeUndefined()
    socket.message({ type: 'pong' })
    expect(socket.closedWith).toEqual({ code: CloseCode.TooManyMessages, reason: 'too many messages' })
    await hub.close()
  })

  it('answers a ping frame within the rate, and closes with 4429 past it', async () => {
    const { hub, connect } = fakeHub({ limits: { messagesPerSecond: 1, messageBurst: 2 } })
    const socket = connect()
    expect(socket.events.onPing()).toBe(true)
    expect(socket.events.onPing()).toBe(true)
    expect(socket.events.onPing()).toBe(false)
    expect(socket.closedWith?.code).toBe(CloseCode.TooManyMessages)
    await hub.close()
  })
})

describe('a body that claims to be JSON but is not one JSON value', () => {
  it.each([['1,"version":"forged","origin":"someone"'], ['{"a":1},"snapshot":false'], ['{"a":1']])(
    'is delivered as text, never spliced into the frame: %s',
    async (body) => {
      const server = http.createServer((_req, res) => {
        res.setHeader('content-type', 'application/json')
        res.end(body)
      })
      const hub = new Hub()
      hub.attach(server)
      const socket = new FakeSocket()
      socket.events = hub.opened(socket, upgradeRequest())
      socket.message({ type: 'subscribe', path: '/a' })
      await until(() => socket.of('data').length === 1)
      const [frame] = socket.of('data')
      expect(frame).toEqual({
        type: 'data',
        path: '/a',
        version: expect.any(String),
        snapshot: true,
        text: body,
      })
      expect(frame?.version).not.toBe('forged')
      await hub.close()
    },
  )
})

describe("a subscription that waits for a missing resource (missing: 'wait')", () => {
  const wait = (path: string) => ({ type: 'subscribe', path, missing: 'wait' })

  it('is kept as gone, gets the resource when it is created, and gone again when it is deleted', async () => {
    const { hub, state, connect } = fakeHub()
    const socket = connect()
    socket.message(wait('/a'))
    await until(() => socket.frames.length === 2)
    expect(socket.frames[1]).toEqual({ type: 'gone', path: '/a', status: 404 })
    expect(hub.stats().subscriptions).toBe(1)
    state.set('/a', { n: 1 })
    hub.notify('/a')
    await until(() => socket.of('data').length === 1)
    expect(socket.of('data')[0]).toMatchObject({ path: '/a', json: { n: 1 } })
    expect(socket.of('data')[0]?.snapshot).toBeUndefined()
    state.delete('/a')
    hub.notify('/a')
    await until(() => socket.of('gone').length === 2)
    state.set('/a', { n: 1 })
    hub.notify('/a')
    // The same body as before the deletion is news again.
    await until(() => socket.of('data').length === 2)
    expect(socket.of('error')).toEqual([])
    expect(hub.stats().subscriptions).toBe(1)
    await hub.close()
  })

  it('shares a snapshot replay with a subscription that does not wait, which is refused as before', async () => {
    const { hub, connect } = fakeHub()
    const waiting = connect()
    const plain = connect()
    const before = hub.stats().replays
    waiting.message(wait('/a'))
    plain.message({ type: 'subscribe', path: '/a' })
    await until(() => waiting.frames.length === 2 && plain.frames.length === 2)
    expect(hub.stats().replays - before).toBe(1)
    expect(waiting.frames[1]).toMatchObject({ type: 'gone', status: 404 })
    expect(plain.frames[1]).toMatchObject({ type: 'error', code: 'not_found', status: 404, path: '/a' })
    expect(hub.stats().subscriptions).toBe(1)
    await hub.close()
  })

  it('in an identify group, waits in its own group and shares the group again once the resource exists', async () => {
    const { hub, state, connect } = fakeHub({ identify: () => 'team' })
    const alice = connect({ cookie: 'session=alice' })
    const bob = connect({ cookie: 'session=bob' })
    alice.message(wait('/a'))
    bob.message(wait('/a'))
    await until(() => alice.of('gone').length === 1 && bob.of('gone').length === 1)
    // Nothing is left behind when a waiting subscriber leaves (no empty group keeps the resource).
    const carol = connect({ cookie: 'session=carol' })
    carol.message(wait('/a'))
    await until(() => carol.of('gone').length === 1)
    carol.message({ type: 'unsubscribe', path: '/a' })
    alice.message({ type: 'unsubscribe', path: '/a' })
    bob.message({ type: 'unsubscribe', path: '/a' })
    expect(hub.stats()).toMatchObject({ subscriptions: 0, resources: 0 })
    alice.message(wait('/a'))
    bob.message(wait('/a'))
    await until(() => alice.of('gone').length === 2 && bob.of('gone').length === 2)
    // Absent: an identify group shares only 2xx, so each is replayed with its own request.
    let before = hub.stats().replays
    state.set('/a', { n: 1 })
    hub.notify('/a')
    await until(() => alice.of('data').length === 1 && bob.of('data').length === 1)
    expect(hub.stats().replays - before).toBe(2)
    // Created: back in one group, one replay per change.
    before = hub.stats().replays
    state.set('/a', { n: 2 })
    hub.notify('/a')
    await until(() => alice.of('data').length === 2 && bob.of('data').length === 2)
    expect(hub.stats().replays - before).toBe(1)
    await hub.close()
  })

  it('in a public group, shares the absence: one replay per change for every waiting member', async () => {
    const { hub, state, connect } = fakeHub({ identify: () => PUBLIC })
    const alice = connect({ cookie: 'session=alice' })
    const bob = connect({ cookie: 'session=bob' })
    alice.message(wait('/a'))
    bob.message(wait('/a'))
    await until(() => alice.of('gone').length === 1 && bob.of('gone').length === 1)
    const before = hub.stats().replays
    state.set('/a', { n: 1 })
    hub.notify('/a')
    await until(() => alice.of('data').length === 1 && bob.of('data').length === 1)
    expect(hub.stats().replays - before).toBe(1)
    await hub.close()
  })

  it('keeps waiting through an auth message: answered gone again, not refused', async () => {
    const { hub, connect } = fakeHub()
    const socket = connect()
    socket.message(wait('/a'))
    await until(() => socket.of('gone').length === 1)
    socket.message({ type: 'auth', token: 'fresh' })
    await until(() => socket.of('gone').length === 2)
    expect(socket.of('error')).toEqual([])
    expect(hub.stats().subscriptions).toBe(1)
    await hub.close()
  })

  it('is still refused by authorize (403), and a socket that sends another value of missing is closed with 4400', async () => {
    const { hub, connect } = fakeHub({ authorize: (path) => path !== '/forbidden' })
    const socket = connect()
    socket.message(wait('/forbidden'))
    await until(() => socket.of('error').length === 1)
    expect(socket.of('error')[0]).toMatchObject({ code: 'unauthorized', status: 403, path: '/forbidden' })
    socket.message({ type: 'subscribe', path: '/a', missing: 'refuse' })
    await until(() => socket.closedWith !== undefined)
    expect(socket.closedWith?.code).toBe(CloseCode.BadMessage)
    expect(hub.stats().subscriptions).toBe(0)
    await hub.close()
  })
})
