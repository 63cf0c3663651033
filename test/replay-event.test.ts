/**
 * The hub's `replay` event: one per replay, with its kind (snapshot or push), its outcome and its
 * duration; over a real socket, for each outcome a route can cause.
 */
import type { ReplayEvent } from '../src'
import { closeAll, connect, json, plain, until } from './helpers/plain'

afterEach(closeAll)

describe('the replay event', () => {
  it('says what became of each replay: changed, unchanged, gone, refused, failed, retried', async () => {
    const answers = new Map<string, [number, unknown]>([
      ['/a', [200, { v: 1 }]],
      ['/private', [403, {}]],
      ['/broken', [418, {}]],
    ])
    const server = await plain((req, res) => {
      const [status, body] = answers.get(req.url ?? '') ?? [404, {}]
      json(res, status, body)
    })
    const events: ReplayEvent[] = []
    server.hub.on('replay', (event) => events.push(event))
    const client = await connect(server.wsUrl)

    client.subscribe('/a')
    const snapshot = await client.next()
    await until(() => events.length === 1)
    expect(events[0]).toMatchObject({ path: '/a', kind: 'snapshot', outcome: 'changed', status: 200 })
    expect(events[0]!.durationMs).toBeGreaterThanOrEqual(0)

    const again = await connect(server.wsUrl)
    again.send({ type: 'subscribe', path: '/a', version: snapshot.version })
    await again.next()
    await until(() => events.length === 2)
    expect(events[1]).toMatchObject({ kind: 'snapshot', outcome: 'unchanged' })

    server.hub.notify('/a')
    await until(() => events.length === 3)
    expect(events[2]).toMatchObject({ kind: 'push', outcome: 'unchanged' })
    answers.set('/a', [200, { v: 2 }])
    server.hub.notify('/a')
    await until(() => events.length === 4)
    expect(events[3]).toMatchObject({ kind: 'push', outcome: 'changed' })
    answers.set('/a', [500, {}])
    server.hub.notify('/a')
    await until(() => events.length === 5)
    expect(events[4]).toMatchObject({ kind: 'push', outcome: 'retried', status: 500 })
    // Retried with backoff; by then the resource is gone.
    answers.set('/a', [410, {}])
    await until(() => events.some((e, i) => i > 4 && e.outcome === 'gone'), 5000)

    for (const [path, outcome, wait] of [
      ['/private', 'refused', false],
      ['/broken', 'failed', false],
      ['/nothing', 'refused', false],
      ['/later', 'gone', true],
    ] as const) {
      const count = events.length
      client.send({ type: 'subscribe', path, ...(wait ? { missing: 'wait' } : {}) })
      await until(() => events.slice(count).some((e) => e.path === path))
      expect(events.slice(count).find((e) => e.path === path)).toMatchObject({ kind: 'snapshot', outcome })
    }
  })
})
