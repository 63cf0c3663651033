/**
 * Credentials that expire (`credentialsExpireAt`): the `reauth` message some time before, the
 * re-check of every subscription at expiry, and the client's answers (a fresh `auth`, or for a cookie
 * session a new socket). Rules about time run through the seam (fake sockets, Jest's fake clock);
 * the client's round trips run on real sockets and wait for events, never for a delay.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import { createClient, type Client } from '../src/client'
import { Hub } from '../src/core/hub'
import { POLICY, type HubOptions, type Logger } from '../src/core/options'
import type { UpgradeRequest } from '../src/core/replay'
import { createHub } from '../src/node'
import { FRAMEWORKS, startFixture } from './helpers/apps'
import { FakeSocket, settle, upgradeRequest } from './helpers/fake'
import { TestClient } from './helpers/tclient'

const T0 = Date.UTC(2030, 0, 1)
const MINUTE = 60_000

/** A token that says when it expires: `exp-<epoch ms>` (as a JWT's `exp` would). */
const token = (expiresAt: number): string => `exp-${expiresAt}`
const expiryOf = (request: UpgradeRequest): number | undefined => {
  const match = /^Bearer exp-(\d+)$/.exec(String(request.headers.authorization ?? ''))
  return match ? Number(match[1]) : undefined
}

/**
 * A hub on an app with two resources: `/private`, whose GET refuses a missing or expired token
 * with 401, and `/public`, which answers everyone. `version.x` changes each state.
 */
function app(options: HubOptions = { credentialsExpireAt: expiryOf }) {
  const version = { private: 0, public: 0 }
  const server = http.createServer((req, res) => {
    const expires = /^Bearer exp-(\d+)$/.exec(req.headers.authorization ?? '')
    if (req.url === '/private' && !(expires && Number(expires[1]) > Date.now())) {
      res.statusCode = 401
      res.end()
      return
    }
    const n = req.url === '/private' ? version.private : req.url === '/public' ? version.public : undefined
    if (n === undefined) {
      res.statusCode = 404
      res.end()
      return
    }
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ n }))
  })
  const hub = new Hub(options)
  hub.attach(server)
  const connect = (): FakeSocket => {
    const socket = new FakeSocket()
    socket.events = hub.opened(socket, upgradeRequest())
    return socket
  }
  return { hub, version, connect }
}

async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !predicate(); i++) await settle(1)
  if (!predicate()) throw new Error('condition not met')
}

describe('credentials that expire, through the seam', () => {
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] })
    jest.setSystemTime(T0)
  })
  afterEach(() => jest.useRealTimers())

  it('sends reauth the lead time before expiry: 60 s, or half the lifetime left when shorter', async () => {
    const { hub, connect } = app()
    const long = connect()
    long.message({ type: 'auth', token: token(T0 + 10 * MINUTE) })
    const short = connect()
    short.message({ type: 'auth', token: token(T0 + 10_000) })
    jest.advanceTimersByTime(5000 - 1)
    expect(short.of('reauth')).toHaveLength(0)
    jest.advanceTimersByTime(1)
    expect(short.of('reauth')).toHaveLength(1)
    jest.advanceTimersByTime(10 * MINUTE - POLICY.reauthLeadMs - 5000 - 1)
    expect(long.of('reauth')).toHaveLength(0)
    jest.advanceTimersByTime(1)
    expect(long.of('reauth')).toEqual([{ type: 'reauth' }])
    expect(short.of('reauth')).toHaveLength(1)
    await hub.close()
  })

  it('a new auth with a later expiry cancels the re-check and schedules the next reauth', async () => {
    const { hub, connect } = app()
    const socket = connect()
    socket.message({ type: 'auth', token: token(T0 + 10 * MINUTE) })
    socket.message({ type: 'subscribe', path: '/private' })
    await until(() => socket.of('data').length === 1)
    jest.advanceTimersByTime(10 * MINUTE - POLICY.reauthLeadMs)
    expect(socket.of('reauth')).toHaveLength(1)
    socket.message({ type: 'auth', token: token(T0 + 60 * MINUTE) })
    await until(() => socket.of('subscribed').length === 1)
    const replays = hub.stats().replays
    // Past the old expiry: no re-check (no replay), the subscription stays.
    jest.advanceTimersByTime(POLICY.reauthLeadMs + MINUTE)
    await settle()
    expect(hub.stats().replays).toBe(replays)
    expect(socket.of('error')).toEqual([])
    expect(socket.of('reauth')).toHaveLength(1)
    // The next reauth comes the lead time before the new expiry.
    jest.advanceTimersByTime(60 * MINUTE - 11 * MINUTE - POLICY.reauthLeadMs)
    expect(socket.of('reauth')).toHaveLength(2)
    await hub.close()
  })

  it('without a new auth, at expiry every subscription is re-checked: the refused end with unauthorized, the others go on', async () => {
    const { hub, version, connect } = app()
    const socket = connect()
    socket.message({ type: 'auth', token: token(T0 + 10 * MINUTE) })
    socket.message({ type: 'subscribe', path: '/private' })
    socket.message({ type: 'subscribe', path: '/public' })
    await until(() => socket.of('data').length === 2)
    jest.advanceTimersByTime(10 * MINUTE - 1)
    await settle()
    expect(socket.of('error')).toEqual([])
    jest.advanceTimersByTime(1)
    await until(() => socket.of('error').length === 1 && socket.of('subscribed').length === 1)
    expect(socket.of('error')).toEqual([
      { type: 'error', code: 'unauthorized', message: expect.any(String), path: '/private', status: 401 },
    ])
    expect(socket.of('subscribed')).toEqual([
      { type: 'subscribed', path: '/public', version: expect.any(String) },
    ])
    // Later changes reach the subscription that went on, and only it.
    const frames = socket.frames.length
    version.private++
    version.public++
    hub.notify('/private')
    hub.notify('/public')
    await until(() => socket.frames.length > frames)
    await settle()
    expect(socket.frames.slice(frames)).toEqual([
      expect.objectContaining({ type: 'data', path: '/public', json: { n: 1 } }),
    ])
    expect(socket.closedWith).toBeUndefined()
    await hub.close()
  })

  it('attack: a client that ignores reauth gets no data of the path after expiry, and cannot subscribe again', async () => {
    const { hub, version, connect } = app()
    const socket = connect()
    socket.message({ type: 'auth', token: token(T0 + 10 * MINUTE) })
    socket.message({ type: 'subscribe', path: '/private' })
    await until(() => socket.of('data').length === 1)
    jest.advanceTimersByTime(10 * MINUTE)
    await until(() => socket.of('error').length === 1)
    // It keeps the socket open, ignores `reauth`, and tries again with the expired token.
    for (let n = 1; n <= 5; n++) {
      version.private = n
      hub.notify('/private')
      await settle()
    }
    socket.message({ type: 'subscribe', path: '/private' })
    socket.message({ type: 'auth', token: token(T0 + 10 * MINUTE) })
    await until(() => socket.of('error').length === 2)
    await settle()
    expect(socket.of('data').filter((f) => f.path === '/private')).toHaveLength(1)
    expect(socket.of('error').map((f) => [f.code, f.path, f.status])).toEqual([
      ['unauthorized', '/private', 401],
      ['unauthorized', '/private', 401],
    ])
    await hub.close()
  })

  it('no hook: no timer per socket, no reauth, subscriptions go on as before', async () => {
    for (const options of [{}, { credentialsExpireAt: () => undefined }]) {
      const { hub, version, connect } = app(options)
      // The hub's own timers (first-message deadline, replay deadlines) are there after one socket.
      const sockets = [connect()]
      let baseline = 0
      for (let i = 0; i < 3; i++) {
        const socket = sockets[i] ?? connect()
        sockets[i] = socket
        socket.message({ type: 'auth', token: token(T0 + MINUTE) })
        socket.message({ type: 'subscribe', path: '/public' })
        await until(() => socket.of('data').length === 1)
        if (i === 0) baseline = jest.getTimerCount()
      }
      expect(jest.getTimerCount()).toBe(baseline)
      jest.advanceTimersByTime(10 * MINUTE)
      version.public++
      hub.notify('/public')
      await until(() => sockets.every((s) => s.of('data').length === 2))
      for (const socket of sockets) expect(socket.of('reauth')).toEqual([])
      await hub.close()
    }
  })

  it('a timer only for sockets with an expiry, cleared when the socket closes or the hub closes', async () => {
    // What a hub leaves behind after close(), when its sockets have no expiry or do.
    const leftAfterClose = async (expire: boolean): Promise<number> => {
      jest.clearAllTimers()
      const { hub, connect } = app()
      const first = connect()
      first.message({ type: 'subscribe', path: '/public' })
      await until(() => first.of('data').length === 1)
      const baseline = jest.getTimerCount()
      const a = connect()
      const b = connect()
      if (expire) {
        a.message({ type: 'auth', token: token(T0 + MINUTE) })
        b.message({ type: 'auth', token: token(T0 + MINUTE) })
        expect(jest.getTimerCount()).toBe(baseline + 2)
        a.events.onClose(1000)
        expect(jest.getTimerCount()).toBe(baseline + 1)
      }
      await hub.close()
      return jest.getTimerCount()
    }
    const without = await leftAfterClose(false)
    expect(await leftAfterClose(true)).toBe(without)
  })

  it('a hook that throws is logged and counts as no expiry', async () => {
    const errors: unknown[] = []
    const logger: Logger = {
      debug() {},
      info() {},
      warn() {},
      error: (obj, msg) => errors.push([obj, msg]),
    }
    const { hub, version, connect } = app({
      logger,
      credentialsExpireAt: (request) => {
        if (request.headers.authorization) throw new Error('bad token')
        return undefined
      },
    })
    const other = connect()
    other.message({ type: 'subscribe', path: '/public' })
    await until(() => other.of('data').length === 1)
    const timers = jest.getTimerCount()
    const socket = connect()
    socket.message({ type: 'auth', token: token(T0 + MINUTE) })
    socket.message({ type: 'subscribe', path: '/public' })
    await until(() => socket.of('data').length === 1)
    expect(errors).toEqual([
      [expect.objectContaining({ err: expect.any(Error) }), expect.stringContaining('credentialsExpireAt')],
    ])
    expect(jest.getTimerCount()).toBe(timers)
    jest.advanceTimersByTime(10 * MINUTE)
    version.public++
    hub.notify('/public')
    await until(() => socket.of('data').length === 2)
    expect(socket.of('reauth')).toEqual([])
    expect(socket.of('error')).toEqual([])
    expect(socket.closedWith).toBeUndefined()
    await hub.close()
  })

  it('an expiry past setTimeout’s range waits in steps', async () => {
    const { hub, connect } = app({ credentialsExpireAt: expiryOf, heartbeat: { intervalMs: 2 ** 30 } })
    const socket = connect()
    const far = T0 + 40 * 24 * 60 * MINUTE // 40 days: past 2^31-1 ms
    socket.message({ type: 'auth', token: token(far) })
    jest.advanceTimersByTime(2 ** 31)
    expect(socket.of('reauth')).toEqual([])
    jest.advanceTimersByTime(far - POLICY.reauthLeadMs - T0 - 2 ** 31 - 1)
    expect(socket.of('reauth')).toEqual([])
    jest.advanceTimersByTime(1)
    expect(socket.of('reauth')).toHaveLength(1)
    await hub.close()
  })

  it('an expiry already past when learned: no reauth (it would loop); the subscriptions are refused as they are checked', async () => {
    const { hub, connect } = app()
    const socket = connect()
    socket.message({ type: 'auth', token: token(T0 - 1) })
    socket.message({ type: 'subscribe', path: '/private' })
    await until(() => socket.of('error').length === 1)
    expect(socket.of('error')[0]).toMatchObject({ code: 'unauthorized', path: '/private', status: 401 })
    jest.advanceTimersByTime(10 * MINUTE)
    expect(socket.of('reauth')).toEqual([])
    await hub.close()
  })
})

// ---------------------------------------------------------------------------------------------
// The client, on real sockets

describe('credentials that expire, the listenjs client', () => {
  let server: http.Server
  let hub: ReturnType<typeof createHub>
  let client: Client | undefined
  const state = { n: 0 }

  afterEach(async () => {
    client?.close()
    await hub.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  /** A hub whose `/me` answers the caller's credentials (a bearer token or a `session` cookie). */
  async function start(credentialsExpireAt: HubOptions['credentialsExpireAt']): Promise<string> {
    hub = createHub({ credentialsExpireAt })
    server = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ auth: req.headers.authorization ?? req.headers.cookie, n: state.n }))
    })
    hub.attach(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/listen`
  }

  it('with an auth option: answers reauth with a fresh token on the same socket', async () => {
    const seen: string[] = []
    let calls = 0
    const url = await start((request) => {
      seen.push(String(request.headers.authorization))
      return expiryOf(request)
    })
    const connects: string[] = []
    hub.on('connect', (event) => connects.push(event.id))
    // The first token expires in 400 ms (reauth after 200 ms), the next one in an hour.
    const auth = (): string => token(Date.now() + (++calls === 1 ? 400 : 60 * MINUTE))
    client = createClient({ url, WebSocket, auth })
    const values: unknown[] = []
    const errors: unknown[] = []
    await client.listen('/me', (value) => values.push(value), { onError: (e) => errors.push(e) }).ready
    await until2(() => seen.length === 3)
    expect(calls).toBe(2)
    // At the upgrade (no token), after the first `auth`, after the second (sent unasked for).
    const expiries = seen.map((authorization) => expiryOf({ headers: { authorization } } as never))
    expect(expiries[0]).toBeUndefined()
    expect(expiries[1]).toBeLessThan(Date.now() + 1000)
    expect(expiries[2]).toBeGreaterThan(Date.now() + MINUTE)
    // The subscription was checked again with the fresh token, on the same socket.
    await until2(() => values.length === 2)
    expect(values[1]).toEqual({ auth: seen[2], n: 0 })
    expect(connects).toHaveLength(1)
    expect(errors).toEqual([])
  })

  it('a cookie session: reconnects on reauth (fresh cookies) and keeps its listeners', async () => {
    // The session store: the first session ends in 400 ms (reauth after 200 ms); the browser has a
    // rotated cookie by then.
    const sessions = new Map<string, number>([['one', Date.now() + 400]])
    let cookie = 'session=one'
    class CookieSocket extends WebSocket {
      constructor(address: string, protocols: string | string[]) {
        super(address, protocols, { headers: { cookie } })
      }
    }
    const url = await start((request) => sessions.get(String(request.headers.cookie).slice(8)))
    const connects: string[] = []
    hub.on('connect', (event) => connects.push(event.id))
    client = createClient({ url, WebSocket: CookieSocket })
    const values: unknown[] = []
    await client.listen('/me', (value) => values.push(value)).ready
    expect(values).toEqual([{ auth: 'session=one', n: 0 }])
    sessions.set('two', Date.now() + 60 * MINUTE)
    cookie = 'session=two'
    await until2(() => values.length === 2)
    expect(values[1]).toEqual({ auth: 'session=two', n: 0 })
    expect(connects).toHaveLength(2)
    expect(client.status()).toBe('open')
    expect(hub.stats().connections).toBe(1)
    // The same listener goes on receiving changes on the new socket.
    state.n = 1
    hub.notify('/me')
    await until2(() => values.length === 3)
    expect(values[2]).toEqual({ auth: 'session=two', n: 1 })
  })
})

/** Waits for `predicate` on real sockets: event-loop turns, then short timer ticks (no fixed delay). */
async function until2(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !predicate(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  if (!predicate()) throw new Error('condition not met')
}

describe.each(FRAMEWORKS)('credentials that expire, %s adapter', (framework) => {
  it('reauth before expiry; a socket that ignores it loses what its credentials no longer open', async () => {
    // Alice's token lives 400 ms from each `auth` (real time: this checks the wiring, the rules are
    // checked above with a fake clock).
    const fixture = await startFixture(framework, {
      hub: {
        credentialsExpireAt: (request) =>
          request.headers.authorization === 'Bearer alice-token' ? Date.now() + 400 : undefined,
      },
    })
    const raw = await TestClient.connect(fixture.wsUrl)
    try {
      raw.send({ type: 'auth', token: 'alice-token' })
      raw.subscribe('/private')
      expect(await raw.next()).toMatchObject({ type: 'data', path: '/private' })
      expect(await raw.next()).toEqual({ type: 'reauth' })
      // Her session ends on the server meanwhile; the socket sends no fresh token.
      fixture.state.privateRevoked = true
      expect(await raw.next()).toMatchObject({ type: 'error', code: 'unauthorized', path: '/private' })
    } finally {
      await raw.close()
      await fixture.close()
    }
  })
})
