/**
 * What a client listens to: the listeners of each path, the last value received, and whether the
 * server refused the path. The socket itself lives in `connection.ts`.
 */
import { ListenjsError } from '../core/errors'
import { PERMANENT_ERRORS } from '../core/protocol'
import type { ClientMessage, DataMessage, ErrorCode, ErrorMessage, GoneMessage } from '../core/protocol'
import { callSafely } from './connection'

/** What comes with each delivered value. */
export interface Meta {
  /** The path as given to `listen`. */
  readonly path: string
  /** The server's version of this state (a strong hash or the route's ETag). */
  readonly version: string
  /** True on the first delivery of a subscription (also after a reconnect), false for changes. */
  readonly snapshot: boolean
}

/** Callbacks of one `listen` call besides the data callback. */
export interface ListenOptions {
  /**
   * The subscription was refused or ended (`unauthorized`, `not_found`, `failed`, `bad_path`, `limit`),
   * or the client gave up on the connection (`closed`, after which this listener is dropped).
   * @default undefined (errors are not reported)
   */
  onError?: (error: ListenjsError) => void
  /** The resource answered 404 or 410 after a change; the subscription stays. @default undefined */
  onGone?: (info: { path: string; status: number }) => void
}

/** Stops one `listen` call. Calling it again does nothing. */
export interface Unlisten {
  (): void
}

interface Listener {
  readonly onData: (data: unknown, meta: Meta) => void
  readonly options: ListenOptions | undefined
}

interface Entry {
  readonly listeners: Set<Listener>
  value?: { readonly data: unknown; readonly meta: Meta }
  // Set when the server does not hold the subscription after an error; a new `listen` clears it.
  refusal?: ErrorCode
}

/** How the subscriptions reach the connection. */
export interface SubscriptionLink {
  /** Sends a message if the socket is ready; dropped otherwise (the next `ready` resubscribes). */
  send(message: ClientMessage): void
  /** Called when the last path is unlistened. */
  idle(): void
}

/** The listeners of one client, keyed by path. */
export interface Subscriptions {
  /** Adds a listener; the first one of a path (or the first after a refusal) subscribes. */
  add(path: string, onData: (data: unknown, meta: Meta) => void, options?: ListenOptions): Unlisten
  /** Subscribes every path again on a fresh socket, except those refused for a permanent reason. */
  resubscribe(): void
  /** Hands a `data`, `gone` or `error` message to the listeners of its path. */
  receive(message: DataMessage | GoneMessage | ErrorMessage): void
  /** Drops every listener; with a close `code`, first tells each one `closed` through `onError`. */
  clear(code?: number): void
}

/** Creates an empty set of subscriptions that talks to the server through `link`. */
export function createSubscriptions(link: SubscriptionLink): Subscriptions {
  const entries = new Map<string, Entry>()
  const subscribe = (path: string): void => link.send({ type: 'subscribe', path })

  return {
    add(path, onData, options) {
      const listener: Listener = { onData, options }
      let entry = entries.get(path)
      if (!entry) {
        entries.set(path, (entry = { listeners: new Set() }))
        subscribe(path)
      } else if (entry.refusal) {
        entry.refusal = undefined
        subscribe(path)
      } else if (entry.value) {
        const known = entry
        // A native promise, not queueMicrotask: the value arrives after `listen` returns, like any other.
        void Promise.resolve().then(() => {
          if (known.value && known.listeners.has(listener))
            callSafely(onData, known.value.data, known.value.meta)
        })
      }
      entry.listeners.add(listener)
      const own = entry
      return () => {
        if (!own.listeners.delete(listener) || own.listeners.size) return
        entries.delete(path)
        if (!own.refusal) link.send({ type: 'unsubscribe', path })
        if (!entries.size) link.idle()
      }
    },

    resubscribe() {
      for (const [path, entry] of entries) {
        if (entry.refusal && PERMANENT_ERRORS.includes(entry.refusal)) continue
        entry.refusal = undefined
        subscribe(path)
      }
    },

    receive(message) {
      const path = message.path
      const entry = path === undefined ? undefined : entries.get(path)
      if (!entry || path === undefined) return
      const listeners = [...entry.listeners]
      switch (message.type) {
        case 'data': {
          const meta: Meta = { path, version: message.version, snapshot: !!message.snapshot }
          const data = 'json' in message ? message.json : message.text
          entry.value = { data, meta }
          for (const listener of listeners) callSafely(listener.onData, data, meta)
          break
        }
        case 'gone':
          for (const listener of listeners)
            callSafely(listener.options?.onGone, { path, status: message.status })
          break
        case 'error': {
          const error = new ListenjsError(message.code, message.message, { status: message.status, path })
          // The server no longer holds the subscription, so the value stops being current.
          entry.value = undefined
          entry.refusal = message.code
          for (const listener of listeners) callSafely(listener.options?.onError, error)
          break
        }
      }
    },

    clear(code) {
      const all = [...entries]
      entries.clear()
      for (const [path, entry] of all) {
        const listeners = [...entry.listeners]
        // Emptied so that an old unlisten cannot remove a newer entry of the same path.
        entry.listeners.clear()
        if (code === undefined) continue
        const error = new ListenjsError('closed', `connection closed with code ${code}`, { path })
        for (const listener of listeners) callSafely(listener.options?.onError, error)
      }
    },
  }
}
