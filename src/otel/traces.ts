/**
 * The hub's work as OpenTelemetry spans, through the core's telemetry seam:
 * - `listenjs change` (kind `PRODUCER`), a child of the span active when the write started (the
 *   app's request span, when its HTTP instrumentation made one), ended at once: its `traceparent`
 *   travels with the change on the backplane;
 * - a replay is an HTTP server span of its own, `GET <route>` (kind `SERVER`), a child of the change
 *   it serves on whichever process replays it (a snapshot's starts a trace): the app's handler runs
 *   with it active, so the app's own instrumentation sees a server request, marked
 *   `listenjs.replay: true`;
 * - `listenjs push` (kind `PRODUCER`), a child of the change too, from the replay's answer to the
 *   state handed to its subscribers' sockets.
 */
import {
  context,
  INVALID_SPANID as INVALID_SPAN_ID,
  INVALID_TRACEID as INVALID_TRACE_ID,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api'
import type { ChangeCause, PushReport, ReplayTrace, Telemetry } from '../core/telemetry'
import type { ReplayEvent } from '../core/types'

/** The telemetry `hub.setTelemetry` takes, making spans with `tracer`. */
export function hubTraces(tracer: Tracer): Telemetry {
  return {
    // The write's context, kept when it starts: its change's span is the write's child, whatever
    // context the response's events fire in.
    capture: () => context.active(),
    change(paths, captured) {
      const parent = (captured as Context | undefined) ?? context.active()
      const options = { kind: SpanKind.PRODUCER, attributes: { 'listenjs.change.paths': paths.length } }
      const span = tracer.startSpan('listenjs change', options, parent)
      span.end()
      return traceparentOf(span.spanContext())
    },
    replay(path, kind, cause) {
      return replayTrace(tracer, path, kind, cause)
    },
  }
}

function replayTrace(
  tracer: Tracer,
  path: string,
  kind: ReplayEvent['kind'],
  cause: ChangeCause | undefined,
): ReplayTrace {
  const parent = parentOf(cause)
  const query = path.indexOf('?')
  const attributes: Attributes = {
    'http.request.method': 'GET',
    'url.path': query === -1 ? path : path.slice(0, query),
    'listenjs.replay': true,
    'listenjs.replay.kind': kind,
  }
  if (query !== -1) attributes['url.query'] = path.slice(query + 1)
  const span = tracer.startSpan('GET', { kind: SpanKind.SERVER, attributes }, parent)
  // No SDK (the API's no-op tracer): nothing to make active or to end.
  if (!span.isRecording() && !trace.isSpanContextValid(span.spanContext())) return UNTRACED
  const active = trace.setSpan(parent, span)
  return {
    run: (fn) => context.with(active, fn),
    headers() {
      const carrier: Record<string, string> = {}
      propagation.inject(active, carrier)
      return carrier
    },
    end(event, answeredAt, push) {
      endReplay(span, event, answeredAt)
      if (push !== undefined && push.recipients > 0) pushSpan(tracer, parent, event, answeredAt, push)
    },
  }
}

const UNTRACED: ReplayTrace = { run: (fn) => fn(), end: () => undefined }

function endReplay(span: Span, event: ReplayEvent, answeredAt: number): void {
  if (event.route !== undefined) {
    span.updateName(`GET ${event.route}`)
    span.setAttribute('http.route', event.route)
  }
  span.setAttribute('http.response.status_code', event.status)
  span.setAttribute('listenjs.replay.outcome', event.outcome)
  // HTTP server spans: a 5xx is an error; a 4xx is the client's (here, the subscription's) answer.
  if (event.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
  span.end(answeredAt)
}

function pushSpan(
  tracer: Tracer,
  parent: Context,
  event: ReplayEvent,
  startTime: number,
  push: PushReport,
): void {
  const attributes: Attributes = {
    'listenjs.push.recipients': push.recipients,
    'listenjs.push.patched': push.patched,
  }
  if (event.route !== undefined) attributes['http.route'] = event.route
  tracer.startSpan('listenjs push', { kind: SpanKind.PRODUCER, startTime, attributes }, parent).end()
}

/** The context a replay's span starts in: its change's, or a new trace. */
function parentOf(cause: ChangeCause | undefined): Context {
  const parent = cause?.trace === undefined ? undefined : spanContextOf(cause.trace)
  return parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent)
}

/** The W3C `traceparent` of a span context, or nothing for one that is not valid. */
function traceparentOf(spanContext: SpanContext): string | undefined {
  if (!trace.isSpanContextValid(spanContext)) return undefined
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0')
  return `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`
}

/** The remote span context a `traceparent` names (the core checked its shape: `00-<32 hex>-<16 hex>-<2 hex>`). */
function spanContextOf(traceparent: string): SpanContext | undefined {
  const traceId = traceparent.slice(3, 35)
  const spanId = traceparent.slice(36, 52)
  // All zeros is no trace (W3C Trace Context).
  if (traceId === INVALID_TRACE_ID || spanId === INVALID_SPAN_ID) return undefined
  const traceFlags = parseInt(traceparent.slice(53, 55), 16) & TraceFlags.SAMPLED
  return { traceId, spanId, traceFlags, isRemote: true }
}
