/**
 * `listenjs/testing`: live resources in your own test suites (Jest, Vitest, `node:test`: it imports
 * no test framework). `connect(server)` opens one real connection to the hub; `listen` resolves with
 * a path's snapshot, `expectPush` with the first later state that passes a check, `expectGone` with
 * the status of a later `gone`, `expectNoPush` fails if anything (a state, a `gone`, an error) comes
 * for a while. Writes go through your usual tools (supertest, `fetch`,
 * Fastify's `inject`): the hub sees them as any request. Node only.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createClient, type Client, type ListenjsError, type Meta } from '../client/index'
import { endpointUrl, wsWithHeaders } from '../node/ws-client'

/** A Fastify instance with the listenjs plugin registered (only what `connect` uses of it). */
export interface FastifyLike {
  readonly server: Server
  listen(options: { port: number; host: string }): Promise<string>
}

/** What {@link connect} connects to: a server, an endpoint or app URL, or a Fastify instance. */
export type Target = Server | string | FastifyLike

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The hub's endpoint path. @default '/listen' */
  path?: string
  /** Headers of the WebSocket upgrade (a `Cookie`, an `Authorization`). */
  headers?: Record<string, string>
  /** A bearer token sent as the `auth` message (as the client's `auth` option). */
  token?: string
}

/** One state a path received, as the client delivered it. */
export interface State<T = unknown> {
  readonly data: T
  readonly meta: Meta
}

/** Options of {@link LiveTest.expectPush} and {@link LiveTest.expectGone}. */
export interface WaitOptions {
  /** How long to wait. @default 2000 */
  timeoutMs?: number
}

/** A live test connection; see {@link connect}. */
export interface LiveTest {
  /** Listens to `path`; resolves with its snapshot, rejects with the refusal (`unauthorized`, …). */
  listen<T = unknown>(path: string): Promise<T>
  /**
   * Resolves with the first state of `path` pushed after this call for which `check` returns true
   * (any state without `check`); rejects on timeout with the states seen meanwhile. Listens to the
   * path first if needed.
   */
  expectPush<T = unknown>(
    path: string,
    check?: (state: T, meta: Meta) => boolean,
    options?: WaitOptions,
  ): Promise<T>
  /** {@link LiveTest.expectPush} of any state, with options. */
  expectPush<T = unknown>(path: string, options: WaitOptions): Promise<T>
  /**
   * Resolves with the status (404 or 410) of the first `gone` of `path` after this call: the resource
   * was deleted and the subscription stays. Rejects on timeout.
   */
  expectGone(path: string, options?: WaitOptions): Promise<number>
  /**
   * Rejects if anything comes for `path` within `forMs` (default 200) of this call: a state, a `gone`,
   * or an error ending the subscription.
   */
  expectNoPush(path: string, options?: { forMs?: number }): Promise<void>
  /** Every state each path received, oldest first. */
  states(path: string): readonly State[]
  /** The headers that tag your own writes as this connection's (`meta.own`). */
  headers(): Record<string, string>
  /** Closes the connection. */
  close(): Promise<void>
}

/** The endpoint URL of `target`; makes a Fastify instance listen on a free loopback port first. */
async function endpointOf(target: Target, path: string): Promise<string> {
  if (typeof target === 'string') return endpointUrl(target, path)
  const server = 'server' in target ? target.server : target
  if (!server.listening && 'listen' in target && typeof target.listen === 'function')
    await (target as FastifyLike).listen({ port: 0, host: '127.0.0.1' })
  const address = server.address() as AddressInfo | null
  if (!address) throw new Error('listenjs/testing: the server is not listening')
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `ws://${host === '::' || host === '[::]' || host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}${path}`
}

/**
 * Connects to the hub of `target`: a listening `http.Server`, a `ws(s)://` endpoint or an
 * `http(s)://` app URL (the endpoint is `options.path` on it), or a Fastify instance (made to listen
 * on a free loopback port when it does not yet).
 */
export async function connect(target: Target, options: ConnectOptions = {}): Promise<LiveTest> {
  const url = await endpointOf(target, options.path ?? '/listen')
  const client: Client = createClient({
    url,
    WebSocket: wsWithHeaders(options.headers),
    auth: options.token,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
  })
  const seen = new Map<string, State[]>()
  const waiters = new Map<string, Set<(event: Event) => void>>()
  const listening = new Map<string, Promise<unknown>>()
  const tell = (path: string, event: Event): void => {
    for (const waiter of [...(waiters.get(path) ?? [])]) waiter(event)
  }

  const listen = <T>(path: string): Promise<T> => {
    let known = listening.get(path)
    if (!known) {
      const states: State[] = []
      seen.set(path, states)
      const off = client.listen(
        path,
        (data, meta) => {
          const state = { data, meta }
          states.push(state)
          if (meta.kind !== 'snapshot') tell(path, { state })
        },
        {
          onGone: ({ status }) => tell(path, { gone: status }),
          onError: (error) => tell(path, { error }),
        },
      )
      known = off.ready.then(() => states[0]?.data)
      listening.set(path, known)
    }
    return known as Promise<T>
  }

  /** Waits for an event of `path` that `accept` takes, or for `ms` to pass. */
  const next = (path: string, accept: (event: Event) => boolean, ms: number): Promise<Event | undefined> =>
    new Promise((resolve) => {
      const set = waiters.get(path) ?? new Set()
      waiters.set(path, set)
      const done = (event?: Event): void => {
        clearTimeout(timer)
        set.delete(waiter)
        resolve(event)
      }
      const waiter = (event: Event): void => {
        if (accept(event)) done(event)
      }
      const timer = setTimeout(done, ms)
      set.add(waiter)
    })

  return {
    listen,
    async expectPush<T>(
      path: string,
      checkOrOptions?: ((state: T, meta: Meta) => boolean) | WaitOptions,
      options: WaitOptions = {},
    ): Promise<T> {
      const check = typeof checkOrOptions === 'function' ? checkOrOptions : undefined
      const { timeoutMs = 2000 } = typeof checkOrOptions === 'object' ? checkOrOptions : options
      const before = seen.get(path)?.length ?? 0
      const accept = (event: Event): boolean =>
        event.state !== undefined && (check?.(event.state.data as T, event.state.meta) ?? true)
      const waited = next(path, accept, timeoutMs)
      await listen(path)
      const state = (await waited)?.state
      if (state) return state.data as T
      const got = (seen.get(path) ?? []).slice(Math.max(before, 1)).map((s) => JSON.stringify(s.data))
      throw new Error(
        `listenjs/testing: no push of ${path} passed the check within ${timeoutMs} ms; ` +
          (got.length ? `states pushed meanwhile:\n  ${got.join('\n  ')}` : 'nothing was pushed'),
      )
    },
    async expectGone(path: string, { timeoutMs = 2000 }: WaitOptions = {}): Promise<number> {
      const waited = next(path, (event) => event.gone !== undefined, timeoutMs)
      await listen(path)
      const gone = (await waited)?.gone
      if (gone !== undefined) return gone
      throw new Error(`listenjs/testing: ${path} was not gone within ${timeoutMs} ms`)
    },
    async expectNoPush(path: string, { forMs = 200 }: { forMs?: number } = {}): Promise<void> {
      const waited = next(path, () => true, forMs)
      await listen(path)
      const event = await waited
      if (event === undefined) return
      const what = event.state
        ? JSON.stringify(event.state.data)
        : event.gone !== undefined
          ? `gone (${event.gone})`
          : `an error (${event.error?.code})`
      throw new Error(`listenjs/testing: ${path} was pushed within ${forMs} ms: ${what}`)
    },
    states: (path) => seen.get(path) ?? [],
    headers: () => client.headers(),
    async close() {
      client.close()
    },
  }
}

/** What came for a path after its snapshot: a state, a `gone` (its status), or an error. */
interface Event {
  readonly state?: State
  readonly gone?: number
  readonly error?: ListenjsError
}
