/**
 * The examples as a user runs them: each server is started as its own Node process from the built
 * package (`npm test` builds first), and a Node client listens to the appointments while the REST
 * API is used over HTTP.
 */
import type { ChildProcess } from 'node:child_process'
import WebSocket from 'ws'
import { createClient, type Client } from '../src/client'
import { EXAMPLES, startExample as start } from './helpers/examples'
import { until } from './helpers/wait'

interface Appointment {
  id: string
  title: string
  start: string
  end: string
}

describe.each(EXAMPLES)('the %s example', (_name, file) => {
  let child: ChildProcess
  let base: string
  let client: Client

  beforeAll(async () => {
    ;({ child, base } = await start(file))
    client = createClient({ url: `${base.replace('http', 'ws')}/listen`, WebSocket })
  })

  afterAll(async () => {
    client.close()
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  })

  it('serves the page and the browser client', async () => {
    const page = await fetch(`${base}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('id="status"')
    const script = await fetch(`${base}/listenjs/client.js`)
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toMatch(/javascript/)
  })

  it('pushes every successful change of the appointments to a listener, and nothing for a rejected one', async () => {
    const seen: Appointment[][] = []
    const off = client.listen<Appointment[]>('/api/appointments', (list) => seen.push(list))
    await until(() => seen.length === 1, 5000)
    const initial = seen[0]?.length ?? 0
    expect(initial).toBeGreaterThan(0)

    const send = (method: string, url: string, body?: unknown): Promise<Response> =>
      fetch(`${base}${url}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    const created = await send('POST', '/api/appointments', {
      title: 'Review',
      start: '2026-11-25T10:00:00.000Z',
      end: '2026-11-25T11:00:00.000Z',
    })
    expect(created.status).toBe(201)
    const { id } = (await created.json()) as Appointment
    await until(() => seen.length === 2, 5000)
    expect(seen[1]?.map((a) => a.id)).toContain(id)

    const patched = await send('PATCH', `/api/appointments/${id}`, { title: 'Review, moved' })
    expect(patched.status).toBe(200)
    await until(() => seen.length === 3, 5000)
    expect(seen[2]?.find((a) => a.id === id)?.title).toBe('Review, moved')

    const rejected = await send('POST', '/api/appointments', { title: '' })
    expect(rejected.status).toBe(400)

    expect((await send('DELETE', `/api/appointments/${id}`)).status).toBe(204)
    await until(() => seen.length === 4, 5000)
    // The rejected POST pushed nothing: the delete's state is the very next one.
    expect(seen[3]).toHaveLength(initial)
    off()
  })
})
