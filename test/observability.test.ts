/**
 * examples/observability as a user runs it: the example server is started as its own Node process
 * from the built package (`npm test` builds first), with its Prometheus endpoint on a free port; a
 * `listenjs/testing` connection listens while the REST API is written to over HTTP, and the metrics
 * endpoint is scraped and parsed as Prometheus would.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { connect, type LiveTest } from '../src/testing'
import { until } from './helpers/wait'

const FILE = path.join(__dirname, '..', 'examples', 'observability', 'server.mjs')

interface Appointment {
  id: string
  title: string
}

/** One line of the Prometheus text exposition format: `name{label="value",…} value`. */
interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/

const unescapeLabel = (value: string): string =>
  value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))

/** The labels between the braces of a sample line: `a="1",b="x\"y"` (a trailing comma allowed). */
function parseLabels(body: string, line: string): Record<string, string> {
  const label = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y
  const labels: Record<string, string> = {}
  while (label.lastIndex < body.length) {
    const match = label.exec(body)
    if (!match) throw new Error(`bad labels in: ${line}`)
    labels[match[1] ?? ''] = unescapeLabel(match[2] ?? '')
  }
  return labels
}

const number = (text: string): number =>
  text === '+Inf' ? Infinity : text === '-Inf' ? -Infinity : text === 'NaN' ? NaN : Number(text)

/** Parses an exposition: every sample line, comments (`# HELP`, `# TYPE`, `# UNIT`) left out. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const [, name, body = '', value = ''] = SAMPLE.exec(line) ?? []
    if (name === undefined) throw new Error(`not a Prometheus sample line: ${line}`)
    const parsed = number(value)
    if (Number.isNaN(parsed) && value !== 'NaN') throw new Error(`bad value in: ${line}`)
    samples.push({ name, labels: parseLabels(body, line), value: parsed })
  }
  return samples
}

/** A scrape: the samples, and lookups by name and (a subset of the) labels. */
class Scrape {
  constructor(
    readonly text: string,
    readonly samples: readonly Sample[] = parseExposition(text),
  ) {}

  /** The samples named `name` whose labels include `labels`. */
  select(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter(
      (s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value),
    )
  }

  /** The value of the one sample that matches; undefined when none does, an error when several do. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.select(name, labels)
    if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`)
    return found[0]?.value
  }

  /** The sum of the values of the samples that match (0 when none does). */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.select(name, labels).reduce((total, s) => total + s.value, 0)
  }
}

/** Starts the example on free ports; resolves once it has printed both its URLs. */
function start(): Promise<{ child: ChildProcess; base: string; metricsUrl: string }> {
  const child = spawn(process.execPath, [FILE], {
    env: { ...process.env, PORT: '0', METRICS_PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the example did not start: ${output}`))
    }, 10_000)
    const read = (chunk: Buffer): void => {
      output += String(chunk)
      const app = /on http:\/\/localhost:(\d+)\s*$/m.exec(output)?.[1]
      const metrics = /http:\/\/localhost:(\d+)\/metrics/.exec(output)?.[1]
      if (app && metrics) {
        clearTimeout(timer)
        resolve({ child, base: `http://127.0.0.1:${app}`, metricsUrl: `http://127.0.0.1:${metrics}/metrics` })
      }
    }
    child.stdout?.on('data', read)
    child.stderr?.on('data', read)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the example exited with ${code}: ${output}`))
    })
  })
}

describe('the observability example', () => {
  let child: ChildProcess
  let base: string
  let metricsUrl: string
  let live: LiveTest | undefined
  let id = ''

  const scrape = async (): Promise<Scrape> => {
    const response = await fetch(metricsUrl)
    expect(response.status).toBe(200)
    return new Scrape(await response.text())
  }

  /**
   * Scrapes until `ready` holds of a scrape or `timeoutMs` passes; resolves with the last scrape
   * either way, so that the assertions that follow report the values actually exported.
   */
  const scrapeUntil = async (ready: (scrape: Scrape) => boolean, timeoutMs = 5000): Promise<Scrape> => {
    let last: Scrape | undefined
    await until(async () => ready((last = await scrape())), timeoutMs).catch(() => undefined)
    return last ?? (await scrape())
  }

  beforeAll(async () => {
    ;({ child, base, metricsUrl } = await start())
  })

  afterAll(async () => {
    await live?.close()
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  })

  it('serves the exposition on its own port, and nothing else there', async () => {
    const metrics = await scrape()
    expect(metrics.value('listenjs_connections', { otel_scope_name: 'listenjs' })).toBe(0)
    expect(metrics.value('listenjs_subscriptions')).toBe(0)
    expect(metrics.value('listenjs_backplane_connected', { listenjs_backplane_state: 'memory' })).toBe(1)
    expect(metrics.value('listenjs_replays_total')).toBe(0)
    expect(metrics.select('target_info')).toHaveLength(1)
    expect((await fetch(metricsUrl.replace('/metrics', '/other'))).status).toBe(404)
    // The app's port serves the app, not the metrics.
    expect((await fetch(`${base}/metrics`)).status).toBe(404)
  })

  it('counts a connection, its subscriptions, and the replay and push of a write', async () => {
    live = await connect(base)
    const snapshot = await live.listen<Appointment[]>('/api/appointments')
    expect(snapshot.length).toBeGreaterThan(0)

    const title = 'Metrics review'
    const pushed = live.expectPush<Appointment[]>('/api/appointments', (list) =>
      list.some((a) => a.title === title),
    )
    const created = await fetch(`${base}/api/appointments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title, start: '2026-11-25T10:00:00.000Z', end: '2026-11-25T11:00:00.000Z' }),
    })
    expect(created.status).toBe(201)
    id = ((await created.json()) as Appointment).id
    await pushed
    // A second subscription, to one appointment's own path: its replay must not turn into a label.
    expect(await live.listen<Appointment>(`/api/appointments/${id}`)).toMatchObject({ id, title })

    const pushReplay = { listenjs_replay_kind: 'push', listenjs_replay_outcome: 'changed' }
    const metrics = await scrapeUntil(
      (m) => m.sum('listenjs_pushes_total') >= 1 && m.sum('listenjs_replay_duration_count', pushReplay) >= 1,
    )
    expect(metrics.value('listenjs_connections', { otel_scope_name: 'listenjs' })).toBe(1)
    expect(metrics.value('listenjs_subscriptions')).toBe(2)
    expect(metrics.value('listenjs_resources')).toBe(2)
    const pushes = metrics.sum('listenjs_replay_duration_count', pushReplay)
    expect(pushes).toBeGreaterThanOrEqual(1)
    expect(metrics.sum('listenjs_replay_duration_count', { listenjs_replay_kind: 'snapshot' })).toBe(2)
    // The histogram's buckets are cumulative: its +Inf bucket holds every replay it counted.
    expect(metrics.sum('listenjs_replay_duration_bucket', { ...pushReplay, le: '+Inf' })).toBe(pushes)
    expect(metrics.sum('listenjs_replay_duration_sum', pushReplay)).toBeGreaterThanOrEqual(0)
    expect(metrics.value('listenjs_replays_total')).toBeGreaterThanOrEqual(3) // 2 snapshots, 1 push
    expect(metrics.sum('listenjs_pushes_total')).toBeGreaterThanOrEqual(1)
    expect(metrics.sum('listenjs_push_recipients_count')).toBe(metrics.sum('listenjs_pushes_total'))
    expect(metrics.sum('listenjs_push_recipients_sum')).toBeGreaterThanOrEqual(1)
    // The write-to-push latency of the list's push, by its route template.
    const list = { http_route: '/api/appointments' }
    expect(metrics.value('listenjs_push_latency_count', list)).toBe(
      metrics.value('listenjs_pushes_total', list),
    )
    expect(metrics.value('listenjs_push_latency_sum', list)).toBeGreaterThan(0)
    expect(metrics.value('listenjs_replay_duration_count', { ...pushReplay, ...list })).toBe(pushes)
    expect(metrics.value('listenjs_messages_sent_total')).toBeGreaterThanOrEqual(3)
    expect(metrics.select('listenjs_closes_total')).toHaveLength(0)
  })

  it('counts the close by its code once the client is gone, and no label names a path', async () => {
    await live?.close()
    live = undefined
    const metrics = await scrapeUntil(
      (m) => m.sum('listenjs_closes_total') >= 1 && m.value('listenjs_connections') === 0,
    )
    expect(metrics.sum('listenjs_closes_total', { listenjs_close_code: '1000' })).toBe(1)
    expect(metrics.sum('listenjs_closes_total')).toBe(1)
    expect(metrics.value('listenjs_connections')).toBe(0)
    expect(metrics.value('listenjs_subscriptions')).toBe(0)

    // Attributes are route templates and close codes, never the concrete path of a resource.
    const values = metrics.samples.flatMap((s) => Object.values(s.labels))
    expect(values.filter((v) => v.includes(`/api/appointments/${id}`))).toEqual([])
  })

  it('closes the app and the metrics server on SIGTERM, and exits with 0', async () => {
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    await expect(fetch(metricsUrl)).rejects.toThrow()
  })
})
