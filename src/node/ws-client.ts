/**
 * The Node client's side of `ws`, for the Node-only entries that connect to a hub (`listenjs/testing`,
 * the `listenjs` command line): the endpoint a URL names, and a `ws` class that sends headers (a
 * `Cookie`, an `Authorization`) on its upgrade, as a browser sends its cookies.
 */
import WebSocket from 'ws'
import type { WebSocketConstructor } from '../client/connection'
import { DEFAULT_PATH } from '../core/protocol'

/**
 * The hub endpoint `url` names: `http(s)` becomes `ws(s)`, and a URL whose path is `/` gets `path`;
 * any other path is the endpoint itself.
 * @throws TypeError for anything but an absolute ws(s) or http(s) URL
 */
export function endpointUrl(url: string, path: string = DEFAULT_PATH): string {
  const parsed = new URL(url)
  if (!/^(?:ws|http)s?:$/.test(parsed.protocol))
    throw new TypeError(`the url must be ws(s):// or http(s)://, not ${parsed.protocol}`)
  parsed.protocol = parsed.protocol.replace('http', 'ws')
  if (parsed.pathname === '/') parsed.pathname = path
  return parsed.href
}

/** The `ws` class, sending `headers` on each upgrade when there are any. */
export function wsWithHeaders(headers: Readonly<Record<string, string>> = {}): WebSocketConstructor {
  if (Object.keys(headers).length === 0) return WebSocket
  return class extends WebSocket {
    constructor(url: string, protocols: string | string[]) {
      super(url, protocols, { headers: { ...headers } })
    }
  }
}
