/** The client's reconnect options: their defaults and their checks. */
import { ListenjsError } from '../core/errors'

/**
 * How the client reconnects after an unexpected close. Delays follow `retryPolicy`: `now` waits
 * a random time below `initialDelayMs`, `backoff` waits `min(maxDelayMs, initialDelayMs * factor ** attempt)`
 * (a random time below it with `jitter`), `slow` waits `maxDelayMs`. The attempt counter resets when the
 * server's `welcome` arrives.
 */
export interface ReconnectOptions {
  /** First backoff delay, and the bound of the random delay after a server restart. @default 1000 */
  initialDelayMs?: number
  /** Largest delay, also used after a close for abuse. @default 30000 */
  maxDelayMs?: number
  /** Growth of the delay per attempt; at least 1. @default 2 */
  factor?: number
  /** Full jitter: wait a random time below the computed delay. @default true */
  jitter?: boolean
  /** Reconnect attempts without a `welcome` before giving up. @default Infinity */
  retries?: number
}

/** The reconnect defaults, used for each option left out. */
export const reconnectDefaults: Readonly<Required<ReconnectOptions>> = {
  initialDelayMs: 1000,
  maxDelayMs: 30000,
  factor: 2,
  jitter: true,
  retries: Infinity,
}

/**
 * Merges `options` over {@link reconnectDefaults}.
 * @throws ListenjsError `invalid_option` naming the option when a number is negative, not finite
 * (`retries` may be `Infinity`) or when `factor` is below 1.
 */
export function resolveReconnect(options: ReconnectOptions = {}): Required<ReconnectOptions> {
  const resolved = {
    initialDelayMs: options.initialDelayMs ?? reconnectDefaults.initialDelayMs,
    maxDelayMs: options.maxDelayMs ?? reconnectDefaults.maxDelayMs,
    factor: options.factor ?? reconnectDefaults.factor,
    jitter: options.jitter ?? reconnectDefaults.jitter,
    retries: options.retries ?? reconnectDefaults.retries,
  }
  const numbers = [
    ['initialDelayMs', resolved.initialDelayMs, 0],
    ['maxDelayMs', resolved.maxDelayMs, 0],
    ['factor', resolved.factor, 1],
    ['retries', resolved.retries === Infinity ? 0 : resolved.retries, 0],
  ] as const
  for (const [name, value, min] of numbers) {
    if (!(Number.isFinite(value) && value >= min)) {
      throw new ListenjsError('invalid_option', `reconnect.${name} must be a finite number >= ${min}`)
    }
  }
  return resolved
}
