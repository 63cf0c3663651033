/**
 * Mistakes are reported, not silent: a write that never passed the listenjs middleware (mounted after
 * the routes) changes nothing for subscribers, and says so with a process warning that names the
 * write and the fix.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import { listenjs as expressListenjs } from '../src/adapters/express'
import { listenjs as koaListenjs } from '../src/adapters/koa'
import { until } from './helpers/wait'

/** The listenjs warnings emitted while it watches (spied: a test sandbox does not see 'warning' events). */
function warnings(): { seen: Error[]; stop(): void } {
  const seen: Error[] = []
  const spy = jest.spyOn(process, 'emitWarning').mockImplementation((warning, options) => {
    const code =
      typeof options === 'object' && options !== null ? (options as { code?: string }).code : undefined
    if (code === 'LISTENJS_UNTRACKED_WRITE') seen.push(new Error(String(warning)))
  })
  return { seen, stop: () => spy.mockRestore() }
}

async function serve(
  handler: http.RequestListener,
  attach: (s: http.Server) => unknown,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler)
  attach(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

describe.each([
  [
    'express',
    () => {
      const live = expressListenjs()
      const app = express()
      app.post('/items', (_req, res) => res.status(201).json({ ok: true }))
      app.get('/items', (_req, res) => res.json([]))
      app.use(live) // too late: the routes above answer first
      return { handler: app as http.RequestListener, live }
    },
  ],
  [
    'koa',
    () => {
      const live = koaListenjs()
      const app = new Koa()
      const router = new Router()
      router.post('/items', (ctx) => {
        ctx.status = 201
        ctx.body = { ok: true }
      })
      app.use(router.routes())
      app.use(live.middleware) // too late
      return { handler: app.callback(), live }
    },
  ],
])('%s middleware mounted after the routes', (_name, build) => {
  it('warns once per write, naming the method, the path and the fix', async () => {
    const { handler, live } = build()
    const watch = warnings()
    const server = await serve(handler, (s) => live.attach(s))
    try {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${server.url}/items`, { method: 'POST' })
        expect(res.status).toBe(201)
      }
      await until(() => watch.seen.length > 0)
      await fetch(`${server.url}/items`, { method: 'POST' })
      expect(watch.seen).toHaveLength(1)
      expect(watch.seen[0]?.message).toMatch(
        /POST \/items answered 201 without passing the listenjs middleware/,
      )
      expect(watch.seen[0]?.message).toMatch(/Mount it before your routes/)
    } finally {
      watch.stop()
      await live.hub.close()
      await server.close()
    }
  })
})

it('says nothing when the middleware is mounted first', async () => {
  const live = expressListenjs()
  const app = express()
  app.use(live)
  app.post('/items', (_req, res) => res.status(201).json({ ok: true }))
  const watch = warnings()
  const server = await serve(app as http.RequestListener, (s) => live.attach(s))
  try {
    expect((await fetch(`${server.url}/items`, { method: 'POST' })).status).toBe(201)
    // A second, tracked write proves the first one's finish has been handled.
    expect((await fetch(`${server.url}/items`, { method: 'POST' })).status).toBe(201)
    await new Promise((resolve) => setImmediate(resolve))
    expect(watch.seen).toHaveLength(0)
  } finally {
    watch.stop()
    await live.hub.close()
    await server.close()
  }
})

describe('a client pointed at the wrong place', () => {
  it('says so once on the console with the URL and HTTP status, and to code, while it keeps retrying', async () => {
    const { createClient } = await import('../src/client')
    const WebSocket = (await import('ws')).default
    // A server with no hub: it answers every request, upgrades included, with 404.
    let attempts = 0
    const server = await serve(
      (_req, res) => {
        attempts++
        res.statusCode = 404
        res.end()
      },
      () => undefined,
    )
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {})
    const url = `${server.url.replace('http', 'ws')}/listen`
    const client = createClient({ url, WebSocket, reconnect: { initialDelayMs: 5, maxDelayMs: 20 } })
    const seen: Array<[string, string | undefined, number | undefined]> = []
    client.onStatus((status, error) => seen.push([status, error?.code, error?.status]))
    try {
      client.listen('/items', () => {})
      // It keeps retrying, and says why only once.
      await until(() => attempts >= 3, 10_000)
      expect(seen).toContainEqual(['reconnecting', 'endpoint_not_found', 404])
      expect(client.error()).toMatchObject({ code: 'endpoint_not_found', status: 404 })
      expect(warn).toHaveBeenCalledTimes(1)
      expect(String(warn.mock.calls[0]?.[0])).toContain(`cannot open ${url} (HTTP 404)`)
    } finally {
      client.close()
      warn.mockRestore()
      await server.close()
    }
  })

  it('with no retries left, warns without promising a retry and closes', async () => {
    const { createClient } = await import('../src/client')
    const WebSocket = (await import('ws')).default
    const server = await serve(
      (_req, res) => {
        res.statusCode = 404
        res.end()
      },
      () => undefined,
    )
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {})
    const url = `${server.url.replace('http', 'ws')}/listen`
    const client = createClient({ url, WebSocket, reconnect: { retries: 0 } })
    const seen: string[] = []
    client.onStatus((status) => seen.push(status))
    try {
      client.listen('/items', () => {})
      await until(() => seen.includes('closed'), 10_000)
      expect(seen).not.toContain('reconnecting')
      expect(warn).toHaveBeenCalledTimes(1)
      const said = String(warn.mock.calls[0]?.[0])
      expect(said).toContain(`cannot open ${url} (HTTP 404)`)
      expect(said).not.toMatch(/retry/i)
    } finally {
      client.close()
      warn.mockRestore()
      await server.close()
    }
  })

  it('reports a port nobody listens on as endpoint_unreachable', async () => {
    const { createClient } = await import('../src/client')
    const WebSocket = (await import('ws')).default
    const closed = await serve(
      (_req, res) => res.end(),
      () => undefined,
    )
    const url = `${closed.url.replace('http', 'ws')}/listen`
    await closed.close()
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {})
    const client = createClient({ url, WebSocket, reconnect: { initialDelayMs: 5, maxDelayMs: 20 } })
    try {
      client.listen('/items', () => {})
      await until(() => client.error() !== undefined, 10_000)
      expect(client.error()).toMatchObject({ code: 'endpoint_unreachable', status: undefined })
      expect(warn).toHaveBeenCalledTimes(1)
    } finally {
      client.close()
      warn.mockRestore()
    }
  })
})
