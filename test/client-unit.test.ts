import type WsWebSocket from 'ws'
import { CloseCode, ListenjsError, SUBPROTOCOL, createClient, listen } from '../src/client/index'
import { patches } from '../src/client/patches'
import { checksum } from '../src/core/checksum'
import { SUBPROTOCOL_PATCHES } from '../src/core/protocol'
import type {
  Client,
  ClientOptions,
  Meta,
  Status,
  WebSocketConstructor,
  WebSocketLike,
} from '../src/client/index'

// Compile-time checks: both real WebSocket classes fit the client's structural type.
export const browserWebSocketFits: WebSocketConstructor | undefined = undefined as unknown as typeof WebSocket
export const wsPackageFits: WebSocketConstructor | undefined = undefined as unknown as typeof WsWebSocket

type Frame = Record<string, unknown>

class FakeSocket implements WebSocketLike {
  static instances: FakeSocket[] = []
  readyState = 0
  protocol = ''
  readonly sent: Frame[] = []
  closedWith: number | undefined
  onopen: WebSocketLike['onopen'] = null
  onmessage: WebSocketLike['onmessage'] = null
  onclose: WebSocketLike['onclose'] = null
  onerror: WebSocketLike['onerror'] = null

  constructor(
    readonly url: string,
    readonly protocols: string | string[],
  ) {
    FakeSocket.instances.push(this)
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open')
    this.sent.push(JSON.parse(data) as Frame)
  }

  close(code?: number): void {
    this.closedWith = code
    this.readyState = 3
  }

  // Test side: what the server or the network does.
  open(): void {
    this.readyState = 1
    this.protocol = SUBPROTOCOL
    this.onopen?.({})
  }

  receive(message: Frame | string): void {
    this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) })
  }

  drop(code: number): void {
    this.readyState = 3
    this.onclose?.({ code })
  }

  types(): unknown[] {
    return this.sent.map((frame) => frame.type)
  }
}

const latest = (): FakeSocket => {
  const socket = FakeSocket.instances[FakeSocket.instances.length - 1]
  if (!socket) throw new Error('no socket was created')
  return socket
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

const welcome = (intervalMs = 1000, timeoutMs = 500, id = 'c1'): Frame => ({
  type: 'welcome',
  id,
  heartbeat: { intervalMs, timeoutMs },
})
const data = (path: string, body: Frame): Frame => ({ type: 'data', path, version: 'v1', ...body })

const clients: Client[] = []
function makeClient(options: ClientOptions = {}): Client {
  const client = createClient({ url: 'ws://test/listen', WebSocket: FakeSocket, ...options })
  clients.push(client)
  return client
}

beforeEach(() => {
  jest.useFakeTimers()
  FakeSocket.instances = []
})

afterEach(() => {
  for (const client of clients.splice(0)) client.close()
  jest.restoreAllMocks()
  jest.useRealTimers()
})

describe('connection lifecycle', () => {
  test('opens no socket before the first listen, then one socket with the listenjs.v1 subprotocol', () => {
    const client = makeClient()
    expect(client.status()).toBe('closed')
    expect(FakeSocket.instances).toHaveLength(0)
    client.listen('/a', () => {})
    client.listen('/b', () => {})
    expect(FakeSocket.instances).toHaveLength(1)
    expect(latest().url).toBe('ws://test/listen')
    expect(latest().protocols).toBe(SUBPROTOCOL)
  })

  test('goes closed → connecting → open → reconnecting → open → closed', () => {
    const client = makeClient()
    const seen: Status[] = []
    client.onStatus((status) => seen.push(status))
    client.listen('/a', () => {})
    latest().open()
    latest().drop(1006)
    jest.runOnlyPendingTimers()
    latest().open()
    client.close()
    expect(seen).toEqual(['connecting', 'open', 'reconnecting', 'open', 'closed'])
    expect(client.status()).toBe('closed')
  })

  test('onStatus returns a function that stops the listener', () => {
    const client = makeClient()
    const seen: Status[] = []
    const off = client.onStatus((status) => seen.push(status))
    client.listen('/a', () => {})
    off()
    latest().open()
    expect(seen).toEqual(['connecting'])
  })

  test('turns http:// urls into ws:// urls', () => {
    const client = makeClient({ url: 'https://example.com/listen' })
    client.listen('/a', () => {})
    expect(latest().url).toBe('wss://example.com/listen')
  })

  test('ignores socket error events and acts on the close that follows', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().onerror?.({})
    expect(client.status()).toBe('open')
    latest().drop(1006)
    expect(client.status()).toBe('reconnecting')
  })
})

describe('subscriptions', () => {
  test('two listeners of one path share one subscribe message', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    client.listen('/a', () => {})
    latest().open()
    client.listen('/a', () => {})
    expect(latest().sent).toEqual([{ type: 'subscribe', path: '/a' }])
  })

  test('a listen on an open socket subscribes at once', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    client.listen('/b', () => {})
    expect(latest().sent).toEqual([
      { type: 'subscribe', path: '/a' },
      { type: 'subscribe', path: '/b' },
    ])
  })

  test('a second listener of a known path gets the stored value and meta in a microtask', async () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive(data('/a', { json: [1], snapshot: true }))
    const onData = jest.fn()
    client.listen('/a', onData)
    expect(onData).not.toHaveBeenCalled()
    await flush()
    expect(onData).toHaveBeenCalledWith([1], {
      path: '/a',
      version: 'v1',
      snapshot: true,
      kind: 'snapshot',
      own: false,
      patched: false,
    })
  })

  test('a listener removed before its microtask is not called with the stored value', async () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive(data('/a', { json: 1 }))
    const onData = jest.fn()
    client.listen('/a', onData)()
    await flush()
    expect(onData).not.toHaveBeenCalled()
  })

  test('the last unlisten of a path sends unsubscribe; the last path closes the socket with 1000', () => {
    const client = makeClient()
    const offA1 = client.listen('/a', () => {})
    const offA2 = client.listen('/a', () => {})
    const offB = client.listen('/b', () => {})
    const socket = latest()
    socket.open()
    offA1()
    expect(socket.types()).toEqual(['subscribe', 'subscribe'])
    offA2()
    expect(socket.sent[2]).toEqual({ type: 'unsubscribe', path: '/a' })
    offB()
    expect(socket.sent[3]).toEqual({ type: 'unsubscribe', path: '/b' })
    expect(socket.closedWith).toBe(1000)
    expect(client.status()).toBe('closed')
    expect(jest.getTimerCount()).toBe(0)
  })

  test('calling an unlisten twice is harmless, even after the path is listened again', () => {
    const client = makeClient()
    const off = client.listen('/a', () => {})
    latest().open()
    off()
    off()
    const onData = jest.fn()
    client.listen('/a', onData)
    off()
    expect(FakeSocket.instances).toHaveLength(2)
    latest().open()
    latest().receive(data('/a', { json: 2, snapshot: true }))
    expect(onData).toHaveBeenCalledTimes(1)
    expect(latest().sent).toEqual([{ type: 'subscribe', path: '/a' }])
  })

  test('a listen after the socket closed for being empty opens a new socket', () => {
    const client = makeClient()
    client.listen('/a', () => {})()
    expect(client.status()).toBe('closed')
    client.listen('/b', () => {})
    expect(client.status()).toBe('connecting')
    expect(FakeSocket.instances).toHaveLength(2)
    latest().open()
    expect(latest().sent).toEqual([{ type: 'subscribe', path: '/b' }])
  })
})

describe('auth', () => {
  test('sends the auth token first, before any subscribe', () => {
    const client = makeClient({ auth: 'secret' })
    client.listen('/a', () => {})
    client.listen('/b', () => {})
    latest().open()
    expect(latest().sent).toEqual([
      { type: 'auth', token: 'secret' },
      { type: 'subscribe', path: '/a' },
      { type: 'subscribe', path: '/b' },
    ])
  })

  test('awaits an auth function before subscribing, also for paths listened meanwhile', async () => {
    let resolveToken: (token: string) => void = () => {}
    const auth = jest.fn(() => new Promise<string>((resolve) => (resolveToken = resolve)))
    const client = makeClient({ auth })
    client.listen('/a', () => {})
    latest().open()
    client.listen('/b', () => {})
    expect(latest().sent).toEqual([])
    resolveToken('t1')
    await flush()
    expect(latest().sent).toEqual([
      { type: 'auth', token: 't1' },
      { type: 'subscribe', path: '/a' },
      { type: 'subscribe', path: '/b' },
    ])
  })

  test('calls the auth function again on each reconnect', async () => {
    let n = 0
    const client = makeClient({ auth: async () => `t${++n}` })
    client.listen('/a', () => {})
    latest().open()
    await flush()
    latest().drop(1006)
    jest.runOnlyPendingTimers()
    latest().open()
    await flush()
    expect(latest().sent[0]).toEqual({ type: 'auth', token: 't2' })
  })

  test('an app that closes the client from a status listener on open gets no frames sent', () => {
    const client = makeClient()
    client.onStatus((status) => {
      if (status === 'open') client.close()
    })
    client.listen('/a', () => {})
    const socket = latest()
    socket.open()
    expect(socket.sent).toEqual([])
    expect(client.status()).toBe('closed')
    expect(jest.getTimerCount()).toBe(0)
  })

  test('an auth function that throws synchronously is handled like one that rejects', async () => {
    const client = makeClient({
      auth: () => {
        throw new Error('no token')
      },
    })
    client.listen('/a', () => {})
    latest().open()
    await flush()
    expect(latest().sent).toEqual([])
    expect(client.status()).toBe('reconnecting')
  })

  test('an auth function that rejects closes the socket and reconnects with backoff', async () => {
    jest.spyOn(Math, 'random').mockReturnValue(0.5)
    const client = makeClient({ auth: () => Promise.reject(new Error('no token')) })
    client.listen('/a', () => {})
    const first = latest()
    first.open()
    await flush()
    expect(first.closedWith).toBe(1000)
    expect(first.sent).toEqual([])
    expect(client.status()).toBe('reconnecting')
    jest.advanceTimersByTime(500)
    expect(FakeSocket.instances).toHaveLength(2)
  })
})

describe('server messages', () => {
  test('delivers json, null json and text bodies with their meta', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: { n: 1 }, snapshot: true }))
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: null })
    latest().receive({ type: 'data', path: '/a', version: 'v3', text: 'hello' })
    expect(onData.mock.calls).toEqual([
      [{ n: 1 }, { path: '/a', version: 'v1', snapshot: true, kind: 'snapshot', own: false, patched: false }],
      [null, { path: '/a', version: 'v2', snapshot: false, kind: 'change', own: false, patched: false }],
      ['hello', { path: '/a', version: 'v3', snapshot: false, kind: 'change', own: false, patched: false }],
    ])
  })

  test('a listener that throws does not stop the others; the error is rethrown asynchronously', () => {
    const client = makeClient()
    const second = jest.fn()
    client.listen('/a', () => {
      throw new Error('boom')
    })
    client.listen('/a', second)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    expect(second).toHaveBeenCalledWith(1, expect.objectContaining({ path: '/a' }))
    expect(() => jest.runOnlyPendingTimers()).toThrow('boom')
  })

  test('answers ping with pong', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive({ type: 'ping' })
    expect(latest().sent[1]).toEqual({ type: 'pong' })
  })

  test('ignores a push that arrives before the answer to a subscribe (it belongs to an earlier subscription)', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: 'old', version: 'v0' }))
    expect(onData).not.toHaveBeenCalled()
    latest().receive(data('/a', { json: 'now', snapshot: true }))
    expect(onData).toHaveBeenCalledTimes(1)
    expect(onData).toHaveBeenCalledWith('now', expect.objectContaining({ kind: 'snapshot' }))
  })

  test('never delivers the version a listener already holds a second time', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive(data('/a', { json: 1 }))
    expect(onData).toHaveBeenCalledTimes(1)
  })

  test('gone calls onGone of every listener of the path and keeps them; the same body afterwards is news', () => {
    const client = makeClient()
    const onGone = jest.fn()
    const onData = jest.fn()
    client.listen('/a', onData, { onGone })
    client.listen('/a', () => {}, { onGone })
    latest().open()
    latest().receive(data('/a', { json: 'first', snapshot: true }))
    latest().receive({ type: 'gone', path: '/a', status: 404 })
    expect(onGone).toHaveBeenCalledTimes(2)
    expect(onGone).toHaveBeenCalledWith({ path: '/a', status: 404 })
    latest().receive(data('/a', { json: 'first' }))
    expect(onData).toHaveBeenLastCalledWith('first', expect.objectContaining({ kind: 'change' }))
    expect(onData).toHaveBeenCalledTimes(2)
  })

  test('ignores frames that do not parse, unknown types, errors without a path and unknown paths', () => {
    const client = makeClient()
    const onData = jest.fn()
    const onError = jest.fn()
    client.listen('/a', onData, { onError })
    latest().open()
    latest().receive('not json')
    latest().receive({ type: 'future' })
    latest().receive({ type: 'error', code: 'bad_message', message: 'bad' })
    latest().receive(data('/other', { json: 1 }))
    expect(onData).not.toHaveBeenCalled()
    expect(onError).not.toHaveBeenCalled()
    expect(client.status()).toBe('open')
  })
})

describe('refused paths', () => {
  test('an error with a path reaches onError as a ListenjsError and keeps the listeners', () => {
    const client = makeClient()
    const onError = jest.fn()
    client.listen('/secret', () => {}, { onError })
    latest().open()
    latest().receive({
      type: 'error',
      code: 'unauthorized',
      message: 'not authorized',
      path: '/secret',
      status: 403,
    })
    const error = onError.mock.calls[0]?.[0] as ListenjsError
    expect(error).toBeInstanceOf(ListenjsError)
    expect(error).toMatchObject({
      code: 'unauthorized',
      message: 'not authorized',
      status: 403,
      path: '/secret',
    })
    latest().drop(1006)
    jest.runOnlyPendingTimers()
    latest().open()
    latest().drop(CloseCode.UnsupportedProtocol)
    expect(onError).toHaveBeenLastCalledWith(expect.objectContaining({ code: 'closed', path: '/secret' }))
  })

  test('resubscribes every path after a reconnect except those refused for a permanent reason', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    client.listen('/secret', () => {})
    client.listen('/missing', () => {})
    client.listen('/flaky', () => {})
    latest().open()
    latest().receive({ type: 'error', code: 'unauthorized', message: 'x', path: '/secret', status: 403 })
    latest().receive({ type: 'error', code: 'not_found', message: 'x', path: '/missing', status: 404 })
    latest().receive({ type: 'error', code: 'failed', message: 'x', path: '/flaky', status: 500 })
    latest().drop(1006)
    jest.runOnlyPendingTimers()
    latest().open()
    expect(latest().sent).toEqual([
      { type: 'subscribe', path: '/a' },
      { type: 'subscribe', path: '/flaky' },
    ])
  })

  test('a new listen on a refused path subscribes again', () => {
    const client = makeClient()
    client.listen('/secret', () => {})
    latest().open()
    latest().receive({ type: 'error', code: 'unauthorized', message: 'x', path: '/secret', status: 403 })
    client.listen('/secret', () => {})
    expect(latest().sent).toEqual([
      { type: 'subscribe', path: '/secret' },
      { type: 'subscribe', path: '/secret' },
    ])
  })

  test('the last unlisten of a refused path sends no unsubscribe', () => {
    const client = makeClient()
    const off = client.listen('/secret', () => {})
    client.listen('/a', () => {})
    latest().open()
    latest().receive({ type: 'error', code: 'bad_path', message: 'x', path: '/secret' })
    off()
    expect(latest().types()).toEqual(['subscribe', 'subscribe'])
  })
})

describe('reconnect', () => {
  test('backoff uses full jitter below min(maxDelayMs, initialDelayMs * factor ** attempt)', () => {
    const random = jest.spyOn(Math, 'random').mockReturnValue(0.5)
    const client = makeClient({ reconnect: { initialDelayMs: 100, maxDelayMs: 1000, factor: 3 } })
    client.listen('/a', () => {})
    // Caps: 100, 300, 900, 1000, 1000; the delay is random() * cap.
    for (const cap of [100, 300, 900, 1000, 1000]) {
      const count = FakeSocket.instances.length
      latest().drop(1006)
      jest.advanceTimersByTime(cap / 2 - 1)
      expect(FakeSocket.instances).toHaveLength(count)
      jest.advanceTimersByTime(1)
      expect(FakeSocket.instances).toHaveLength(count + 1)
    }
    random.mockReturnValue(0)
    latest().drop(1006)
    jest.advanceTimersByTime(0)
    expect(client.status()).toBe('reconnecting')
    expect(FakeSocket.instances).toHaveLength(7)
  })

  test('without jitter the backoff waits the cap itself', () => {
    const client = makeClient({ reconnect: { initialDelayMs: 100, maxDelayMs: 250, jitter: false } })
    client.listen('/a', () => {})
    for (const cap of [100, 200, 250]) {
      const count = FakeSocket.instances.length
      latest().drop(1011)
      jest.advanceTimersByTime(cap - 1)
      expect(FakeSocket.instances).toHaveLength(count)
      jest.advanceTimersByTime(1)
      expect(FakeSocket.instances).toHaveLength(count + 1)
    }
  })

  test('a welcome resets the attempt counter', () => {
    const client = makeClient({ reconnect: { initialDelayMs: 100, jitter: false } })
    client.listen('/a', () => {})
    latest().drop(1006)
    jest.advanceTimersByTime(100)
    latest().drop(1006)
    jest.advanceTimersByTime(200)
    latest().open()
    latest().receive(welcome())
    latest().drop(1006)
    jest.advanceTimersByTime(99)
    expect(FakeSocket.instances).toHaveLength(3)
    jest.advanceTimersByTime(1)
    expect(FakeSocket.instances).toHaveLength(4)
  })

  test("a server restart ('now' policy) reconnects after a random delay below initialDelayMs", () => {
    jest.spyOn(Math, 'random').mockReturnValue(0.25)
    const client = makeClient({ reconnect: { initialDelayMs: 400 } })
    client.listen('/a', () => {})
    latest().open()
    latest().drop(CloseCode.ServiceRestart)
    jest.advanceTimersByTime(99)
    expect(FakeSocket.instances).toHaveLength(1)
    jest.advanceTimersByTime(1)
    expect(FakeSocket.instances).toHaveLength(2)
  })

  test("a close for abuse ('slow' policy) waits maxDelayMs", () => {
    jest.spyOn(Math, 'random').mockReturnValue(0)
    const client = makeClient({ reconnect: { maxDelayMs: 5000 } })
    client.listen('/a', () => {})
    latest().open()
    latest().drop(CloseCode.TooManyMessages)
    jest.advanceTimersByTime(4999)
    expect(FakeSocket.instances).toHaveLength(1)
    jest.advanceTimersByTime(1)
    expect(FakeSocket.instances).toHaveLength(2)
  })

  test("a 'never' close code gives up: status closed and onError 'closed' for every listener", () => {
    const client = makeClient()
    const onError = jest.fn()
    client.listen('/a', () => {}, { onError })
    client.listen('/b', () => {}, { onError })
    latest().open()
    latest().drop(CloseCode.UnsupportedProtocol)
    expect(client.status()).toBe('closed')
    expect(onError).toHaveBeenCalledTimes(2)
    expect(
      onError.mock.calls.map(([error]) => [(error as ListenjsError).code, (error as ListenjsError).path]),
    ).toEqual([
      ['closed', '/a'],
      ['closed', '/b'],
    ])
    expect(jest.getTimerCount()).toBe(0)
  })

  test('listeners dropped by giving up are not resubscribed by a later listen', () => {
    const client = makeClient({ reconnect: false })
    const off = client.listen('/a', () => {})
    latest().open()
    latest().drop(1006)
    client.listen('/b', () => {})
    off()
    latest().open()
    expect(latest().sent).toEqual([{ type: 'subscribe', path: '/b' }])
  })

  test('reconnect: false gives up on the first unexpected close', () => {
    const client = makeClient({ reconnect: false })
    const onError = jest.fn()
    client.listen('/a', () => {}, { onError })
    latest().open()
    latest().drop(1006)
    expect(client.status()).toBe('closed')
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: 'closed' }))
    expect(jest.getTimerCount()).toBe(0)
  })

  test('gives up once the retries are used without a welcome', () => {
    const client = makeClient({ reconnect: { retries: 2, initialDelayMs: 10, jitter: false } })
    const onError = jest.fn()
    client.listen('/a', () => {}, { onError })
    latest().drop(1006)
    jest.runOnlyPendingTimers()
    latest().drop(1006)
    jest.runOnlyPendingTimers()
    expect(client.status()).toBe('reconnecting')
    latest().drop(1006)
    expect(client.status()).toBe('closed')
    expect(FakeSocket.instances).toHaveLength(3)
    expect(onError).toHaveBeenCalledTimes(1)
  })
})

describe('heartbeat', () => {
  test('closes with 4408 and reconnects after interval + timeout without any message', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    const socket = latest()
    socket.open()
    socket.receive(welcome(1000, 500))
    jest.advanceTimersByTime(1499)
    expect(socket.closedWith).toBeUndefined()
    jest.advanceTimersByTime(1)
    expect(socket.closedWith).toBe(4408)
    expect(client.status()).toBe('reconnecting')
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(2)
  })

  test('every inbound message re-arms the silence timer', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    const socket = latest()
    socket.open()
    socket.receive(welcome(1000, 500))
    jest.advanceTimersByTime(1000)
    socket.receive({ type: 'ping' })
    jest.advanceTimersByTime(1000)
    socket.receive(data('/a', { json: 1 }))
    jest.advanceTimersByTime(1499)
    expect(socket.closedWith).toBeUndefined()
    jest.advanceTimersByTime(1)
    expect(socket.closedWith).toBe(4408)
  })

  test('a timer that fires late (a throttled or frozen tab) waits for the frames queued meanwhile', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    const socket = latest()
    socket.open()
    socket.receive(welcome(1000, 500))
    // The page was frozen for a minute: the clock moved, the timer did not run.
    jest.setSystemTime(Date.now() + 60_000)
    jest.advanceTimersByTime(1500)
    expect(socket.closedWith).toBeUndefined()
    // The ping the server sent meanwhile is handled after the late timer: the socket is alive.
    socket.receive({ type: 'ping' })
    jest.advanceTimersByTime(1499)
    expect(socket.closedWith).toBeUndefined()
    expect(client.status()).toBe('open')
    // Real silence still ends it.
    jest.advanceTimersByTime(5000)
    expect(socket.closedWith).toBe(4408)
  })

  test('heartbeat: false turns silence detection off', () => {
    const client = makeClient({ heartbeat: false })
    client.listen('/a', () => {})
    latest().open()
    latest().receive(welcome(1000, 500))
    expect(jest.getTimerCount()).toBe(0)
    jest.advanceTimersByTime(60_000)
    expect(client.status()).toBe('open')
  })
})

describe('close()', () => {
  test('clears every timer: silence timer armed', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive(welcome())
    expect(jest.getTimerCount()).toBe(1)
    client.close()
    expect(latest().closedWith).toBe(1000)
    expect(jest.getTimerCount()).toBe(0)
  })

  test('clears every timer: reconnect pending', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().drop(1006)
    expect(jest.getTimerCount()).toBe(1)
    client.close()
    expect(client.status()).toBe('closed')
    expect(jest.getTimerCount()).toBe(0)
  })

  test('drops the listeners without calling onError; a late message from the old socket is ignored', () => {
    const client = makeClient()
    const onData = jest.fn()
    const onError = jest.fn()
    client.listen('/a', onData, { onError })
    const socket = latest()
    socket.open()
    client.close()
    socket.receive(data('/a', { json: 1 }))
    socket.drop(1006)
    expect(onData).not.toHaveBeenCalled()
    expect(onError).not.toHaveBeenCalled()
    expect(client.status()).toBe('closed')
  })
})

describe('options', () => {
  test('needs a url outside a browser', () => {
    expect(() => createClient({ WebSocket: FakeSocket })).toThrow(
      expect.objectContaining({
        code: 'invalid_option',
        message: 'an absolute url is required outside a browser',
      }),
    )
  })

  test('needs a WebSocket class when there is no global one', () => {
    // Node 22 and later have a global WebSocket: take it away for this test.
    const global = globalThis as { WebSocket?: unknown }
    const saved = global.WebSocket
    delete global.WebSocket
    try {
      expect(() => createClient({ url: 'ws://x/listen' })).toThrow(
        expect.objectContaining({ code: 'invalid_option' }),
      )
    } finally {
      if (saved !== undefined) global.WebSocket = saved
    }
  })

  test('refuses a url that is not ws(s) or http(s)', () => {
    expect(() => createClient({ url: 'ftp://x', WebSocket: FakeSocket })).toThrow(/url must start with/)
  })

  test.each([
    [{ initialDelayMs: -1 }, 'reconnect.initialDelayMs'],
    [{ maxDelayMs: Infinity }, 'reconnect.maxDelayMs'],
    [{ factor: 0.5 }, 'reconnect.factor'],
    [{ retries: Number.NaN }, 'reconnect.retries'],
  ])('refuses reconnect %j with a message naming %s', (reconnect, name) => {
    expect(() => createClient({ url: 'ws://x/listen', WebSocket: FakeSocket, reconnect })).toThrow(name)
  })
})

describe('top-level listen()', () => {
  const globals = globalThis as { WebSocket?: unknown }

  beforeEach(() => {
    globals.WebSocket = FakeSocket
  })

  afterEach(() => {
    delete globals.WebSocket
  })

  test('an absolute URL picks its own endpoint and uses pathname + search as the path', () => {
    const offA = listen('https://api.example.com:8443/appointments?week=48', () => {})
    const offB = listen('https://api.example.com:8443/rooms', () => {})
    expect(FakeSocket.instances).toHaveLength(1)
    const socket = latest()
    expect(socket.url).toBe('wss://api.example.com:8443/listen')
    socket.open()
    expect(socket.sent).toEqual([
      { type: 'subscribe', path: '/appointments?week=48' },
      { type: 'subscribe', path: '/rooms' },
    ])
    offA()
    offB()
    expect(socket.closedWith).toBe(1000)
  })

  test('http and https URLs of one host are different endpoints, each with its own default client', () => {
    listen('http://h.example/a', () => {})
    listen('HTTPS://h.example/a', () => {})
    expect(FakeSocket.instances.map((socket) => socket.url)).toEqual([
      'ws://h.example/listen',
      'wss://h.example/listen',
    ])
    for (const socket of FakeSocket.instances) socket.drop(CloseCode.UnsupportedProtocol)
  })

  test.each([
    ['https://example.test/app/', 'listen', 'wss://example.test/app/listen'],
    ['https://example.test/app/', '/app/listen', 'wss://example.test/app/listen'],
    ['http://example.test/app/week/48', '../listen', 'ws://example.test/app/listen'],
    ['http://example.test/', undefined, 'ws://example.test/listen'],
  ])('on the page %s, the endpoint %s is %s', (page, url, expected) => {
    const global = globalThis as { location?: unknown }
    global.location = new URL(page)
    try {
      const client = createClient({ url, WebSocket: FakeSocket })
      client.listen('/a', () => {})
      expect(latest().url).toBe(expected)
      client.close()
    } finally {
      delete global.location
    }
  })

  test('a relative endpoint needs a page', () => {
    expect(() => createClient({ url: '/app/listen', WebSocket: FakeSocket })).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    )
  })

  test('a relative path needs a page location', () => {
    expect(() => listen('/a', () => {})).toThrow(expect.objectContaining({ code: 'invalid_option' }))
  })

  test('refuses something that is neither a path nor an http(s)/ws(s) URL', () => {
    expect(() => listen('appointments', () => {})).toThrow(expect.objectContaining({ code: 'bad_path' }))
  })

  test('types the data as the caller says', () => {
    const off = listen<number[]>('ws://h/a', (list: number[], meta: Meta) => {
      expect(list.length + meta.version.length).toBeGreaterThan(0)
    })
    off()
  })
})

// Drops the current socket, lets the reconnect timer fire and opens the next socket with a new id.
function reconnect(id = 'c2', code = 1006): FakeSocket {
  latest().drop(code)
  jest.runOnlyPendingTimers()
  const socket = latest()
  socket.open()
  socket.receive(welcome(1000, 500, id))
  return socket
}

const subscribed = (path: string, version = 'v1'): Frame => ({ type: 'subscribed', path, version })
const refusal = (path: string): Frame => ({
  type: 'error',
  code: 'unauthorized',
  message: 'not authorized',
  path,
  status: 403,
})

// Resolves to the promise's outcome without awaiting a promise that may never settle.
async function outcome(promise: Promise<void>): Promise<unknown> {
  let result: unknown = 'pending'
  promise.then(
    () => (result = 'resolved'),
    (error: unknown) => (result = error),
  )
  await flush()
  return result
}

describe('versions', () => {
  test('after a reconnect each path is resubscribed with the version it holds; a path without one, without', () => {
    const client = makeClient()
    client.listen('/a', () => {})
    client.listen('/b', () => {})
    latest().open()
    latest().receive(welcome())
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: 2 })
    expect(latest().sent).toEqual([
      { type: 'subscribe', path: '/a' },
      { type: 'subscribe', path: '/b' },
    ])
    const socket = reconnect()
    expect(socket.sent).toEqual([
      { type: 'subscribe', path: '/a', version: 'v2' },
      { type: 'subscribe', path: '/b' },
    ])
  })

  test("'subscribed' keeps the state: onData is not called again and the next resubscription keeps the version", () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    reconnect().receive(subscribed('/a'))
    expect(onData).toHaveBeenCalledTimes(1)
    expect(reconnect('c3').sent).toEqual([{ type: 'subscribe', path: '/a', version: 'v1' }])
  })

  test('kind is snapshot on the first delivery, change for a push, resync for a new state after a reconnect', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: 2 })
    reconnect().receive({ type: 'data', path: '/a', version: 'v3', json: 3, snapshot: true })
    latest().receive({ type: 'data', path: '/a', version: 'v4', json: 4 })
    expect(onData.mock.calls.map(([, meta]) => [(meta as Meta).kind, (meta as Meta).snapshot])).toEqual([
      ['snapshot', true],
      ['change', false],
      ['resync', true],
      ['change', false],
    ])
  })

  test('a first snapshot that only arrives after a reconnect (no version held) is a snapshot, not a resync', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    const socket = reconnect()
    expect(socket.sent).toEqual([{ type: 'subscribe', path: '/a' }])
    socket.receive(data('/a', { json: 1, snapshot: true }))
    expect(onData).toHaveBeenCalledWith(1, expect.objectContaining({ kind: 'snapshot' }))
  })

  test('a snapshot repeating the version held after a reconnect counts as subscribed: no callback', () => {
    const client = makeClient()
    const onData = jest.fn()
    const onResync = jest.fn()
    client.onResync(onResync)
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    reconnect().receive(data('/a', { json: 1, snapshot: true }))
    expect(onData).toHaveBeenCalledTimes(1)
    expect(onResync).toHaveBeenCalledWith({ recovered: true, changed: [] })
  })

  test('after gone, the next resubscription carries no version, so a returning state is delivered', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive({ type: 'gone', path: '/a', status: 404 })
    const socket = reconnect()
    expect(socket.sent).toEqual([{ type: 'subscribe', path: '/a' }])
    socket.receive(data('/a', { json: 1, snapshot: true }))
    expect(onData).toHaveBeenCalledTimes(2)
  })

  test('a later listener gets the known state as its snapshot, even when that state came from a change', async () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive(welcome())
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: 2, origin: 'c1' })
    const onData = jest.fn()
    client.listen('/a', onData)
    await flush()
    expect(onData).toHaveBeenCalledWith(2, {
      path: '/a',
      version: 'v2',
      snapshot: true,
      kind: 'snapshot',
      own: false,
      patched: false,
    })
  })

  test('a later listener whose path changes before its microtask gets the newer value once', async () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: 2 })
    await flush()
    expect(onData.mock.calls.map(([value]) => value as number)).toEqual([2])
  })
})

describe('echo', () => {
  test('own is true only when the origin equals the id of the current connection', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(welcome(1000, 500, 'c1'))
    latest().receive(data('/a', { json: 0, snapshot: true }))
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: 1, origin: 'c1' })
    latest().receive({ type: 'data', path: '/a', version: 'v3', json: 2, origin: 'someone-else' })
    expect(onData.mock.calls.map(([, meta]) => (meta as Meta).own)).toEqual([false, true, false])
  })

  test('own is false for the old id after a reconnect gave the connection a new one', () => {
    const client = makeClient()
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    latest().receive(welcome(1000, 500, 'c1'))
    latest().receive(data('/a', { json: 0, snapshot: true }))
    const socket = reconnect('c2')
    socket.receive(subscribed('/a'))
    socket.receive({ type: 'data', path: '/a', version: 'v2', json: 1, origin: 'c1' })
    socket.receive({ type: 'data', path: '/a', version: 'v3', json: 2, origin: 'c2' })
    expect(onData.mock.calls.map(([, meta]) => (meta as Meta).own)).toEqual([false, false, true])
  })

  test("headers() is { 'X-Listenjs-Client': id } while connected and {} before the welcome and after a close", () => {
    const client = makeClient()
    expect(client.headers()).toEqual({})
    client.listen('/a', () => {})
    latest().open()
    expect(client.headers()).toEqual({})
    latest().receive(welcome(1000, 500, 'c1'))
    expect(client.headers()).toEqual({ 'X-Listenjs-Client': 'c1' })
    latest().drop(1006)
    expect(client.headers()).toEqual({})
    jest.runOnlyPendingTimers()
    latest().open()
    latest().receive(welcome(1000, 500, 'c2'))
    expect(client.headers()).toEqual({ 'X-Listenjs-Client': 'c2' })
    client.close()
    expect(client.headers()).toEqual({})
  })
})

describe('ready', () => {
  test('resolves once the first value was delivered to the listener', async () => {
    const client = makeClient()
    const onData = jest.fn()
    const off = client.listen('/a', onData)
    latest().open()
    expect(await outcome(off.ready)).toBe('pending')
    latest().receive(data('/a', { json: 1, snapshot: true }))
    expect(await outcome(off.ready)).toBe('resolved')
    expect(onData).toHaveBeenCalledTimes(1)
  })

  test('of a later listener on a known path resolves right after it got the known value', async () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    const onData = jest.fn()
    const off = client.listen('/a', onData)
    await off.ready
    expect(onData).toHaveBeenCalledTimes(1)
  })

  test("resolves on 'subscribed' without calling onData", async () => {
    const client = makeClient()
    const onData = jest.fn()
    const off = client.listen('/a', onData)
    latest().open()
    latest().receive(subscribed('/a'))
    expect(await outcome(off.ready)).toBe('resolved')
    expect(onData).not.toHaveBeenCalled()
  })

  test('rejects with the ListenjsError that refused the path', async () => {
    const client = makeClient()
    const off = client.listen('/secret', () => {})
    latest().open()
    latest().receive(refusal('/secret'))
    await expect(off.ready).rejects.toMatchObject({
      name: 'ListenjsError',
      code: 'unauthorized',
      status: 403,
    })
  })

  test('a refusal after the first value leaves a resolved ready as it is', async () => {
    const client = makeClient()
    const off = client.listen('/a', () => {})
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive(refusal('/a'))
    expect(await outcome(off.ready)).toBe('resolved')
  })

  test("rejects with 'closed' on close(), when the client gives up, and when unlistened first", async () => {
    const client = makeClient()
    const closed = client.listen('/a', () => {})
    client.close()
    await expect(closed.ready).rejects.toMatchObject({ code: 'closed' })

    const giveUp = makeClient({ reconnect: false })
    const gaveUp = giveUp.listen('/a', () => {})
    latest().drop(1006)
    await expect(gaveUp.ready).rejects.toMatchObject({ code: 'closed', path: '/a' })

    const other = makeClient()
    const off = other.listen('/a', () => {})
    off()
    await expect(off.ready).rejects.toMatchObject({ code: 'closed', path: '/a' })
  })

  test('a rejected ready that nobody observes is not an unhandled rejection', async () => {
    // Jest fails a test in which a promise rejection goes unhandled; this test waits a macrotask
    // with real timers so that Node's detection runs before the test ends.
    const client = makeClient()
    client.listen('/secret', () => {})
    client.listen('/a', () => {})()
    latest().open()
    latest().receive(refusal('/secret'))
    client.listen('/b', () => {})
    client.close()
    jest.useRealTimers()
    await new Promise((resolve) => setTimeout(resolve, 10))
  })
})

describe('recovery after a reconnect', () => {
  function listening(paths: string[]): { client: Client; onData: jest.Mock; onResync: jest.Mock } {
    const client = makeClient()
    const onData = jest.fn()
    const onResync = jest.fn()
    client.onResync(onResync)
    for (const path of paths) client.listen(path, onData)
    latest().open()
    latest().receive(welcome())
    for (const path of paths) latest().receive(data(path, { json: path, snapshot: true }))
    onData.mockClear()
    return { client, onData, onResync }
  }

  test('recovered() is false before any reconnect', () => {
    const { client } = listening(['/a'])
    expect(client.recovered()).toBe(false)
  })

  test('every path subscribed: recovered() true and onResync called once with changed []', () => {
    const { client, onData, onResync } = listening(['/a', '/b'])
    const socket = reconnect()
    socket.receive(subscribed('/a'))
    expect(client.recovered()).toBe(false)
    expect(onResync).not.toHaveBeenCalled()
    socket.receive(subscribed('/b'))
    expect(client.recovered()).toBe(true)
    expect(onResync).toHaveBeenCalledTimes(1)
    expect(onResync).toHaveBeenCalledWith({ recovered: true, changed: [] })
    expect(onData).not.toHaveBeenCalled()
  })

  test('one path delivered again: recovered() false and onResync gets that path as changed', () => {
    const { client, onData, onResync } = listening(['/a', '/b'])
    const socket = reconnect()
    socket.receive(subscribed('/a'))
    socket.receive({ type: 'data', path: '/b', version: 'v9', json: 'new', snapshot: true })
    expect(client.recovered()).toBe(false)
    expect(onResync).toHaveBeenCalledWith({ recovered: false, changed: ['/b'] })
    expect(onData).toHaveBeenCalledWith('new', expect.objectContaining({ path: '/b', kind: 'resync' }))
  })

  test('a refused resubscription makes the reconnect not recovered, without counting as changed', () => {
    const { client, onResync } = listening(['/a', '/b'])
    const socket = reconnect()
    socket.receive(subscribed('/a'))
    socket.receive({ type: 'error', code: 'failed', message: 'failed', path: '/b', status: 500 })
    expect(client.recovered()).toBe(false)
    expect(onResync).toHaveBeenCalledWith({ recovered: false, changed: [] })
  })

  test('a path unlistened before it answered does not hold the report back', () => {
    const client = makeClient()
    const onResync = jest.fn()
    client.onResync(onResync)
    client.listen('/a', () => {})
    const offB = client.listen('/b', () => {})
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive(data('/b', { json: 1, snapshot: true }))
    reconnect().receive(subscribed('/a'))
    expect(onResync).not.toHaveBeenCalled()
    offB()
    expect(onResync).toHaveBeenCalledWith({ recovered: true, changed: [] })
  })

  test('each reconnect gets its own report; the function onResync returns stops the listener', () => {
    const { client, onResync } = listening(['/a'])
    reconnect().receive({ type: 'data', path: '/a', version: 'v2', json: 2, snapshot: true })
    expect(client.recovered()).toBe(false)
    reconnect('c3').receive(subscribed('/a', 'v2'))
    expect(client.recovered()).toBe(true)
    expect(onResync.mock.calls).toEqual([
      [{ recovered: false, changed: ['/a'] }],
      [{ recovered: true, changed: [] }],
    ])
    const other = jest.fn()
    const off = client.onResync(other)
    off()
    reconnect('c4').receive(subscribed('/a', 'v2'))
    expect(other).not.toHaveBeenCalled()
  })

  test('a reconnect with no path to resubscribe calls nothing', () => {
    const client = makeClient()
    const onResync = jest.fn()
    client.onResync(onResync)
    client.listen('/secret', () => {})
    latest().open()
    latest().receive(refusal('/secret'))
    const socket = reconnect()
    expect(socket.sent).toEqual([])
    expect(onResync).not.toHaveBeenCalled()
  })

  test('the first socket after the client went idle is not a reconnect', () => {
    const client = makeClient()
    const onResync = jest.fn()
    client.onResync(onResync)
    client.listen('/a', () => {})()
    client.listen('/b', () => {})
    latest().open()
    latest().receive(data('/b', { json: 1, snapshot: true }))
    expect(onResync).not.toHaveBeenCalled()
    expect(client.recovered()).toBe(false)
  })
})

describe('graceful restart', () => {
  test.each([CloseCode.GoingAway, CloseCode.ServiceRestart])(
    'close code %i reconnects after a random delay below initialDelayMs and calls no onError',
    (code) => {
      jest.spyOn(Math, 'random').mockReturnValue(0.5)
      const client = makeClient({ reconnect: { initialDelayMs: 200 } })
      const onError = jest.fn()
      const onData = jest.fn()
      client.listen('/a', onData, { onError })
      latest().open()
      latest().receive(welcome())
      latest().receive(data('/a', { json: 1, snapshot: true }))
      latest().drop(code)
      expect(client.status()).toBe('reconnecting')
      jest.advanceTimersByTime(99)
      expect(FakeSocket.instances).toHaveLength(1)
      jest.advanceTimersByTime(1)
      expect(FakeSocket.instances).toHaveLength(2)
      latest().open()
      expect(latest().sent).toEqual([{ type: 'subscribe', path: '/a', version: 'v1' }])
      latest().receive(subscribed('/a'))
      expect(client.recovered()).toBe(true)
      expect(onError).not.toHaveBeenCalled()
      expect(onData).toHaveBeenCalledTimes(1)
    },
  )
})

describe('token refresh', () => {
  test('reauthenticate() sends a fresh token over the open socket without reconnecting; listeners stay', async () => {
    let n = 0
    const client = makeClient({ auth: () => `t${++n}` })
    const onData = jest.fn()
    client.listen('/a', onData)
    latest().open()
    await flush()
    latest().receive(welcome())
    latest().receive(data('/a', { json: 1, snapshot: true }))
    await client.reauthenticate()
    expect(FakeSocket.instances).toHaveLength(1)
    expect(latest().closedWith).toBeUndefined()
    expect(client.status()).toBe('open')
    expect(latest().sent).toEqual([
      { type: 'auth', token: 't1' },
      { type: 'subscribe', path: '/a' },
      { type: 'auth', token: 't2' },
    ])
    // The server re-checks /a with the new token: unchanged is silent, a new state is delivered.
    latest().receive(subscribed('/a'))
    expect(onData).toHaveBeenCalledTimes(1)
    latest().receive(data('/a', { json: 2, version: 'v2', snapshot: true }))
    expect(onData).toHaveBeenLastCalledWith(2, expect.objectContaining({ path: '/a', version: 'v2' }))
  })

  test('reauthenticate() sends a string auth option as it is', async () => {
    const client = makeClient({ auth: 'secret' })
    client.listen('/a', () => {})
    latest().open()
    await client.reauthenticate()
    expect(latest().types()).toEqual(['auth', 'subscribe', 'auth'])
    expect(latest().sent[2]).toEqual({ type: 'auth', token: 'secret' })
  })

  test('reauthenticate() without an auth option rejects with invalid_option', async () => {
    const client = makeClient()
    client.listen('/a', () => {})
    latest().open()
    await expect(client.reauthenticate()).rejects.toMatchObject({
      name: 'ListenjsError',
      code: 'invalid_option',
    })
    expect(latest().sent).toEqual([{ type: 'subscribe', path: '/a' }])
  })

  test('reauthenticate() while not connected resolves at once without calling auth; the next socket sends it', async () => {
    const auth = jest.fn(() => 'tok')
    const client = makeClient({ auth })
    await client.reauthenticate()
    expect(auth).not.toHaveBeenCalled()
    client.listen('/a', () => {})
    latest().open()
    await flush()
    expect(auth).toHaveBeenCalledTimes(1)
    expect(latest().sent[0]).toEqual({ type: 'auth', token: 'tok' })
  })

  test('reauthenticate() rejects with the error of an auth function that fails, and keeps the socket', async () => {
    let fail = false
    const client = makeClient({
      auth: async () => {
        if (fail) throw new Error('refresh failed')
        return 't'
      },
    })
    client.listen('/a', () => {})
    latest().open()
    await flush()
    fail = true
    await expect(client.reauthenticate()).rejects.toThrow('refresh failed')
    expect(client.status()).toBe('open')
    expect(FakeSocket.instances).toHaveLength(1)
  })

  test('with an auth option a 401 is reported at once, without reconnecting', async () => {
    const client = makeClient({ auth: 'old' })
    const onError = jest.fn()
    const off = client.listen('/a', () => {}, { onError })
    latest().open()
    latest().receive({ type: 'error', code: 'unauthorized', message: 'x', path: '/a', status: 401 })
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(1)
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: 'unauthorized', status: 401 }))
    await expect(off.ready).rejects.toMatchObject({ code: 'unauthorized', status: 401 })
  })

  test('reauthenticate() subscribes again the paths refused as unauthorized, not the others', async () => {
    let token = 'old'
    const client = makeClient({ auth: () => token })
    const onData = jest.fn()
    client.listen('/a', onData)
    client.listen('/missing', () => {})
    client.listen('/b', () => {})
    latest().open()
    await flush()
    latest().receive(data('/b', { json: 'b', snapshot: true }))
    latest().receive({ type: 'error', code: 'unauthorized', message: 'x', path: '/a', status: 401 })
    latest().receive({ type: 'error', code: 'not_found', message: 'x', path: '/missing', status: 404 })
    latest().sent.length = 0
    token = 'new'
    await client.reauthenticate()
    expect(latest().sent).toEqual([
      { type: 'auth', token: 'new' },
      { type: 'subscribe', path: '/a' },
    ])
    latest().receive(data('/a', { json: 'a', snapshot: true }))
    expect(onData).toHaveBeenCalledWith('a', expect.objectContaining({ path: '/a', kind: 'snapshot' }))
  })
})

describe('cookie sessions', () => {
  const unauthorized = (path: string, status: number): Frame => ({
    type: 'error',
    code: 'unauthorized',
    message: 'not authorized',
    path,
    status,
  })

  test('without an auth option a 401 reconnects once, resubscribing everything, and reports nothing', async () => {
    const client = makeClient({ reconnect: false })
    const onError = jest.fn()
    const onData = jest.fn()
    const seen: Status[] = []
    client.onStatus((status) => seen.push(status))
    const off = client.listen('/a', onData, { onError })
    client.listen('/b', () => {}, { onError })
    const first = latest()
    first.open()
    first.receive(welcome())
    first.receive(data('/b', { json: 'b', snapshot: true }))
    first.receive(data('/a', { json: 'a', snapshot: true }))
    // The session cookie was rotated by a re-login: a push replay of /a now answers 401.
    first.receive(unauthorized('/a', 401))
    expect(first.closedWith).toBe(1000)
    expect(client.status()).toBe('reconnecting')
    jest.advanceTimersByTime(0)
    expect(FakeSocket.instances).toHaveLength(2)
    const second = latest()
    second.open()
    second.receive(welcome(1000, 500, 'c2'))
    expect(second.sent).toEqual([
      { type: 'subscribe', path: '/a', version: 'v1' },
      { type: 'subscribe', path: '/b', version: 'v1' },
    ])
    second.receive(subscribed('/a'))
    second.receive(subscribed('/b'))
    expect(onError).not.toHaveBeenCalled()
    expect(onData).toHaveBeenCalledTimes(1)
    expect(await outcome(off.ready)).toBe('resolved')
    expect(seen).toEqual(['connecting', 'open', 'reconnecting', 'open'])
  })

  test('a 401 again after that reconnect is reported through onError with status 401, and ready rejects', async () => {
    const client = makeClient()
    const onError = jest.fn()
    const off = client.listen('/a', () => {}, { onError })
    latest().open()
    latest().receive(unauthorized('/a', 401))
    expect(onError).not.toHaveBeenCalled()
    jest.advanceTimersByTime(0)
    latest().open()
    latest().receive(unauthorized('/a', 401))
    expect(onError).toHaveBeenCalledTimes(1)
    expect(onError).toHaveBeenCalledWith(
      expect.objectContaining({ code: 'unauthorized', status: 401, path: '/a' }),
    )
    await expect(off.ready).rejects.toMatchObject({ code: 'unauthorized', status: 401 })
    // Exactly one reconnect, and the socket stays.
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(2)
    expect(client.status()).toBe('open')
  })

  test('401s of several paths in one episode cause one reconnect; the repeated ones are all reported', () => {
    const client = makeClient()
    const onError = jest.fn()
    for (const path of ['/a', '/b', '/c']) client.listen(path, () => {}, { onError })
    latest().open()
    latest().receive(unauthorized('/a', 401))
    latest().receive(unauthorized('/b', 401))
    jest.advanceTimersByTime(0)
    latest().open()
    expect(latest().types()).toEqual(['subscribe', 'subscribe', 'subscribe'])
    latest().receive(unauthorized('/b', 401))
    latest().receive(unauthorized('/a', 401))
    latest().receive(unauthorized('/c', 401))
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(2)
    expect(onError.mock.calls.map(([error]) => (error as ListenjsError).path)).toEqual(['/b', '/a', '/c'])
  })

  test('a new episode after the reconnect succeeded gets its own single reconnect', () => {
    const client = makeClient()
    const onError = jest.fn()
    client.listen('/a', () => {}, { onError })
    latest().open()
    latest().receive(unauthorized('/a', 401))
    jest.advanceTimersByTime(0)
    latest().open()
    latest().receive(data('/a', { json: 1, snapshot: true }))
    latest().receive(unauthorized('/a', 401))
    jest.advanceTimersByTime(0)
    expect(FakeSocket.instances).toHaveLength(3)
    expect(onError).not.toHaveBeenCalled()
  })

  test('a 403 is reported at once, without reconnecting (forbidden is not a stale cookie)', async () => {
    const client = makeClient()
    const onError = jest.fn()
    const off = client.listen('/a', () => {}, { onError })
    latest().open()
    latest().receive(unauthorized('/a', 403))
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(1)
    expect(latest().closedWith).toBeUndefined()
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: 'unauthorized', status: 403 }))
    await expect(off.ready).rejects.toMatchObject({ status: 403 })
  })

  test('a client closed from a status listener during that reconnect opens no new socket', () => {
    const client = makeClient()
    client.onStatus((status) => {
      if (status === 'reconnecting') client.close()
    })
    client.listen('/a', () => {})
    latest().open()
    latest().receive(unauthorized('/a', 401))
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(1)
    expect(client.status()).toBe('closed')
    expect(jest.getTimerCount()).toBe(0)
  })
})

describe('refusals never cause a reconnect loop', () => {
  test("a path refused with 'limit' keeps the socket and is not resubscribed on a later reconnect", () => {
    const client = makeClient()
    const onError = jest.fn()
    const paths = Array.from({ length: 257 }, (_, i) => `/p${i}`)
    for (const path of paths) client.listen(path, () => {}, { onError })
    latest().open()
    latest().receive(welcome())
    for (const path of paths.slice(0, 256)) latest().receive(data(path, { json: path, snapshot: true }))
    latest().receive({ type: 'error', code: 'limit', message: 'too many subscriptions', path: '/p256' })
    jest.advanceTimersByTime(100)
    expect(FakeSocket.instances).toHaveLength(1)
    expect(latest().closedWith).toBeUndefined()
    expect(client.status()).toBe('open')
    expect(onError).toHaveBeenCalledTimes(1)
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: 'limit', path: '/p256' }))

    const socket = reconnect()
    expect(socket.sent).toHaveLength(256)
    expect(socket.sent.map((frame) => frame.path)).not.toContain('/p256')
    for (const path of paths.slice(0, 256)) socket.receive(subscribed(path))
    expect(client.recovered()).toBe(true)
    jest.advanceTimersByTime(100)
    expect(FakeSocket.instances).toHaveLength(2)

    // Listening to it again is the app's decision, and subscribes it again.
    client.listen('/p256', () => {})
    expect(socket.sent[256]).toEqual({ type: 'subscribe', path: '/p256' })
  })

  test.each([
    ['bad_path', undefined],
    ['not_found', 404],
    ['unauthorized', 403],
  ])("a path refused with '%s' causes no reconnect and is not resubscribed", (code, status) => {
    const client = makeClient()
    client.listen('/a', () => {})
    client.listen('/x', () => {})
    latest().open()
    latest().receive({ type: 'error', code, message: 'x', path: '/x', status })
    jest.runOnlyPendingTimers()
    expect(FakeSocket.instances).toHaveLength(1)
    expect(reconnect().sent).toEqual([{ type: 'subscribe', path: '/a' }])
  })
})

describe("missing: 'wait'", () => {
  const gone = (path: string, status = 404): Frame => ({ type: 'gone', path, status })

  function waiting(path = '/a'): {
    client: Client
    onData: jest.Mock
    onGone: jest.Mock
    onError: jest.Mock
  } {
    const client = makeClient()
    const onData = jest.fn()
    const onGone = jest.fn()
    const onError = jest.fn()
    client.listen(path, onData, { missing: 'wait', onGone, onError })
    latest().open()
    latest().receive(welcome())
    return { client, onData, onGone, onError }
  }

  test('subscribes with missing: wait; only such a listen sends it', () => {
    waiting('/a')
    makeClient().listen('/b', () => {})
    latest().open()
    expect(FakeSocket.instances[0]!.sent).toEqual([{ type: 'subscribe', path: '/a', missing: 'wait' }])
    expect(latest().sent).toEqual([{ type: 'subscribe', path: '/b' }])
  })

  test('gone answers the subscription: onGone, ready resolves; data follows when the resource is created', async () => {
    const client = makeClient()
    const onData = jest.fn()
    const onGone = jest.fn()
    const off = client.listen('/a', onData, { missing: 'wait', onGone })
    latest().open()
    latest().receive(gone('/a'))
    expect(onGone).toHaveBeenCalledWith({ path: '/a', status: 404 })
    await expect(off.ready).resolves.toBeUndefined()
    // A push: the subscription answered already, so it is not taken for an earlier subscription's.
    latest().receive({ type: 'data', path: '/a', version: 'v1', json: 'created' })
    expect(onData).toHaveBeenCalledWith('created', expect.objectContaining({ kind: 'change' }))
  })

  test('while gone, every reconnect resubscribes with missing: wait and no version', () => {
    const { onData, onGone, onError } = waiting()
    latest().receive({ type: 'data', path: '/a', version: 'v1', json: 1, snapshot: true })
    latest().receive(gone('/a'))
    for (const id of ['c2', 'c3']) {
      const socket = reconnect(id, CloseCode.ServiceRestart)
      expect(socket.sent).toEqual([{ type: 'subscribe', path: '/a', missing: 'wait' }])
      socket.receive(gone('/a'))
    }
    expect(onGone).toHaveBeenCalledTimes(3)
    expect(onError).not.toHaveBeenCalled()
    latest().receive({ type: 'data', path: '/a', version: 'v2', json: 2 })
    expect(onData.mock.calls.map((call) => call[0])).toEqual([1, 2])
  })

  test('a path deleted while away is gone after the reconnect: not recovered; gone again is recovered', () => {
    const { client, onGone } = waiting()
    const onResync = jest.fn()
    client.onResync(onResync)
    latest().receive({ type: 'data', path: '/a', version: 'v1', json: 1, snapshot: true })
    reconnect().receive(gone('/a'))
    expect(onResync).toHaveBeenLastCalledWith({ recovered: false, changed: [] })
    reconnect('c3').receive(gone('/a'))
    expect(onResync).toHaveBeenLastCalledWith({ recovered: true, changed: [] })
    expect(onGone).toHaveBeenCalledTimes(2)
  })

  test('a listener added while the path is gone gets onGone, and its ready resolves', async () => {
    const { client } = waiting()
    latest().receive(gone('/a', 410))
    const onGone = jest.fn()
    const onData = jest.fn()
    const off = client.listen('/a', onData, { onGone })
    await off.ready
    expect(onGone).toHaveBeenCalledWith({ path: '/a', status: 410 })
    expect(onData).not.toHaveBeenCalled()
    expect(latest().sent).toHaveLength(1)
  })

  test('a listener that waits, added while the path is subscribed without it, is not refused', () => {
    const client = makeClient()
    const onError = jest.fn()
    const onGone = jest.fn()
    client.listen('/a', () => {}, { onError })
    latest().open()
    client.listen('/a', () => {}, { missing: 'wait', onError, onGone })
    latest().receive({ type: 'error', code: 'not_found', message: 'not found', path: '/a', status: 404 })
    expect(latest().sent).toEqual([
      { type: 'subscribe', path: '/a' },
      { type: 'subscribe', path: '/a', missing: 'wait' },
    ])
    expect(onError).not.toHaveBeenCalled()
    latest().receive(gone('/a'))
    expect(onGone).toHaveBeenCalledTimes(1)
  })

  test('a hub that ignores missing refuses with not_found: reported once, not resubscribed', () => {
    const { onError } = waiting()
    latest().receive({ type: 'error', code: 'not_found', message: 'not found', path: '/a', status: 404 })
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: 'not_found' }))
    expect(latest().sent).toHaveLength(1)
    expect(reconnect().sent).toEqual([])
  })

  test('without the option, a gone path is refused at the next reconnect as before', () => {
    const client = makeClient()
    const onError = jest.fn()
    client.listen('/a', () => {}, { onError })
    latest().open()
    latest().receive({ type: 'data', path: '/a', version: 'v1', json: 1, snapshot: true })
    latest().receive(gone('/a'))
    const socket = reconnect()
    expect(socket.sent).toEqual([{ type: 'subscribe', path: '/a' }])
    socket.receive({ type: 'error', code: 'not_found', message: 'not found', path: '/a', status: 404 })
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: 'not_found' }))
    expect(reconnect('c3').sent).toEqual([])
  })
})

describe('patches', () => {
  const state = {
    list: [
      { id: 1, t: 'a' },
      { id: 2, t: 'b' },
    ],
    n: 1,
  }
  const next = {
    list: [
      { id: 1, t: 'a' },
      { id: 2, t: 'c' },
    ],
    n: 1,
  }
  const ops = [{ op: 'replace', path: '/list/1/t', value: 'c' }]

  async function listening(options: ClientOptions = { patches }) {
    const client = makeClient(options)
    const seen: Array<[unknown, Meta]> = []
    client.listen('/a', (value, meta) => seen.push([value, meta]))
    const socket = latest()
    socket.open()
    socket.receive(welcome())
    await flush()
    socket.receive({ type: 'data', path: '/a', version: 'v1', snapshot: true, json: state })
    return { socket, seen }
  }

  test('offers listenjs.v1.1 before listenjs.v1 with patches, listenjs.v1 alone without', async () => {
    await listening()
    expect(latest().protocols).toEqual([SUBPROTOCOL_PATCHES, SUBPROTOCOL])
    await listening({})
    expect(latest().protocols).toBe(SUBPROTOCOL)
  })

  test('a verified patch is delivered as the whole new state, sharing what did not change', async () => {
    const { socket, seen } = await listening()
    socket.receive({ type: 'patch', path: '/a', version: 'v2', from: 'v1', sum: checksum(next), ops })
    expect(seen).toHaveLength(2)
    const [value, meta] = seen[1]!
    expect(value).toEqual(next)
    expect(meta).toMatchObject({ version: 'v2', kind: 'change', patched: true, snapshot: false })
    expect((value as typeof next).list[0]).toBe((seen[0]![0] as typeof state).list[0])
    expect(state.list[1]!.t).toBe('b')
  })

  test.each([
    ['a wrong sum', { from: 'v1', sum: checksum(next) ^ 1, ops }],
    ['a version not held', { from: 'v0', sum: checksum(next), ops }],
    ['ops that do not apply', { from: 'v1', sum: checksum(next), ops: [{ op: 'remove', path: '/nope' }] }],
    ['a move op', { from: 'v1', sum: checksum(next), ops: [{ op: 'move', from: '/n', path: '/m' }] }],
    ['ops that are not a list', { from: 'v1', sum: checksum(next), ops: { op: 'replace' } }],
    [
      'a __proto__ path',
      { from: 'v1', sum: checksum(state), ops: [{ op: 'add', path: '/__proto__/polluted', value: true }] },
    ],
    [
      'a __proto__ path deeper down',
      { from: 'v1', sum: checksum(state), ops: [{ op: 'add', path: '/list/__proto__/polluted', value: 1 }] },
    ],
  ])(
    '%s: nothing is delivered or polluted, and the path is subscribed again without a version',
    async (_, bad) => {
      const { socket, seen } = await listening()
      socket.receive({ type: 'patch', path: '/a', version: 'v2', ...bad })
      expect(seen).toHaveLength(1)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect(socket.sent.slice(-2)).toEqual([
        { type: 'unsubscribe', path: '/a' },
        { type: 'subscribe', path: '/a' },
      ])
      // A patch before the fresh snapshot is dropped; the snapshot is delivered whole.
      socket.receive({ type: 'patch', path: '/a', version: 'v3', from: 'v1', sum: checksum(next), ops })
      socket.receive({ type: 'data', path: '/a', version: 'v2', snapshot: true, json: next })
      expect(seen).toHaveLength(2)
      expect(seen[1]![0]).toEqual(next)
      expect(seen[1]![1]).toMatchObject({ patched: false })
    },
  )

  test('a client without patches that is sent one subscribes again and gets the state whole', async () => {
    const { socket, seen } = await listening({})
    socket.receive({ type: 'patch', path: '/a', version: 'v2', from: 'v1', sum: checksum(next), ops })
    expect(seen).toHaveLength(1)
    expect(socket.sent.slice(-2)).toEqual([
      { type: 'unsubscribe', path: '/a' },
      { type: 'subscribe', path: '/a' },
    ])
  })
})
