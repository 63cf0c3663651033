/**
 * The hub's metrics as OpenTelemetry instruments: gauges and counters read from `hub.stats()` at each
 * collection, histograms and counters fed by the hub's events. Attributes are few by construction:
 * route templates (as the framework declared them), close codes, replay kinds and outcomes, the
 * backplane's state; never a path or a user.
 */
import { ValueType, type Attributes, type Meter } from '@opentelemetry/api'
import type { Hub } from '../core/hub'
import type { DisconnectEvent, PushEvent, ReplayEvent } from '../core/types'

/** Registers the metrics of `hub` on `meter` (see `instrument`); returns what removes them. */
export function hubMetrics(hub: Hub, meter: Meter): () => void {
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
    backplaneMessages: total(
      'listenjs.backplane.messages',
      'Backplane messages by listenjs.backplane.outcome: published, dropped (not sent), received, malformed (dropped on arrival)',
      '{message}',
    ),
    outages: total('listenjs.backplane.outages', 'Times the backplane lost its connection'),
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
    const counters = stats.backplaneMessages
    if (counters !== undefined) {
      for (const outcome of ['published', 'dropped', 'received', 'malformed'] as const) {
        result.observe(totals.backplaneMessages, counters[outcome], { 'listenjs.backplane.outcome': outcome })
      }
      result.observe(totals.outages, counters.outages)
    }
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
  const latency = meter.createHistogram('listenjs.push.latency', {
    description:
      'From the publication of a change (on whichever process made the write) to its push being handed to the sockets',
    unit: 'ms',
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS_MS },
  })
  const onPush = (event: PushEvent): void => {
    const attributes = routeOf(event)
    pushes.add(1, attributes)
    recipients.record(event.recipients, attributes)
    if (event.patched > 0) patched.add(event.patched, attributes)
    if (event.sinceChangeMs !== undefined) latency.record(event.sinceChangeMs, attributes)
  }
  const onDisconnect = (event: DisconnectEvent): void => closes.add(1, { 'listenjs.close_code': event.code })
  const durations = meter.createHistogram('listenjs.replay.duration', {
    description: 'Replays, by route, kind and outcome: from the dispatch of the GET to its answer',
    unit: 'ms',
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS_MS },
  })
  const onReplay = (event: ReplayEvent): void =>
    durations.record(event.durationMs, {
      ...routeOf(event),
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

/** Milliseconds: sub-millisecond steps for replays and pushes on one machine, up to a slow minute. */
const LATENCY_BUCKETS_MS = [
  0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
]

/** The `http.route` attribute of an event, when the adapter saw the route template (never a path). */
function routeOf(event: { readonly route?: string }): Attributes {
  return event.route === undefined ? {} : { 'http.route': event.route }
}
