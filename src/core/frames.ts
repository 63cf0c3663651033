import type {
  ErrorCode,
  ErrorMessage,
  GoneMessage,
  PingMessage,
  ReauthMessage,
  SubscribedMessage,
  WelcomeMessage,
} from './protocol'
import { isOneJsonValue } from './json'

/**
 * Server frames, built once per message and shared by every socket it goes to. Bodies of JSON
 * responses are spliced in as received, never parsed and re-serialized, so large integers and
 * key order survive.
 */

const JSON_TYPE = /^\s*(application\/([\w.+-]*\+)?json|text\/json)\s*(;|$)/i

/** Whether a replay body of `contentType` is delivered as JSON. */
export function isJsonType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false
  // Most answers of an app carry the same one or two types: the last one is remembered.
  if (contentType !== lastType) {
    lastType = contentType
    lastIsJson = JSON_TYPE.test(contentType)
  }
  return lastIsJson
}
let lastType: string | undefined
let lastIsJson = false

/**
 * A `data` frame for `body` as a replay answered it (decoded as UTF-8). `origin` is the connection
 * whose own write caused the change, when exactly one did.
 */
export function dataFrame(
  path: string,
  version: string,
  body: string,
  contentType: string | undefined,
  snapshot: boolean,
  origin?: string,
): Buffer {
  const head = `{"type":"data","path":${JSON.stringify(path)},"version":${JSON.stringify(version)}${
    snapshot ? ',"snapshot":true' : ''
  }${origin === undefined ? '' : `,"origin":${JSON.stringify(origin)}`},`
  if (body.length === 0) return Buffer.from(`${head}"json":null}`)
  if (isJsonType(contentType) && isOneJsonValue(body)) return spliced(`${head}"json":`, body)
  return Buffer.from(`${head}"text":${JSON.stringify(body)}}`)
}

/** `head`, `body` and a closing brace, written straight into one buffer (no joined string). */
function spliced(head: string, body: string): Buffer {
  const headBytes = Buffer.byteLength(head)
  const bodyBytes = Buffer.byteLength(body)
  const frame = Buffer.allocUnsafe(headBytes + bodyBytes + 1)
  frame.write(head, 0)
  frame.write(body, headBytes)
  frame[headBytes + bodyBytes] = 0x7d // }
  return frame
}

/**
 * A `patch` frame (`listenjs.v1.1`): `ops`, an RFC 6902 JSON Patch already serialized, turns the
 * state of version `from` into the one of `version`, whose checksum is `sum`.
 */
export function patchFrame(
  path: string,
  version: string,
  from: string,
  sum: number,
  ops: string,
  origin?: string,
): Buffer {
  return Buffer.from(
    `{"type":"patch","path":${JSON.stringify(path)},"version":${JSON.stringify(version)},"from":${JSON.stringify(
      from,
    )},"sum":${sum}${origin === undefined ? '' : `,"origin":${JSON.stringify(origin)}`},"ops":${ops}}`,
  )
}

/** A `data` frame for a payload given to `notify(path, payload)`, already serialized. */
export function payloadFrame(path: string, version: string, json: string): Buffer {
  return Buffer.from(
    `{"type":"data","path":${JSON.stringify(path)},"version":${JSON.stringify(version)},"json":${json}}`,
  )
}

/** A `subscribed` frame: the subscriber already holds the current `version`. */
export function subscribedFrame(path: string, version: string): Buffer {
  const message: SubscribedMessage = { type: 'subscribed', path, version }
  return Buffer.from(JSON.stringify(message))
}

/** A `gone` frame. */
export function goneFrame(path: string, status: number): Buffer {
  const message: GoneMessage = { type: 'gone', path, status }
  return Buffer.from(JSON.stringify(message))
}

/** An `error` frame. `message` must be a fixed text, never an internal detail. */
export function errorFrame(code: ErrorCode, message: string, path?: string, status?: number): Buffer {
  const frame: ErrorMessage = { type: 'error', code, message, path, status }
  return Buffer.from(JSON.stringify(frame))
}

/** The `welcome` frame: the connection's id and the heartbeat. */
export function welcomeFrame(id: string, intervalMs: number, timeoutMs: number): Buffer {
  const message: WelcomeMessage = { type: 'welcome', id, heartbeat: { intervalMs, timeoutMs } }
  return Buffer.from(JSON.stringify(message))
}

/** The `ping` frame; one buffer for the life of the process. */
export const PING_FRAME: Buffer = Buffer.from(JSON.stringify({ type: 'ping' } satisfies PingMessage))

/** The `reauth` frame; one buffer for the life of the process. */
export const REAUTH_FRAME: Buffer = Buffer.from(JSON.stringify({ type: 'reauth' } satisfies ReauthMessage))
