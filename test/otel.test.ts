/**
 * `listenjs/otel` with the OpenTelemetry metrics SDK: the hub's gauges and counters are collected,
 * pushes, their latency and closes counted by route template, nothing keyed by a path; a
 * backplane's message counters; stopping removes every callback. Traces: otel-traces.test.ts.
 */
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { memoryBackplane } from '../src'
import { instrument } from '../src/otel'
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { TestClient } from './helpers/tclient'

/** A reader the test collects from when it wants. */
class Reader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

/** Every data point by metric name: [value, attributes]. */
async function collect(reader: Reader): Promise<Map<string, Array<[unknown, Record<string, unknown>]>>> {
  const { resourceMetrics } = (await reader.collect()) as { resourceMetrics: ResourceMetrics }
  const points = new Map<string, Array<[unknown, Record<string, unknown>]>>()
  for (const scope of resourceMetrics.scopeMetrics)
    for (const metric of scope.metrics)
      points.set(
        metric.descriptor.name,
        metric.dataPoints.map((point) => [point.value, point.attributes as Record<string, unknown>]),
      )
  return points
}

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  beforeEach(async () => {
    app = await startFixture(framework)
  })
  afterEach(async () => {
    await app.close()
  })

  it('collects the gauges and counters of the hub, counts pushes and closes by route template; no attribute names a path', async () => {
    const reader = new Reader()
    const provider = new MeterProvider({ readers: [reader] })
    const stop = instrument(app.hub, { meter: provider.getMeter('test') })
    const { id } = app.state.create('first')
    const client = await TestClient.connect(app.wsUrl)
    client.subscribe(`/items/${id}`)
    await client.next()
    await fetch(`${app.url}/items/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'counted' }),
    })
    await client.next()
    let points = await collect(reader)
    expect(points.get('listenjs.connections')).toEqual([[1, {}]])
    expect(points.get('listenjs.subscriptions')).toEqual([[1, {}]])
    expect(points.get('listenjs.backplane.connected')).toEqual([
      [1, { 'listenjs.backplane.state': 'memory' }],
    ])
    expect(points.get('listenjs.replays')?.[0]?.[0]).toBeGreaterThanOrEqual(2)
    const route = { 'http.route': '/items/:id' }
    expect(points.get('listenjs.pushes')).toEqual([[1, route]])
    expect(points.get('listenjs.push.recipients')?.[0]).toEqual([
      expect.objectContaining({ count: 1, sum: 1 }),
      route,
    ])
    // The write-to-push latency: one push, from the change's publication; real time, not a constant.
    const [latency, latencyAttributes] = points.get('listenjs.push.latency')?.[0] ?? []
    expect(latencyAttributes).toEqual(route)
    expect(latency).toMatchObject({ count: 1 })
    expect((latency as { sum: number }).sum).toBeGreaterThan(0)
    expect((latency as { sum: number }).sum).toBeLessThan(10_000)
    // One snapshot and one push, each with its outcome and route; nothing keyed by the path.
    const replays = points.get('listenjs.replay.duration') ?? []
    expect(replays.map(([value, attributes]) => [(value as { count: number }).count, attributes])).toEqual(
      expect.arrayContaining([
        [1, { ...route, 'listenjs.replay.kind': 'snapshot', 'listenjs.replay.outcome': 'changed' }],
        [1, { ...route, 'listenjs.replay.kind': 'push', 'listenjs.replay.outcome': 'changed' }],
      ]),
    )
    // A memory backplane keeps no message counters.
    expect(points.has('listenjs.backplane.messages')).toBe(false)
    await client.close()
    await new Promise<void>((resolve) => {
      const check = (): void => (app.hub.stats().connections === 0 ? resolve() : void setImmediate(check))
      check()
    })
    points = await collect(reader)
    expect(points.get('listenjs.connections')).toEqual([[0, {}]])
    expect(points.get('listenjs.closes')).toEqual([[1, { 'listenjs.close_code': 1005 }]])
    for (const [, data] of points)
      for (const [, attributes] of data)
        for (const value of Object.values(attributes))
          if (String(value).includes('/')) expect(value).toBe('/items/:id')
    stop()
    // Stopped: a new socket and a push are not observed any more.
    const late = await TestClient.connect(app.wsUrl)
    late.subscribe(`/items/${id}`)
    await late.next()
    await fetch(`${app.url}/items/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'not counted' }),
    })
    await late.next()
    points = await collect(reader)
    expect(points.get('listenjs.connections')?.[0]?.[0] ?? 0).toBe(0)
    expect(points.get('listenjs.pushes')).toEqual([[1, route]])
    await late.close()
    await provider.shutdown()
  })
})

describe('backplane counters', () => {
  it('publishes a backplane’s message counters by outcome, and its outages', async () => {
    const counters = { published: 3, dropped: 1, received: 5, malformed: 2, outages: 1 }
    const backplane = { ...memoryBackplane(), stats: () => counters }
    const app = await startFixture('fastify', { hub: { backplane } })
    const reader = new Reader()
    const provider = new MeterProvider({ readers: [reader] })
    instrument(app.hub, { meter: provider.getMeter('test') })
    const points = await collect(reader)
    expect(points.get('listenjs.backplane.messages')).toEqual([
      [3, { 'listenjs.backplane.outcome': 'published' }],
      [1, { 'listenjs.backplane.outcome': 'dropped' }],
      [5, { 'listenjs.backplane.outcome': 'received' }],
      [2, { 'listenjs.backplane.outcome': 'malformed' }],
    ])
    expect(points.get('listenjs.backplane.outages')).toEqual([[1, {}]])
    await provider.shutdown()
    await app.close()
  })
})
