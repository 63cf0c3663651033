/**
 * `listenjs/otel`: a hub's metrics through OpenTelemetry (`@opentelemetry/api`, an optional peer
 * dependency: only this entry imports it). `instrument(hub)` registers the hub's instruments on the
 * global meter provider (or the meter given); with no SDK registered they are OpenTelemetry's no-ops.
 * No attribute is ever a path or a user: only close codes and the backplane state, which are few.
 */
import { metrics, ValueType, type Attributes, type Meter } from '@opentelemetry/api'
import type { Hub } from '../core/hub'
import type { DisconnectEvent, PushEvent, ReplayEvent } from '../core/types'

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** The meter to register on. @default the global meter provider's meter `listenjs` */
  meter?: Meter
}

/**
 * Publishes the metrics of `hub`:
 * - gauges, read from `hub.stats()` at each collection: `listenjs.connections` (sockets and streams),
 *   `listenjs.subscriptions`, `listenjs.resources`, `listenjs.replays.in_flight`,
 *   `listenjs.replays.queued`, `listenjs.pending_bytes`, `listenjs.patches.state_bytes`,
 *   `listenjs.backplane.connected` (1 or 0, with the attribute `listenjs.backplane.state`);
 * - counters, cumulative since the hub started: `listenjs.replays`, `listenjs.messages.sent`,
 *   `listenjs.collapsed`, `listenjs.slow_closes`, `listenjs.patches.computed`,
 *   `listenjs.patches.declined`;
 * - from the hub's events: `listenjs.pushes` (one per state sent to a path's subscribers),
 *   `listenjs.push.recipients` (a histogram), `listenjs.pushes.patched` (recipients that got a
 *   patch), `listenjs.closes` (with the attribute `listenjs.close_code`) and the histogram
 *   `listenjs.replay.duration` (ms, with `listenjs.replay.kind`, `snapshot` or `push`, and
 *   `listenjs.replay.outcome`: its count is the number of replays of each outcome).
 * Returns the function that removes every instrument's callback and listener.
 */
export function instrument(hub: Hub, options: InstrumentOptions = {}): () => void {
  const meter = options.meter ?? metrics.getMeter('listenjs')
  const int = { valueType: ValueType.INT }
  const gauge = (name: string, description: string, unit?: string) =>
    meter.createObservableGauge(name, { description, unit, ...int })
  const total = (name: string, description: string, unit?: string) =>
    meter.createObservableCounter(name, { description, unit, ...int })
  const gauges = {
    connections: gauge('listenjs.connections', 'Open sockets and HTTP streams', '{connection}'),
    subscriptions: gauge('listenjs.subscriptions', 'Subscriptions, live or waiting for their snapshot'),
    resources: gauge('listenjs.resources', 'Distinct paths (with query) subscribed to'),
    inFlight: gauge('listenjs.replays.in_flight', 'Replays running now'),
    queued: gauge('listenjs.replays.queued', 'Replays waiting for a slot'),
    pending: gauge('listenjs.pending_bytes', 'Bytes waiting to be written to sockets', 'By'),
    stateBytes: gauge('listenjs.patches.state_bytes', 'Characters of last states kept for patches'),
    backplane: gauge('listenjs.backplane.connected', 'Whether the backplane carries changes (1) or not (0)'),
  }
  const totals = {
    replays: total('listenjs.replays', 'Replays completed'),
    sent: total('listenjs.messages.sent', 'Frames sent to sockets', '{message}'),
    collapsed: total('listenjs.collapsed', 'States that replaced an unsent older state for a slow socket'),
    slowCloses: total('listenjs.slow_closes', 'Sockets closed with 4509 for falling too far behind'),
    computed: total('listenjs.patches.computed', 'Patches computed (once per group and change)'),
    declined: total('listenjs.patches.declined', 'Patches that went as full states instead'),
  }
  const observe = (result: {
    observe(instrument: (typeof gauges)[keyof typeof gauges], value: number, attributes?: Attributes): void
  }): void => {
    const stats = hub.stats()
    result.observe(gauges.connections, stats.connections)
    result.observe(gauges.subscriptions, stats.subscriptions)
    result.observe(gauges.resources, stats.resources)
    result.observe(gauges.inFlight, stats.replaysInFlight)
    result.observe(gauges.queued, stats.replaysQueued)
    result.observe(gauges.pending, stats.pendingBytes)
    result.observe(gauges.stateBytes, stats.patches.stateBytes)
    const connected = stats.backplane === 'memory' || stats.backplane === 'connected'
    result.observe(gauges.backplane, connected ? 1 : 0, { 'listenjs.backplane.state': stats.backplane })
    result.observe(totals.replays, stats.replays)
    result.observe(totals.sent, stats.messagesSent)
    result.observe(totals.collapsed, stats.collapsed)
    result.observe(totals.slowCloses, stats.slowClosed)
    result.observe(totals.computed, stats.patches.computed)
    result.observe(totals.declined, stats.patches.declined)
  }
  const observables = [...Object.values(gauges), ...Object.values(totals)]
  meter.addBatchObservableCallback(observe, observables)

  const pushes = meter.createCounter('listenjs.pushes', {
    description: 'States sent to the subscribers of a path',
    ...int,
  })
  const recipients = meter.createHistogram('listenjs.push.recipients', {
    description: 'Subscribers a state was sent to',
    ...int,
  })
  const patched = meter.createCounter('listenjs.pushes.patched', {
    description: 'Recipients that got a patch',
    ...int,
  })
  const closes = meter.createCounter('listenjs.closes', {
    description: 'Sockets closed, by close code',
    ...int,
  })
  const onPush = (event: PushEvent): void => {
    pushes.add(1)
    recipients.record(event.recipients)
    if (event.patched > 0) patched.add(event.patched)
  }
  const onDisconnect = (event: DisconnectEvent): void => closes.add(1, { 'listenjs.close_code': event.code })
  const durations = meter.createHistogram('listenjs.replay.duration', {
    description: 'Replays, by kind and outcome: from the dispatch of the GET to its answer',
    unit: 'ms',
  })
  const onReplay = (event: ReplayEvent): void =>
    durations.record(event.durationMs, {
      'listenjs.replay.kind': event.kind,
      'listenjs.replay.outcome': event.outcome,
    })
  hub.on('push', onPush)
  hub.on('disconnect', onDisconnect)
  hub.on('replay', onReplay)
  return () => {
    meter.removeBatchObservableCallback(observe, observables)
    hub.off('push', onPush)
    hub.off('disconnect', onDisconnect)
    hub.off('replay', onReplay)
  }
}
