/**
 * `listenjs/otel`: a hub's metrics and traces through OpenTelemetry (`@opentelemetry/api`, an
 * optional peer dependency: only this entry imports it). With no SDK registered, its instruments
 * and tracer are OpenTelemetry's no-ops.
 */
import { metrics, trace, type Meter, type Tracer } from '@opentelemetry/api'
import type { Hub } from '../core/hub'
import { hubMetrics } from './metrics'
import { hubTraces } from './traces'

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** The meter to register on. @default the global meter provider's meter `listenjs` */
  meter?: Meter
  /** The tracer to make spans with. @default the global tracer provider's tracer `listenjs` */
  tracer?: Tracer
  /** `false`: metrics only, no spans. @default true */
  traces?: boolean
}

/**
 * Instruments `hub`. Metrics (attributes are route templates, close codes, replay kinds and
 * outcomes, the backplane's state; never a path or a user):
 * - gauges, read from `hub.stats()` at each collection: `listenjs.connections` (sockets and streams),
 *   `listenjs.subscriptions`, `listenjs.resources`, `listenjs.replays.in_flight`,
 *   `listenjs.replays.queued`, `listenjs.pending_bytes`, `listenjs.patches.state_bytes`,
 *   `listenjs.backplane.connected` (1 or 0, with the attribute `listenjs.backplane.state`);
 * - counters, cumulative since the hub started: `listenjs.replays`, `listenjs.messages.sent`,
 *   `listenjs.collapsed`, `listenjs.slow_closes`, `listenjs.patches.computed`,
 *   `listenjs.patches.declined`, and with a backplane that counts them (Redis)
 *   `listenjs.backplane.messages` (by `listenjs.backplane.outcome`: `published`, `dropped`,
 *   `received`, `malformed`) and `listenjs.backplane.outages`;
 * - from the hub's events, by `http.route` (the route template that answered, when known):
 *   `listenjs.pushes` (one per state sent to a path's subscribers), `listenjs.push.recipients` (a
 *   histogram), `listenjs.pushes.patched` (recipients that got a patch), `listenjs.push.latency`
 *   (ms, from a change's publication, on any process, to its push), `listenjs.closes` (by
 *   `listenjs.close_code`) and `listenjs.replay.duration` (ms, by `listenjs.replay.kind`, `snapshot`
 *   or `push`, and `listenjs.replay.outcome`: its count is the number of replays of each outcome).
 *
 * Traces (unless `traces: false`): a `listenjs change` span per change this process publishes, a
 * child of the write's span, whose context travels on the backplane; a `GET <route>` server span per
 * replay, a child of the change it serves, active while the app's handler runs and marked
 * `listenjs.replay: true`; a `listenjs push` span per state sent. Parents are only found with a
 * context manager registered (the SDK's `NodeSDK` or `AsyncLocalStorageContextManager`).
 *
 * Returns the function that removes every instrument's callback, listener and the tracer.
 */
export function instrument(hub: Hub, options: InstrumentOptions = {}): () => void {
  const stopMetrics = hubMetrics(hub, options.meter ?? metrics.getMeter('listenjs'))
  const traced = options.traces !== false
  const telemetry = traced ? hubTraces(options.tracer ?? trace.getTracer('listenjs')) : undefined
  if (telemetry) hub.setTelemetry(telemetry)
  return () => {
    stopMetrics()
    if (telemetry) hub.setTelemetry(undefined)
  }
}
