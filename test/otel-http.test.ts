/**
 * `listenjs/otel` beside the app's real HTTP instrumentation (`@opentelemetry/instrumentation-http`,
 * W3C propagation), in a process of its own (test/fixtures/otel-http-server.cjs): the write's server
 * span is the parent of the change; the instrumentation's own server span of each replay continues
 * the replay's trace inside listenjs's span (the replay carries a `traceparent`); and with
 * `ignoreIncomingRequestHook: isReplay`, as the README suggests, it makes none.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'

interface Span {
  readonly name: string
  readonly kind: number
  readonly traceId: string
  readonly spanId: string
  readonly parent?: string
  readonly attributes: Record<string, unknown>
}

const SERVER = 1

/** Runs the fixture; resolves with the spans it printed. */
function spansOf(...args: string[]): Promise<Span[]> {
  const script = path.join(__dirname, 'fixtures', 'otel-http-server.cjs')
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => (out += String(chunk)))
  child.stderr.on('data', (chunk: Buffer) => (err += String(chunk)))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code !== 0) reject(new Error(`the fixture exited with ${code}: ${err}`))
      else
        resolve(
          out
            .trim()
            .split('\n')
            .map((line) => JSON.parse(line) as Span),
        )
    })
  })
}

describe('beside @opentelemetry/instrumentation-http', () => {
  it('the app’s server span of a replay continues the replay’s trace inside listenjs’s span', async () => {
    const spans = await spansOf()
    const byId = new Map(spans.map((span) => [span.spanId, span]))
    const write = spans.find((span) => span.kind === SERVER && span.name === 'POST')!
    const change = spans.find((span) => span.name === 'listenjs change')!
    expect(change.parent).toBe(write.spanId)
    const replays = spans.filter((span) => span.attributes['listenjs.replay'] === true)
    expect(replays.map((span) => span.attributes['listenjs.replay.kind']).sort()).toEqual([
      'push',
      'snapshot',
    ])
    const push = replays.find((span) => span.attributes['listenjs.replay.kind'] === 'push')!
    expect(push).toMatchObject({
      name: 'GET /items',
      kind: SERVER,
      parent: change.spanId,
      traceId: write.traceId,
    })
    // The instrumentation's own server span of each replay: inside ours, in the same trace.
    for (const replay of replays) {
      const inside = spans.filter((span) => span.parent === replay.spanId)
      expect(inside).toEqual([
        expect.objectContaining({ name: 'GET', kind: SERVER, traceId: replay.traceId }),
      ])
    }
    // No server span of the app for a replay starts a trace of its own.
    const serverGets = spans.filter((span) => span.kind === SERVER && span.name === 'GET')
    expect(serverGets).toHaveLength(2)
    for (const span of serverGets)
      expect(byId.get(span.parent ?? '')?.attributes['listenjs.replay']).toBe(true)
  }, 30_000)

  it('with ignoreIncomingRequestHook: isReplay, it makes no span for replays; listenjs’s chain stays', async () => {
    const spans = await spansOf('ignore')
    expect(spans.filter((span) => span.kind === SERVER && span.name === 'GET')).toEqual([])
    const write = spans.find((span) => span.kind === SERVER && span.name === 'POST')!
    const change = spans.find((span) => span.name === 'listenjs change')!
    expect(change.parent).toBe(write.spanId)
    expect(spans.find((span) => span.name === 'listenjs push')).toMatchObject({ parent: change.spanId })
  }, 30_000)
})
