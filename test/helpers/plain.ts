/**
 * A hub on a plain `http` server (no framework), for tests of the core, and small helpers shared by
 * the test files: `until`, `sleep`, `json`.
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createHub, type Hub, type HubOptions } from '../../src'
import { TestClient } from './tclient'

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>

export interface Plain {
  hub: Hub
  /** `http://127.0.0.1:port` */
  url: string
  /** `ws://127.0.0.1:port/listen` */
  wsUrl: string
  /** The server side of every TCP connection accepted so far. */
  sockets: Socket[]
  close(): Promise<void>
}

export { sleep, until } from './wait'

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** What a test opened, closed by {@link closeAll} (call it in `afterEach`). */
const open: Array<Plain | TestClient> = []

export async function closeAll(): Promise<void> {
  for (const item of open.splice(0).reverse()) await item.close()
}

/** Starts `handler` on 127.0.0.1 (port 0 unless given) with a hub attached; every request is tracked. */
export async function plain(handler: Handler, options: HubOptions = {}, port = 0): Promise<Plain> {
  const hub = createHub(options)
  const server = http.createServer((req, res) => {
    hub.track(req, res, req.url ?? '/', () => undefined)
    void handler(req, res)
  })
  const sockets: Socket[] = []
  server.on('connection', (socket) => sockets.push(socket))
  hub.attach(server)
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const bound = (server.address() as AddressInfo).port
  const result: Plain = {
    hub,
    url: `http://127.0.0.1:${bound}`,
    wsUrl: `ws://127.0.0.1:${bound}/listen`,
    sockets,
    close: async () => {
      await hub.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
  open.push(result)
  return result
}

/** Connects a test client (closed by {@link closeAll}). */
export async function connect(
  url: string,
  headers?: Record<string, string>,
  protocols?: string[],
): Promise<TestClient> {
  const client = await TestClient.connect(url, { headers, protocols })
  open.push(client)
  return client
}
