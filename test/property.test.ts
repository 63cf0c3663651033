/**
 * A property over interleavings: whatever sequence of listen, unlisten, mutation, disconnect, stall
 * and waiting happens, once things settle every listener holds the server's current state of its path,
 * it never went backwards, and an unlistened listener is never called again. Real sockets: a plain
 * server, and each client behind its own TCP proxy so that a disconnect cuts exactly that client.
 * FC_SEED replays a failing run (fast-check prints the seed and the shrunk commands); FC_RUNS
 * changes the number of runs (100).
 */
import fc from 'fast-check'
import type { IncomingMessage, ServerResponse } from 'node:http'
import WebSocket from 'ws'
import { createClient, type Client, type Unlisten } from '../src/client'
import { closeAll, json, plain, sleep, until } from './helpers/plain'
import { startProxy, type Proxy } from './helpers/proxy'

const CLIENTS = 3
const PATHS = ['/p/0', '/p/1', '/p/2']

afterEach(closeAll)

/** One `listen` call: every value it was given, and how many it had when it was stopped. */
interface Listener {
  readonly ns: number[]
  readonly kinds: string[]
  unlisten: Unlisten
  stoppedAt?: number
  ready: boolean
}

/** What the commands predict: listeners per client and path, and each path's counter. */
interface Model {
  readonly listeners: number[][]
  readonly n: number[]
}

interface Real {
  readonly url: string
  readonly clients: Client[]
  readonly proxies: Proxy[]
  /** `[client][path]`: the listeners still listening, oldest first. */
  readonly listening: Listener[][][]
  readonly stopped: Listener[]
  readonly writes: Array<Promise<void>>
}

type Command = fc.AsyncCommand<Model, Real>

const add = (counts: number[], i: number, delta: number): void => {
  counts[i] = (counts[i] ?? 0) + delta
}

class Listen implements Command {
  constructor(
    readonly client: number,
    readonly path: number,
  ) {}
  check = (): boolean => true
  async run(model: Model, real: Real): Promise<void> {
    add(model.listeners[this.client] as number[], this.path, 1)
    const listener: Listener = {
      ns: [],
      kinds: [],
      unlisten: undefined as unknown as Unlisten,
      ready: false,
    }
    listener.unlisten = (real.clients[this.client] as Client).listen<{ n: number }>(
      PATHS[this.path] as string,
      (data, meta) => {
        listener.ns.push(data.n)
        listener.kinds.push(meta.kind)
      },
    )
    // Rejects with `closed` when unlistened before its first value; only resolving matters here.
    listener.unlisten.ready.then(
      () => (listener.ready = true),
      () => undefined,
    )
    real.listening[this.client]?.[this.path]?.push(listener)
  }
  toString = (): string => `listen(client ${this.client}, ${PATHS[this.path]})`
}

class StopListening implements Command {
  constructor(
    readonly client: number,
    readonly path: number,
    readonly which: number,
  ) {}
  check = (model: Model): boolean => (model.listeners[this.client]?.[this.path] ?? 0) > 0
  async run(model: Model, real: Real): Promise<void> {
    add(model.listeners[this.client] as number[], this.path, -1)
    const list = real.listening[this.client]?.[this.path] as Listener[]
    const [listener] = list.splice(this.which % list.length, 1) as [Listener]
    listener.unlisten()
    listener.stoppedAt = listener.ns.length
    real.stopped.push(listener)
  }
  toString = (): string => `unlisten(client ${this.client}, ${PATHS[this.path]}, #${this.which})`
}

class Mutate implements Command {
  constructor(
    readonly path: number,
    readonly wait: boolean,
  ) {}
  check = (): boolean => true
  async run(model: Model, real: Real): Promise<void> {
    add(model.n, this.path, 1)
    const write = fetch(real.url + PATHS[this.path], { method: 'POST' }).then((response) => {
      expect(response.status).toBe(200)
    })
    if (this.wait) await write
    else real.writes.push(write)
  }
  toString = (): string => `${this.wait ? 'mutate' : 'mutateAsync'}(${PATHS[this.path]})`
}

class Disconnect implements Command {
  constructor(
    readonly client: number,
    readonly reset: boolean,
    readonly whenConnected: boolean,
  ) {}
  // A client that listens to nothing has no socket to cut.
  check = (model: Model): boolean => model.listeners[this.client]?.some((count) => count > 0) ?? false
  async run(_model: Model, real: Real): Promise<void> {
    const proxy = real.proxies[this.client] as Proxy
    // Either cuts whatever is there right now (maybe a socket still connecting, or none while the
    // client backs off), or first waits (bounded) for the client's socket.
    if (this.whenConnected) await until(() => proxy.connections().length > 0, 2000)
    proxy.cutAll(this.reset)
  }
  toString = (): string =>
    `disconnect(client ${this.client}${this.reset ? ', RST' : ''}${this.whenConnected ? ', when connected' : ''})`
}

class Stall implements Command {
  constructor(
    readonly client: number,
    readonly ms: number,
  ) {}
  check = (): boolean => true
  async run(_model: Model, real: Real): Promise<void> {
    for (const connection of real.proxies[this.client]?.connections() ?? []) connection.stall(this.ms)
  }
  toString = (): string => `stall(client ${this.client}, ${this.ms} ms)`
}

class Wait implements Command {
  constructor(readonly ms: number) {}
  check = (): boolean => true
  async run(): Promise<void> {
    await sleep(this.ms)
  }
  toString = (): string => `wait(${this.ms} ms)`
}

const client = fc.integer({ min: 0, max: CLIENTS - 1 })
const path = fc.integer({ min: 0, max: PATHS.length - 1 })
const listen = fc.tuple(client, path).map(([c, p]) => new Listen(c, p))
// Listen is listed twice so that most runs have listeners to unlisten and sockets to cut.
const commands = fc.commands(
  [
    listen,
    listen,
    fc.tuple(client, path, fc.nat(3)).map(([c, p, w]) => new StopListening(c, p, w)),
    fc.tuple(path, fc.boolean()).map(([p, w]) => new Mutate(p, w)),
    fc.tuple(client, fc.boolean(), fc.boolean()).map(([c, r, w]) => new Disconnect(c, r, w)),
    fc.tuple(client, fc.integer({ min: 1, max: 50 })).map(([c, ms]) => new Stall(c, ms)),
    fc.integer({ min: 0, max: 30 }).map((ms) => new Wait(ms)),
  ],
  { maxCommands: 20, size: 'max' },
)

/** Runs `cmds` against a fresh server, proxies and clients, then checks the final state. */
async function run(cmds: Iterable<Command>): Promise<void> {
  const values = new Map<string, number>()
  const server = await plain(async (req: IncomingMessage, res: ServerResponse) => {
    const key = (req.url ?? '/').split('?')[0] as string
    if (req.method === 'GET') json(res, 200, { n: values.get(key) ?? 0 })
    else {
      values.set(key, (values.get(key) ?? 0) + 1)
      json(res, 200, { n: values.get(key) })
    }
  })
  const port = Number(new URL(server.url).port)
  const proxies: Proxy[] = []
  const clients: Client[] = []
  try {
    for (let i = 0; i < CLIENTS; i++) {
      const proxy = await startProxy(port)
      proxies.push(proxy)
      clients.push(
        createClient({
          url: `ws://127.0.0.1:${proxy.port}/listen`,
          WebSocket,
          reconnect: { initialDelayMs: 10, maxDelayMs: 200 },
        }),
      )
    }
    const real: Real = {
      url: server.url,
      clients,
      proxies,
      listening: clients.map(() => PATHS.map(() => [])),
      stopped: [],
      writes: [],
    }
    const model: Model = { listeners: clients.map(() => PATHS.map(() => 0)), n: PATHS.map(() => 0) }
    await fc.asyncModelRun(() => ({ model, real }), cmds)
    await Promise.all(real.writes)

    // Settled: every listener holds the server's state (a fresh GET) and its `ready` resolved.
    const truth: number[] = []
    for (const p of PATHS) truth.push(((await (await fetch(server.url + p)).json()) as { n: number }).n)
    expect(truth).toEqual(model.n)
    const active = real.listening.flatMap((byPath, c) =>
      byPath.flatMap((list, p) => list.map((listener) => ({ c, p, listener }))),
    )
    const behind = (): string[] =>
      active
        .filter(({ p, listener }) => listener.ns.at(-1) !== truth[p] || !listener.ready)
        .map(
          ({ c, p, listener }) =>
            `client ${c} ${PATHS[p]}: got [${listener.ns.join(', ')}], GET says ${truth[p]}, ready ${listener.ready}, status ${clients[c]?.status()}`,
        )
    await until(() => behind().length === 0, 5000).catch(() => {
      throw new Error(`not converged:\n${behind().join('\n')}`)
    })

    // Never an older state; never the same state twice in a row (also for a listener of a path its
    // client unlistened and listened again while frames of the old subscription were on the wire).
    const repeats = active.flatMap(({ c, p, listener }) =>
      listener.ns.flatMap((n, k) => {
        const before = listener.ns[k - 1]
        if (before === undefined || n > before) return []
        const seen = listener.ns.map((value, i) => `${value} ${listener.kinds[i]}`).join(', ')
        return [`client ${c} ${PATHS[p]}: ${before} then ${n} in [${seen}]`]
      }),
    )
    expect(repeats).toEqual([])
    // A stopped listener is never called again.
    for (const listener of real.stopped) expect(listener.ns.length).toBe(listener.stoppedAt)
  } finally {
    for (const c of clients) c.close()
    for (const proxy of proxies) await proxy.close()
    await closeAll()
  }
}

it('leaves every listener at the server’s current state after any interleaving of listen, unlisten, mutation and disconnect', async () => {
  const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined
  const numRuns = process.env.FC_RUNS ? Number(process.env.FC_RUNS) : 100
  await fc.assert(
    fc.asyncProperty(commands, (cmds) => run(cmds)),
    { numRuns, seed, interruptAfterTimeLimit: 50_000 },
  )
}, 60_000)
