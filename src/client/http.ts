/**
 * The HTTP stream on the client, for networks that block WebSockets (PROTOCOL.md, "The HTTP
 * stream"): {@link HttpSocket} is a WebSocket for the client that speaks it, and
 * {@link httpFallback} a WebSocket class that switches to it when WebSockets cannot open. A separate
 * module: apps that do not need it do not ship it. No Node imports; it needs `fetch` with streamed
 * bodies (every current browser, Node 18 and later).
 */
import type { WebSocketConstructor, WebSocketLike } from './connection'

type Message = { type: string; path?: string; version?: string }

/** The protocol's own close code for a connection that ended without a close event. */
const ABNORMAL = 1006

/**
 * A WebSocket made of HTTP streams, for `createClient({ WebSocket: HttpSocket })`: it opens at once,
 * and each time the client's messages change what it listens to (a `subscribe`, `unsubscribe` or
 * `auth`), it opens a new stream with the whole set and the versions it holds, and drops the old one;
 * the server answers `subscribed` for what did not change. Server messages arrive as from a socket;
 * the stream's last `close` event closes it with its code. `pong` is not sent: a stream has no way
 * back, and the server does not wait for one.
 */
export class HttpSocket implements WebSocketLike {
  readyState = 0
  protocol = ''
  onopen: WebSocketLike['onopen'] = null
  onmessage: WebSocketLike['onmessage'] = null
  onclose: WebSocketLike['onclose'] = null
  onerror: WebSocketLike['onerror'] = null
  private readonly url: string
  private readonly protocols: string[]
  /** What the next stream asks for: the `auth`, then each path's `subscribe` with its version. */
  private readonly held = new Map<string, Message>()
  private request: AbortController | undefined
  private due = false
  private retire: ReturnType<typeof setTimeout> | undefined

  /**
   * @param url - the hub's endpoint, `ws(s)://` or `http(s)://`
   * @param retireMs - if given, it closes itself with 1012 (reconnect at once) after this long
   */
  constructor(url: string, protocols: string | string[], retireMs?: number) {
    this.url = url.replace(/^ws/i, 'http')
    this.protocols = typeof protocols === 'string' ? [protocols] : protocols
    setTimeout(() => {
      if (this.readyState !== 0) return
      this.readyState = 1
      this.onopen?.({})
    })
    if (retireMs !== undefined) this.retire = setTimeout(() => this.ended(1012), retireMs)
  }

  send(data: string): void {
    const message = JSON.parse(data) as Message
    const { type, path = '' } = message
    if (type === 'pong') return
    if (type === 'unsubscribe') this.held.delete(path)
    else this.held.set(type === 'auth' ? '' : path, message)
    // Every message of this turn goes in one stream.
    if (this.due) return
    this.due = true
    queueMicrotask(() => {
      this.due = false
      void this.open()
    })
  }

  close(): void {
    this.readyState = 3
    clearTimeout(this.retire)
    this.request?.abort()
  }

  /** Closes with `code`, as the server's close would. */
  private ended(code: number): void {
    if (this.readyState === 3) return
    this.close()
    this.onclose?.({ code })
  }

  /** Opens a stream with what is held, in place of the current one; closes the socket when it ends. */
  private async open(): Promise<void> {
    if (this.readyState !== 1) return
    this.request?.abort()
    const request = (this.request = new AbortController())
    let code = ABNORMAL
    try {
      const response = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ protocols: this.protocols, messages: [...this.held.values()] }),
        signal: request.signal,
        // Cookies go with it as with an upgrade, to an endpoint of another allowed origin too.
        credentials: 'include',
      })
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`)
      this.protocol = response.headers.get('x-listenjs-protocol') ?? ''
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      let text = ''
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        text += read.value
        for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n')) {
          const lines = text.slice(0, end).split('\n')
          text = text.slice(end + 2)
          const data = lines
            .filter((line) => line.startsWith('data: '))
            .map((line) => line.slice(6))
            .join('\n')
          if (lines[0] === 'event: close') code = (JSON.parse(data) as { code: number }).code
          else this.received(data)
        }
      }
    } catch {
      // Refused, unreachable, cut: an abnormal close (unless replaced or closed on purpose).
    }
    if (request === this.request) this.ended(code)
  }

  /** Hands a server message on, keeping the version of its path for the next stream. */
  private received(data: string): void {
    const message = JSON.parse(data) as Message
    const held = message.path === undefined ? undefined : this.held.get(message.path)
    if (held) {
      const { type, version } = message
      if (type === 'data' || type === 'patch' || type === 'subscribed') held.version = version
      else if (type === 'gone') held.version = undefined
      else if (type === 'error') this.held.delete(message.path as string)
    }
    this.onmessage?.({ data })
  }
}

/** Options of {@link httpFallback}. */
export interface HttpFallbackOptions {
  /** Sockets in a row that never opened before the HTTP stream is used instead. @default 2 */
  after?: number
  /**
   * How long the HTTP stream is used before a WebSocket is tried again (the stream is then closed with
   * 1012 and the client reconnects at once, resubscribing with the versions it holds). A page that
   * comes back online tries at its next reconnect. @default 300000 (5 minutes)
   */
  retryWebSocketMs?: number
}

/**
 * A WebSocket class for `createClient({ WebSocket: httpFallback() })`: WebSockets while they open, the
 * HTTP stream ({@link HttpSocket}) after `after` sockets in a row that never opened (a proxy that
 * refuses the upgrade, a network that drops it), WebSockets again after `retryWebSocketMs`.
 * @param WebSocket - the WebSocket class to use while it works; default `globalThis.WebSocket`
 */
export function httpFallback(
  WebSocket: WebSocketConstructor | undefined = globalThis.WebSocket as WebSocketConstructor | undefined,
  options: HttpFallbackOptions = {},
): WebSocketConstructor {
  const { after = 2, retryWebSocketMs = 300_000 } = options
  // WebSockets that never opened, in a row; when the last of them failed.
  let failures = 0
  let since = 0
  globalThis.addEventListener?.('online', () => (failures = 0))
  return function FallbackSocket(url: string, protocols: string | string[]): WebSocketLike {
    const left = since + retryWebSocketMs - Date.now()
    // The stream retires when WebSockets are worth trying again.
    if (!WebSocket || (failures >= after && left > 0))
      return new HttpSocket(url, protocols, WebSocket ? left : undefined)
    const socket = new WebSocket(url, protocols) as WebSocketLike & {
      addEventListener?(type: string, listener: () => void): void
    }
    let opened = false
    socket.addEventListener?.('open', () => {
      opened = true
      failures = 0
    })
    socket.addEventListener?.('close', () => {
      if (!opened && ++failures >= after) since = Date.now()
    })
    return socket
  } as unknown as WebSocketConstructor
}
