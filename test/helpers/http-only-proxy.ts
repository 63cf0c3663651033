/**
 * A reverse proxy on loopback as some corporate proxies are: plain HTTP goes through (streamed both
 * ways, each request to the next target in turn: round robin, no stickiness), every WebSocket
 * upgrade is refused with HTTP 403.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface HttpOnlyProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** Upgrades refused so far. */
  readonly refused: number
  /** Requests sent to each target, in the order of `targets`. */
  readonly served: number[]
  close(): Promise<void>
}

/** Starts the proxy in front of the servers on `targets` (ports on 127.0.0.1). */
export async function httpOnlyProxy(targets: readonly number[]): Promise<HttpOnlyProxy> {
  let next = 0
  let refused = 0
  const served = targets.map(() => 0)
  const server = http.createServer((req, res) => {
    const index = next++ % targets.length
    served[index]!++
    const upstream = http.request(
      { host: '127.0.0.1', port: targets[index], method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })
  server.on('upgrade', (_req, socket) => {
    refused++
    socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    get refused() {
      return refused
    },
    served,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
