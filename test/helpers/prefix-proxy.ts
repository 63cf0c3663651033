/**
 * A reverse proxy that serves an app under a path prefix and strips it, as nginx's
 * `location /app/ { proxy_pass http://app/; }` does: requests and WebSocket upgrades below `/app`
 * go to the app without `/app`, with `X-Forwarded-For`, `-Proto`, `-Host` and `-Prefix`. Other paths
 * answer 404.
 */
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'

export interface PrefixProxy {
  /** `http://127.0.0.1:port` */
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

/** Starts the proxy on 127.0.0.1 in front of `target` (`127.0.0.1:targetPort`). */
export async function prefixProxy(
  targetPort: number,
  prefix = '/app',
  options: { forwardPrefix?: boolean } = {},
): Promise<PrefixProxy> {
  const sockets = new Set<net.Socket>()
  const strip = (url: string | undefined): string | undefined => {
    if (!url?.startsWith(prefix)) return undefined
    const rest = url.slice(prefix.length)
    if (rest === '' || rest.startsWith('?')) return `/${rest}`
    return rest.startsWith('/') ? rest : undefined
  }
  const forwarded = (req: http.IncomingMessage): Record<string, string> => ({
    'x-forwarded-for': req.socket.remoteAddress ?? '',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': req.headers.host ?? '',
    ...(options.forwardPrefix === false ? {} : { 'x-forwarded-prefix': prefix }),
  })
  const server = http.createServer((req, res) => {
    const path = strip(req.url)
    if (path === undefined) {
      res.writeHead(404).end()
      return
    }
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: targetPort,
        method: req.method,
        path,
        headers: { ...req.headers, ...forwarded(req) },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.writeHead(502).end())
    req.pipe(upstream)
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const path = strip(req.url)
    if (path === undefined) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
      return
    }
    const upstream = net.connect(targetPort, '127.0.0.1', () => {
      const headers = { ...req.headers, ...forwarded(req) }
      const lines = Object.entries(headers).flatMap(([name, value]) =>
        (Array.isArray(value) ? value : [value]).map((v) => `${name}: ${v}`),
      )
      upstream.write(`${req.method} ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`)
      upstream.write(head)
      socket.pipe(upstream).pipe(socket)
    })
    for (const s of [socket, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        socket.destroy()
        upstream.destroy()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
