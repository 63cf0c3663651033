/**
 * A TCP proxy on loopback for fault injection: it sits between clients and a server port and, per
 * connection or for all of them, passes bytes through, stalls them (both directions paused, the
 * bytes kept in the socket buffers, then resumed in order), or cuts the connection (both sockets
 * destroyed, or reset with an RST). Every timer it sets is cleared by `close()`.
 */
import net from 'node:net'
import type { AddressInfo, Socket } from 'node:net'

/** What the proxy does with a connection's bytes. `cut` ends with a FIN, `reset` with an RST. */
export type ProxyMode = 'pass' | 'stall' | 'cut' | 'reset'

/** A random number generator in [0, 1), such as a seeded mulberry32. */
export type Rng = () => number

/** One client connection and its upstream connection to the target. */
export interface ProxiedConnection {
  readonly id: number
  /** The socket accepted from the client. */
  readonly downstream: Socket
  /** The socket connected to the target. */
  readonly upstream: Socket
  /** `pass`, `stall` while stalled, `cut` or `reset` once closed by the proxy, `closed` once closed by a peer. */
  readonly mode: ProxyMode | 'closed'
  /** Stops forwarding both ways; resumes after `ms` (or on `resume()` when `ms` is omitted). */
  stall(ms?: number): void
  /** Forwards again what a stall held back. */
  resume(): void
  /** Destroys both sockets; with `reset`, sends an RST where `resetAndDestroy` is available. */
  cut(reset?: boolean): void
}

export interface ProxyStats {
  /** Connections cut (`cut` or `reset`). */
  cuts: number
  /** Of which with an RST. */
  resets: number
  /** Stalls started. */
  stalls: number
  /** Client connections accepted. */
  connections: number
}

export interface Proxy {
  /** The port clients connect to. */
  readonly port: number
  readonly stats: ProxyStats
  /** The connections that are still open. */
  connections(): ProxiedConnection[]
  /**
   * Sets the mode of every open connection and of those accepted later: `stall` holds them until
   * the mode goes back to `pass`; `cut`/`reset` closes them and refuses new ones until then.
   */
  setMode(mode: ProxyMode): void
  /** Cuts a random open connection (FIN or RST at random); returns it, or undefined if none is open. */
  cutRandom(rng: Rng): ProxiedConnection | undefined
  /** Stalls a random open, unstalled connection for `ms`; returns it, or undefined if none. */
  stallRandom(ms: number, rng: Rng): ProxiedConnection | undefined
  /** Cuts every open connection. */
  cutAll(reset?: boolean): void
  /** Clears every timer, destroys every socket and stops listening. */
  close(): Promise<void>
}

/** A small seeded PRNG (mulberry32), so that a failing run can be replayed from its seed. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function destroy(socket: Socket, reset: boolean): void {
  const withReset = socket as Socket & { resetAndDestroy?: () => Socket }
  // `resetAndDestroy` throws on a socket that is not connected yet (no handle to reset).
  if (reset && typeof withReset.resetAndDestroy === 'function' && !socket.connecting && !socket.destroyed) {
    try {
      withReset.resetAndDestroy()
      return
    } catch {
      // fall through to a plain destroy
    }
  }
  socket.destroy()
}

/** Starts a proxy on 127.0.0.1 (port 0) that forwards to `targetPort` on 127.0.0.1. */
export async function startProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<Proxy> {
  const open = new Set<ProxiedConnection>()
  const timers = new Set<NodeJS.Timeout>()
  const stats: ProxyStats = { cuts: 0, resets: 0, stalls: 0, connections: 0 }
  let globalMode: ProxyMode = 'pass'
  let nextId = 1
  let closed = false

  const later = (ms: number, fn: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      fn()
    }, ms)
    timers.add(timer)
    return timer
  }

  function wire(downstream: Socket): ProxiedConnection {
    const upstream = net.connect(targetPort, targetHost)
    let mode: ProxyMode | 'closed' = 'pass'
    let stallTimer: NodeJS.Timeout | undefined
    // Whether each reader waits for its writer to drain (independently of a stall).
    const draining = new Map<Socket, boolean>([
      [downstream, false],
      [upstream, false],
    ])

    const flowing = (reader: Socket): void => {
      if (mode === 'pass' && !draining.get(reader) && !reader.destroyed) reader.resume()
    }

    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (to.destroyed) return
        if (!to.write(chunk)) {
          draining.set(from, true)
          from.pause()
          to.once('drain', () => {
            draining.set(from, false)
            flowing(from)
          })
        }
      })
      // A clean end travels on; the other side ends once its own peer ends.
      from.on('end', () => {
        if (!to.destroyed) to.end()
      })
      from.on('error', () => undefined)
      from.on('close', () => {
        if (mode === 'pass' || mode === 'stall') mode = 'closed'
        clearTimeout(stallTimer)
        if (stallTimer) timers.delete(stallTimer)
        open.delete(connection)
        if (!to.writableEnded) to.destroy()
      })
    }

    const connection: ProxiedConnection = {
      id: nextId++,
      downstream,
      upstream,
      get mode() {
        return mode
      },
      stall(ms) {
        if (mode !== 'pass') return
        mode = 'stall'
        stats.stalls++
        downstream.pause()
        upstream.pause()
        if (ms !== undefined) stallTimer = later(ms, () => connection.resume())
      },
      resume() {
        if (mode !== 'stall') return
        if (stallTimer) {
          clearTimeout(stallTimer)
          timers.delete(stallTimer)
          stallTimer = undefined
        }
        mode = 'pass'
        flowing(downstream)
        flowing(upstream)
      },
      cut(reset = false) {
        if (mode === 'cut' || mode === 'reset' || mode === 'closed') return
        mode = reset ? 'reset' : 'cut'
        stats.cuts++
        if (reset) stats.resets++
        open.delete(connection)
        destroy(downstream, reset)
        destroy(upstream, reset)
      },
    }
    forward(downstream, upstream)
    forward(upstream, downstream)
    open.add(connection)
    return connection
  }

  const server = net.createServer((downstream) => {
    if (closed || globalMode === 'cut' || globalMode === 'reset') {
      downstream.on('error', () => undefined)
      destroy(downstream, globalMode === 'reset')
      return
    }
    stats.connections++
    downstream.setNoDelay(true)
    const connection = wire(downstream)
    connection.upstream.setNoDelay(true)
    if (globalMode === 'stall') connection.stall()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port

  const pick = (rng: Rng, candidates: ProxiedConnection[]): ProxiedConnection | undefined =>
    candidates.length === 0 ? undefined : candidates[Math.floor(rng() * candidates.length)]

  return {
    port,
    stats,
    connections: () => [...open],
    setMode(mode) {
      globalMode = mode
      for (const connection of [...open]) {
        if (mode === 'pass') connection.resume()
        else if (mode === 'stall') connection.stall()
        else connection.cut(mode === 'reset')
      }
    },
    cutRandom(rng) {
      const connection = pick(rng, [...open])
      connection?.cut(rng() < 0.5)
      return connection
    },
    stallRandom(ms, rng) {
      const connection = pick(
        rng,
        [...open].filter((c) => c.mode === 'pass'),
      )
      connection?.stall(ms)
      return connection
    },
    cutAll(reset = false) {
      for (const connection of [...open]) connection.cut(reset)
    },
    async close() {
      closed = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      for (const connection of [...open]) {
        connection.downstream.destroy()
        connection.upstream.destroy()
      }
      open.clear()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
