/**
 * The Redis backplane's wire format (PROTOCOL.md, "Backplane"): one JSON message per change on one
 * channel, encoded within the bounds every hub accepts, and parsed like client input.
 */
import type { ChangeMessage, PayloadMessage } from '../core/backplane'
import { MAX_CHANGE_PATHS } from '../core/backplane'
import { ListenjsError } from '../core/errors'
import { checkPath } from '../core/paths'
import { isTraceparent } from '../core/telemetry'
import { DEFAULT_MAX_MESSAGE_BYTES, jsonDepthExceeds, MAX_DEPTH, utf8LengthExceeds } from './bounds'

/** The wire format on the channel (PROTOCOL.md, "Backplane"). */
export interface WireChange extends ChangeMessage {
  readonly v: 1
  readonly from: string
}
export interface WirePayload extends PayloadMessage {
  readonly v: 1
  readonly from: string
}
/** Sent by a process whose publishing failed: every other process re-checks what it holds. */
export interface WireResync {
  readonly v: 1
  readonly from: string
  readonly kind: 'resync'
}
export type WireMessage = WireChange | WirePayload | WireResync

export const DEFAULT_PREFIX = 'listenjs'
/**
 * The longest path accepted from the channel or by the publisher. Hubs bound their own subscriptions
 * with `limits.pathLength`; this only keeps a broken or hostile message from carrying a huge one.
 */
export const MAX_PATH_LENGTH = 8_192

export function channelOf(prefix: string | undefined): string {
  const value = prefix ?? DEFAULT_PREFIX
  if (typeof value !== 'string' || value === '') {
    throw new ListenjsError('invalid_option', 'listenjs: option "prefix" must be a non-empty string')
  }
  return `${value}:changes`
}

export function maxMessageBytesOf(value: number | undefined): number {
  const max = value ?? DEFAULT_MAX_MESSAGE_BYTES
  if (!Number.isSafeInteger(max) || max <= 0) {
    throw new ListenjsError('invalid_option', 'listenjs: option "maxMessageBytes" must be a positive integer')
  }
  return max
}

/** Logged for the first event of a kind, then every thousandth: never once per message. */
export const worthLogging = (count: number): boolean => count === 1 || count % 1000 === 0

/**
 * The texts to publish for one message from `from`, or why it cannot be sent. A change is split
 * into several messages so that each carries at most {@link MAX_CHANGE_PATHS} paths and fits in
 * `maxBytes`: each is handled like the whole would be. A payload is one message or none.
 * @throws what `JSON.stringify` throws for a payload it cannot serialize (a cycle, a BigInt, too deep)
 */
export function encode(
  from: string,
  message: ChangeMessage | PayloadMessage,
  maxBytes: number,
): { texts: string[] } | { reason: string } {
  const texts: string[] = []
  if (message.kind === 'payload') {
    texts.push(JSON.stringify({ v: 1, from, ...message }))
  } else {
    // Exact sizes: the envelope with no paths, plus each path's JSON, plus a comma between two.
    const envelopeBytes = Buffer.byteLength(JSON.stringify({ v: 1, from, ...message, paths: [] }))
    let chunk: string[] = []
    let bytes = envelopeBytes
    const flush = (): void => {
      texts.push(JSON.stringify({ v: 1, from, ...message, paths: chunk }))
      chunk = []
      bytes = envelopeBytes
    }
    for (const path of message.paths) {
      const pathBytes = Buffer.byteLength(JSON.stringify(path))
      if (chunk.length === MAX_CHANGE_PATHS || (chunk.length > 0 && bytes + 1 + pathBytes > maxBytes)) flush()
      bytes += (chunk.length > 0 ? 1 : 0) + pathBytes
      chunk.push(path)
    }
    if (chunk.length > 0) flush()
  }
  for (const text of texts) {
    // A single path too long for `maxBytes`, or a payload too large or too deep for every hub.
    if (utf8LengthExceeds(text, maxBytes)) return { reason: `a message is over ${maxBytes} bytes` }
    if (jsonDepthExceeds(text, MAX_DEPTH)) {
      return { reason: `a message nests deeper than ${MAX_DEPTH} levels` }
    }
  }
  return { texts }
}

/**
 * Validates a message from the channel like client input: anything unexpected is refused. Before
 * parsing, a text over `maxBytes` UTF-8 bytes, or nesting arrays and objects deeper than
 * {@link MAX_DEPTH} levels, is refused, so that a hostile message costs one linear scan of a bounded
 * text; a change with more than {@link MAX_CHANGE_PATHS} paths is refused too.
 * @param text - the message as it came from Redis
 * @param maxBytes - the `maxMessageBytes` option. @default 1114112
 */
export function parseWireMessage(
  text: string,
  maxBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
): WireMessage | undefined {
  if (utf8LengthExceeds(text, maxBytes) || jsonDepthExceeds(text, MAX_DEPTH)) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const m = value as Record<string, unknown>
  if (m.v !== 1 || typeof m.from !== 'string') return undefined
  if (m.kind === 'change') {
    if (!Array.isArray(m.paths) || m.paths.length === 0 || m.paths.length > MAX_CHANGE_PATHS) return undefined
    if (!m.paths.every((p) => typeof p === 'string' && checkPath(p, MAX_PATH_LENGTH) === undefined))
      return undefined
    const origin = m.origin as Record<string, unknown> | undefined
    if (origin !== undefined && (typeof origin !== 'object' || origin === null)) return undefined
    if (origin && (typeof origin.id !== 'string' || typeof origin.credentials !== 'string')) return undefined
    if (m.at !== undefined && (typeof m.at !== 'number' || !Number.isFinite(m.at))) return undefined
    if (m.trace !== undefined && !isTraceparent(m.trace)) return undefined
    return {
      v: 1,
      from: m.from,
      kind: 'change',
      paths: m.paths as string[],
      ...(origin ? { origin: { id: origin.id as string, credentials: origin.credentials as string } } : {}),
      ...(m.at === undefined ? {} : { at: m.at }),
      ...(m.trace === undefined ? {} : { trace: m.trace }),
    }
  }
  if (m.kind === 'resync') return { v: 1, from: m.from, kind: 'resync' }
  if (m.kind === 'payload') {
    if (typeof m.path !== 'string' || checkPath(m.path, MAX_PATH_LENGTH) !== undefined || !('payload' in m))
      return undefined
    return { v: 1, from: m.from, kind: 'payload', path: m.path, payload: m.payload }
  }
  return undefined
}
