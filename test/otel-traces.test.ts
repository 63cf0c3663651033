/**
 * `listenjs/otel` traces with the OpenTelemetry tracing SDK and its AsyncLocalStorage context
 * manager, over real sockets: a write's span is the parent of its `listenjs change` span, whose
 * children are the push replay (an HTTP server span, active while the app's handler runs, marked as
 * a replay) and the push; the change's context crosses a real Redis to another process's replays;
 * a tracer that throws costs its spans, never a push.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { context, SpanKind, trace, type SpanContext, type Tracer } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace'
import { isReplay, memoryBackplane, type BackplaneMessage, type PushEvent, type Telemetry } from '../src'
import { instrument } from '../src/otel'
import { redisBackplane } from '../src/redis'
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { describeWithRedis, REDIS_URL, uniquePrefix } from './helpers/redis'
import { TestClient } from './helpers/tclient'
import { until } from './helpers/wait'

/** A request the app's own HTTP instrumentation saw: its span, and the span active when it came. */
interface Seen {
  readonly method: string | undefined
  readonly url: string | undefined
  readonly replay: boolean
  readonly span: SpanContext
  readonly parent: SpanContext | undefined
}

/**
 * Does what an app's HTTP server instrumentation does: a server span per request, a child of the
 * span active when the server emits `request`, active while the app handles it.
 */
function instrumentServer(server: Server, tracer: Tracer): Seen[] {
  const seen: Seen[] = []
  const emit = server.emit as (this: Server, event: string | symbol, ...args: unknown[]) => boolean
  server.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'request') return emit.call(this, event, ...args)
    const [req, res] = args as [IncomingMessage, ServerResponse]
    const parent = trace.getActiveSpan()?.spanContext()
    const span = tracer.startSpan(req.method ?? 'HTTP', { kind: SpanKind.SERVER })
    seen.push({ method: req.method, url: req.url, replay: isReplay(req), span: span.spanContext(), parent })
    res.once('finish', () => span.end())
    return context.with(trace.setSpan(context.active(), span), () => emit.call(this, event, ...args))
  } as Server['emit']
  return seen
}

const contextManager = new AsyncLocalStorageContextManager()
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable())
})
afterAll(() => {
  context.disable()
})

function tracing(): { tracer: Tracer; spans: () => ReadableSpan[]; provider: TracerProvider } {
  const exporter = new InMemorySpanExporter()
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })
  return { tracer: provider.getTracer('test'), spans: () => exporter.getFinishedSpans(), provider }
}

const idOf = (span: ReadableSpan): string => span.spanContext().spanId
const traceOf = (span: ReadableSpan): string => span.spanContext().traceId

async function put(app: Fixture, id: string, title: string): Promise<void> {
  const response = await fetch(`${app.url}/items/${id}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title }),
  })
  expect(response.status).toBe(200)
}

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  afterEach(async () => {
    await app?.close()
  })

  it('a write’s span → listenjs change → a GET server span per replay (the app’s instrumentation nests in it) and the push', async () => {
    const published: BackplaneMessage[] = []
    const memory = memoryBackplane()
    const backplane = {
      ...memory,
      publish(message: Parameters<typeof memory.publish>[0]) {
        published.push(message)
        memory.publish(message)
      },
    }
    app = await startFixture(framework, { hub: { backplane } })
    const { tracer, spans, provider } = tracing()
    const stop = instrument(app.hub, { tracer })
    const seen = instrumentServer(app.server as Server, tracer)
    const { id } = app.state.create('traced')
    const client = await TestClient.connect(app.wsUrl)
    client.subscribe(`/items/${id}`)
    expect(await client.next()).toMatchObject({ type: 'data', snapshot: true })
    await put(app, id, 'moved')
    expect(await client.next()).toMatchObject({ type: 'data', json: { title: 'moved' } })
    await until(() => spans().some((span) => span.name === 'listenjs push'))

    const write = seen.find((request) => request.method === 'PUT')!.span
    const change = spans().find((span) => span.name === 'listenjs change')!
    expect(change.kind).toBe(SpanKind.PRODUCER)
    expect(change.parentSpanContext?.spanId).toBe(write.spanId)
    expect(traceOf(change)).toBe(write.traceId)
    // Its context travelled with the change (the memory backplane carries it as Redis would).
    const message = published.find((m) => m.kind === 'change' && m.paths.includes(`/items/${id}`))
    expect(message).toMatchObject({ trace: `00-${write.traceId}-${idOf(change)}-01` })
    expect(message).toHaveProperty('at', expect.any(Number))

    const replays = spans().filter((span) => span.attributes['listenjs.replay'] === true)
    const push = replays.find((span) => span.attributes['listenjs.replay.kind'] === 'push')!
    expect(push).toMatchObject({ name: 'GET /items/:id', kind: SpanKind.SERVER })
    expect(push.parentSpanContext?.spanId).toBe(idOf(change))
    expect(traceOf(push)).toBe(write.traceId)
    expect(push.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/items/:id',
      'url.path': `/items/${id}`,
      'http.response.status_code': 200,
      'listenjs.replay.outcome': 'changed',
    })
    // The app's own instrumentation saw a request, inside the replay's span.
    const inside = seen.filter((request) => request.replay && request.parent?.spanId === idOf(push))
    expect(inside).toHaveLength(1)
    expect(inside[0]!.url).toBe(`/items/${id}`)

    const pushed = spans().find((span) => span.name === 'listenjs push')!
    expect(pushed.parentSpanContext?.spanId).toBe(idOf(change))
    expect(pushed.attributes).toMatchObject({ 'listenjs.push.recipients': 1, 'http.route': '/items/:id' })

    // The snapshot's replay starts a trace of its own.
    const snapshot = replays.find((span) => span.attributes['listenjs.replay.kind'] === 'snapshot')!
    expect(snapshot.name).toBe('GET /items/:id')
    expect(snapshot.parentSpanContext).toBeUndefined()
    expect(seen.some((request) => request.replay && request.parent?.spanId === idOf(snapshot))).toBe(true)

    // Stopped: no more spans, and changes carry no trace context any more.
    stop()
    const ours = (): ReadableSpan[] =>
      spans().filter(
        (span) => span.name.startsWith('listenjs') || span.attributes['listenjs.replay'] === true,
      )
    const before = ours().length
    await put(app, id, 'untraced')
    await client.next()
    expect(ours()).toHaveLength(before)
    // The app's own span of that replay has no listenjs parent.
    expect(seen.at(-1)).toMatchObject({ replay: true, parent: undefined })
    expect(published.at(-1)).not.toHaveProperty('trace')
    await client.close()
    await provider.shutdown()
  })
})

describe('trace context from a backplane', () => {
  let app: Fixture
  afterEach(async () => {
    await app?.close()
  })

  it('parents a replay on a valid traceparent, and starts a trace on an all-zero one (no trace)', async () => {
    const backplane = memoryBackplane()
    app = await startFixture('fastify', { hub: { backplane } })
    const { tracer, spans, provider } = tracing()
    instrument(app.hub, { tracer })
    const { id } = app.state.create('remote')
    const client = await TestClient.connect(app.wsUrl)
    client.subscribe(`/items/${id}`)
    await client.next()
    const pushReplays = (): ReadableSpan[] =>
      spans().filter((span) => span.attributes['listenjs.replay.kind'] === 'push')
    const remote = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    for (const trace of [
      remote,
      `00-${'0'.repeat(32)}-b7ad6b7169203331-01`,
      `00-0af7651916cd43dd8448eb211c80319c-${'0'.repeat(16)}-01`,
    ]) {
      const before = pushReplays().length
      backplane.publish({ kind: 'change', paths: [`/items/${id}`], at: Date.now(), trace })
      app.state.items.set(id, { id, title: trace })
      await client.next()
      await until(() => pushReplays().length > before)
    }
    const [valid, zeroTrace, zeroSpan] = pushReplays()
    expect(valid!.parentSpanContext).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      isRemote: true,
    })
    expect(traceOf(valid!)).toBe('0af7651916cd43dd8448eb211c80319c')
    expect(zeroTrace!.parentSpanContext).toBeUndefined()
    expect(zeroSpan!.parentSpanContext).toBeUndefined()
    await client.close()
    await provider.shutdown()
  })
})

describe('headers a tracer adds to replays', () => {
  let app: Fixture
  afterEach(async () => {
    await app?.close()
  })

  it('carry a traceparent, but never credentials, Host or forwarding: a tracer gives a replay no identity', async () => {
    app = await startFixture('fastify')
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    const hostile: Telemetry = {
      change: () => undefined,
      replay: () => ({
        run: (fn) => fn(),
        end: () => undefined,
        headers: () => ({
          traceparent,
          Cookie: 'session=mallory',
          authorization: 'Bearer mallory',
          host: 'evil.example',
          'X-Forwarded-For': '198.51.100.66',
          'user-agent': 'mallory',
        }),
      }),
    }
    app.hub.setTelemetry(hostile)
    const client = await TestClient.connect(app.wsUrl, { headers: { 'user-agent': 'alice' } })
    client.subscribe('/whoami')
    const snapshot = await client.next()
    expect(snapshot.json).toMatchObject({
      traceparent,
      cookie: null,
      authorization: null,
      host: `127.0.0.1:${app.port}`,
      forwardedFor: null,
      userAgent: 'alice',
      replay: true,
    })
    await client.close()
  })
})

describe('a tracer that throws', () => {
  let app: Fixture
  afterEach(async () => {
    await app?.close()
  })

  it('is logged, and every push still goes out', async () => {
    const errors: unknown[] = []
    const logger = { info() {}, debug() {}, warn() {}, error: (...args: unknown[]) => errors.push(args) }
    app = await startFixture('fastify', { hub: { logger } })
    const broken: Telemetry = {
      change: () => {
        throw new Error('change')
      },
      replay: () => ({
        run: () => {
          throw new Error('run')
        },
        end: () => {
          throw new Error('end')
        },
      }),
    }
    app.hub.setTelemetry(broken)
    const { id } = app.state.create('x')
    const client = await TestClient.connect(app.wsUrl)
    client.subscribe(`/items/${id}`)
    expect(await client.next()).toMatchObject({ type: 'data', snapshot: true })
    await put(app, id, 'still pushed')
    expect(await client.next()).toMatchObject({ type: 'data', json: { title: 'still pushed' } })
    expect(errors.length).toBeGreaterThanOrEqual(3)
    expect(app.hub.stats().replays).toBe(2)
    await client.close()
  })
})

describeWithRedis('across processes (Redis)', () => {
  let a: Fixture
  let b: Fixture
  afterEach(async () => {
    await a?.close()
    await b?.close()
  })

  it('a replay on process B is a child of the change span of the write on process A; B reports the write-to-push latency', async () => {
    const prefix = uniquePrefix()
    a = await startFixture('fastify', { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
    b = await startFixture('express', { hub: { backplane: redisBackplane({ url: REDIS_URL, prefix }) } })
    await until(() => a.hub.stats().backplane === 'connected' && b.hub.stats().backplane === 'connected')
    const { tracer, spans, provider } = tracing()
    instrument(a.hub, { tracer })
    instrument(b.hub, { tracer })
    const seen = instrumentServer(a.server as Server, tracer)
    // Both processes hold the item (each its own store, as two processes over one database would).
    const { id } = a.state.create('shared')
    b.state.items.set(id, { ...a.state.items.get(id)! })
    const pushes: PushEvent[] = []
    b.hub.on('push', (event) => pushes.push(event))
    const client = await TestClient.connect(b.wsUrl)
    client.subscribe(`/items/${id}`)
    await client.next()
    b.state.items.set(id, { id, title: 'from A' })
    await put(a, id, 'from A')
    expect(await client.next()).toMatchObject({ type: 'data', json: { title: 'from A' } })
    await until(() => spans().some((span) => span.name === 'listenjs push'))

    const write = seen.find((request) => request.method === 'PUT')!.span
    const change = spans().find((span) => span.name === 'listenjs change')!
    expect(change.parentSpanContext?.spanId).toBe(write.spanId)
    const replay = spans().find((span) => span.attributes['listenjs.replay.kind'] === 'push')!
    expect(replay.parentSpanContext).toMatchObject({ spanId: idOf(change), isRemote: true })
    expect(traceOf(replay)).toBe(write.traceId)
    expect(pushes).toHaveLength(1)
    expect(pushes[0]!.route).toBe('/items/:id')
    expect(pushes[0]!.sinceChangeMs).toBeGreaterThanOrEqual(0)
    expect(pushes[0]!.sinceChangeMs).toBeLessThan(60_000)
    expect(a.hub.stats().backplaneMessages).toMatchObject({ published: expect.any(Number), dropped: 0 })
    expect(a.hub.stats().backplaneMessages!.published).toBeGreaterThanOrEqual(1)
    expect(b.hub.stats().backplaneMessages!.received).toBeGreaterThanOrEqual(1)
    await client.close()
    await provider.shutdown()
  })
})
