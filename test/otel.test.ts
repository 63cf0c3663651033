/**
 * `listenjs/otel` with the OpenTelemetry metrics SDK: the hub's gauges and counters are collected,
 * pushes and closes counted, nothing keyed by a path; stopping removes every callback.
 */
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
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

  it('collects the gauges and counters of the hub, counts pushes and closes; no attribute names a path', async () => {
    const reader = new Reader()
    const provider = new MeterProvider({ readers: [reader] })
    const stop = instrument(app.hub, { meter: provider.getMeter('test') })
    const client = await TestClient.connect(app.wsUrl)
    client.subscribe('/items')
    await client.next()
    await fetch(`${app.url}/items`, {
      method: 'POST',
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
    expect(points.get('listenjs.pushes')).toEqual([[1, {}]])
    expect(points.get('listenjs.push.recipients')?.[0]?.[0]).toMatchObject({ count: 1, sum: 1 })
    // One snapshot and one push, each with its outcome; nothing keyed by the path.
    const replays = points.get('listenjs.replay.duration') ?? []
    expect(replays.map(([value, attributes]) => [(value as { count: number }).count, attributes])).toEqual(
      expect.arrayContaining([
        [1, { 'listenjs.replay.kind': 'snapshot', 'listenjs.replay.outcome': 'changed' }],
        [1, { 'listenjs.replay.kind': 'push', 'listenjs.replay.outcome': 'changed' }],
      ]),
    )
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
        for (const value of Object.values(attributes)) expect(String(value)).not.toMatch(/\//)
    stop()
    // Stopped: a new socket and a push are not observed any more.
    const late = await TestClient.connect(app.wsUrl)
    late.subscribe('/items')
    await late.next()
    await fetch(`${app.url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'not counted' }),
    })
    await late.next()
    points = await collect(reader)
    expect(points.get('listenjs.connections')?.[0]?.[0] ?? 0).toBe(0)
    expect(points.get('listenjs.pushes')).toEqual([[1, {}]])
    await late.close()
    await provider.shutdown()
  })
})
