/**
 * What a client listens to: the listeners of each path, the last value received, whether the server
 * refused the path, and how the last reconnect recovered. The socket itself lives in `connection.ts`.
 */
import { ListenjsError } from '../core/errors'
import { PERMANENT_ERRORS } from '../core/protocol'
import type {
  ClientMessage,
  DataMessage,
  ErrorCode,
  ErrorMessage,
  GoneMessage,
  PatchMessage,
  SubscribedMessage,
} from '../core/protocol'
import { callSafely } from './connection'
import type { ListenOptions, Meta, PatchSupport, ResyncInfo, Unlisten } from './types'

interface Listener {
  readonly onData: (data: unknown, meta: Meta) => void
  readonly options: ListenOptions | undefined
  // Settles `ready`: resolves without an error, rejects with one; later calls do nothing.
  readonly settle: (error?: ListenjsError) => void
}

interface Entry {
  readonly listeners: Set<Listener>
  value?: { readonly data: unknown; readonly meta: Meta }
  // Set when the server does not hold the subscription after an error; a new `listen` clears it.
  refusal?: ErrorCode
  // Set from `subscribe` until the answer (`data` snapshot, `subscribed`, `gone` or `error`) arrives.
  awaiting?: boolean
  // `'wait'` once a listener asked to wait for a missing resource: sent with every `subscribe`.
  wait?: 'wait'
  // What the last `subscribe` sent as `missing`.
  asked?: 'wait'
  // What `onGone` got last, while the resource is missing (no value).
  gone?: { readonly path: string; readonly status: number }
}

/** How the subscriptions reach the connection. */
export interface SubscriptionLink {
  /** Sends a message if the socket is ready; dropped otherwise (the next `ready` resubscribes). */
  send(message: ClientMessage): void
  /** Called when the last path is unlistened. */
  idle(): void
  /** The id the server gave the current connection, if it gave one. */
  id(): string | undefined
  /** Applies a patch to the state held, verified; `undefined` when it does not verify. */
  patch?: PatchSupport
  /**
   * Set for a cookie-authenticated client (no `auth` option): opens a new socket, so that the browser
   * sends its current cookies. A path refused with 401 calls it once before the refusal is reported.
   */
  reconnect?(): void
}

/** The listeners of one client, keyed by path. */
export interface Subscriptions {
  /** Adds a listener; the first one of a path (or the first after a refusal) subscribes. */
  add(path: string, onData: (data: unknown, meta: Meta) => void, options?: ListenOptions): Unlisten
  /**
   * Subscribes every path again on a fresh socket, with the version held, except those refused for a
   * permanent reason. With `reconnect`, starts a recovery round that ends when every path answered.
   */
  resubscribe(reconnect?: boolean): void
  /** New credentials were sent: subscribes again every path refused as `unauthorized`. */
  reauthorized(): void
  /** Hands a `data`, `patch`, `subscribed`, `gone` or `error` message to the listeners of its path. */
  receive(message: DataMessage | PatchMessage | SubscribedMessage | GoneMessage | ErrorMessage): void
  /**
   * Drops every listener and rejects their pending `ready` with `closed`; with a close `code`, first
   * tells each one `closed` through `onError`.
   */
  clear(code?: number): void
  /** Whether the last reconnect's round ended with every path confirmed unchanged. */
  recovered(): boolean
  /** Calls `listener` at the end of each reconnect's round; returns the function that stops it. */
  onResync(listener: (info: ResyncInfo) => void): () => void
}

const noop = (): void => {}

/** Creates an empty set of subscriptions that talks to the server through `link`. */
export function createSubscriptions(link: SubscriptionLink): Subscriptions {
  const entries = new Map<string, Entry>()
  const resyncListeners = new Set<(info: ResyncInfo) => void>()
  // The entries that have not answered since the last reconnect resubscribed them.
  let round: Set<Entry> | undefined
  let changed: string[] = []
  let gap = false
  let recovered = false
  // Set when a 401 made the client reconnect; until that reconnect's round ends, 401s are reported.
  let retrying = false

  // `version` and `missing` are left out of the frame (JSON drops `undefined`) while not set;
  // `afresh` leaves the version out: the state held is not trusted (a patch did not verify).
  const subscribe = (path: string, entry: Entry, afresh?: boolean): void => {
    entry.awaiting = true
    link.send({
      type: 'subscribe',
      path,
      version: afresh ? undefined : entry.value?.meta.version,
      missing: (entry.asked = entry.wait),
    })
  }

  // `entry` answered its resubscription (`gap`: with anything but "unchanged"); the last answer ends
  // the round.
  function answered(entry: Entry, isGap: boolean, path?: string): void {
    if (!round?.delete(entry)) return
    gap ||= isGap
    if (path) changed.push(path)
    if (round.size) return
    round = undefined
    retrying = false
    recovered = !gap
    const info = { recovered, changed }
    for (const listener of [...resyncListeners]) callSafely(listener, info)
  }

  return {
    add(path, onData, options) {
      let settle: Listener['settle'] = noop
      const ready = new Promise<void>((resolve, reject) => {
        settle = (error) => (error ? reject(error) : resolve())
      })
      ready.catch(noop)
      const listener: Listener = { onData, options, settle }
      const known = entries.get(path)
      const own: Entry = known ?? { listeners: new Set() }
      // Only `'wait'` is sent: a hub closes a socket that sends any other value.
      if (options?.missing === 'wait') own.wait = 'wait'
      if (!known || own.refusal) {
        entries.set(path, own)
        own.refusal = undefined
        subscribe(path, own)
      } else if (own.value || own.gone) {
        const { value, gone } = own
        // A native promise, not queueMicrotask: the value arrives after `listen` returns, like any other.
        // Skipped when newer news (delivered to this listener too), an error or an unlisten came first.
        void Promise.resolve().then(() => {
          if (own.value !== value || own.gone !== gone || !own.listeners.has(listener)) return
          if (value)
            callSafely(onData, value.data, {
              ...value.meta,
              snapshot: true,
              kind: 'snapshot',
              own: false,
              patched: false,
            })
          else callSafely(options?.onGone, gone!)
          settle()
        })
      }
      own.listeners.add(listener)
      return Object.assign(
        () => {
          if (!own.listeners.delete(listener)) return
          settle(new ListenjsError('closed', 'unlistened', { path }))
          if (own.listeners.size) return
          entries.delete(path)
          answered(own, false)
          if (!own.refusal) link.send({ type: 'unsubscribe', path })
          if (!entries.size) link.idle()
        },
        { ready },
      )
    },

    resubscribe(reconnect) {
      round = reconnect ? new Set() : undefined
      changed = []
      gap = recovered = false
      for (const [path, entry] of entries) {
        if (entry.refusal && PERMANENT_ERRORS.includes(entry.refusal)) continue
        entry.refusal = undefined
        round?.add(entry)
        subscribe(path, entry)
      }
      // A reconnect with nothing to resubscribe has nothing to recover.
      if (!round?.size) {
        round = undefined
        recovered = !!reconnect
        retrying = false
      }
    },

    reauthorized() {
      for (const [path, entry] of entries) {
        if (entry.refusal !== 'unauthorized') continue
        entry.refusal = undefined
        subscribe(path, entry)
      }
    },

    receive(message) {
      const path = message.path
      const entry = path === undefined ? undefined : entries.get(path)
      if (!entry || path === undefined) return
      const listeners = [...entry.listeners]
      const held = entry.value?.meta.version
      const confirm = (): void => {
        for (const listener of listeners) listener.settle()
        answered(entry, false)
      }
      switch (message.type) {
        case 'patch':
        case 'data': {
          const snapshot = message.type === 'data' && !!message.snapshot
          // The server answers a subscribe before it pushes anything for it: a push that arrives
          // first was sent for an earlier subscription of this path (unlistened, then listened again).
          if (entry.awaiting && !snapshot) break
          if (snapshot) entry.awaiting = false
          const resync = snapshot && !!held && !!round?.has(entry)
          // A state the listeners already hold changes nothing (an answer repeating the version held,
          // or a frame of an earlier subscription of the path): it is never delivered twice.
          if (held === message.version) {
            confirm()
            break
          }
          const patched = message.type === 'patch'
          // A patch applies to the state it names, and must give the state its checksum names: if
          // not, the path is subscribed again without a version, and its state comes whole.
          const data = patched
            ? held === message.from
              ? link.patch?.(entry.value!.data, message)
              : undefined
            : 'json' in message
              ? message.json
              : message.text
          if (patched && data === undefined) {
            link.send({ type: 'unsubscribe', path })
            subscribe(path, entry, true)
            break
          }
          const meta: Meta = {
            path,
            version: message.version,
            snapshot,
            kind: resync ? 'resync' : snapshot ? 'snapshot' : 'change',
            own: !!message.origin && message.origin === link.id(),
            patched,
          }
          entry.value = { data, meta }
          entry.gone = undefined
          for (const listener of listeners) {
            callSafely(listener.onData, data, meta)
            listener.settle()
          }
          answered(entry, true, resync ? path : undefined)
          break
        }
        case 'subscribed':
          entry.awaiting = false
          confirm()
          break
        case 'gone': {
          // Gone is not a state the app can hold: the next resubscription asks for the state afresh.
          // It answers a subscription that waits for its resource (its `ready` resolves), or is news.
          const gone = (entry.gone = { path, status: message.status })
          entry.value = undefined
          entry.awaiting = false
          for (const listener of listeners) {
            callSafely(listener.options?.onGone, gone)
            listener.settle()
          }
          answered(entry, !!held)
          break
        }
        case 'error': {
          entry.awaiting = false
          // A listener asked to wait after this path was subscribed without it: subscribed again,
          // waiting (a hub that ignores `missing` refuses that one, and the refusal is reported).
          if (message.code === 'not_found' && entry.wait && !entry.asked) {
            subscribe(path, entry)
            break
          }
          // A cookie session may have rotated since this socket opened (the browser sent its cookies
          // once, on the upgrade): a 401 gets one fresh socket before it is reported. The path keeps
          // its value, so an unchanged state is not delivered again.
          if (message.status === 401 && link.reconnect && !retrying) {
            retrying = true
            link.reconnect()
            break
          }
          const error = new ListenjsError(message.code, message.message, { status: message.status, path })
          // The server no longer holds the subscription, so the value stops being current.
          entry.value = entry.gone = undefined
          entry.refusal = message.code
          for (const listener of listeners) {
            callSafely(listener.options?.onError, error)
            listener.settle(error)
          }
          answered(entry, true)
          break
        }
      }
    },

    clear(code) {
      const all = [...entries]
      entries.clear()
      round = undefined
      for (const [path, entry] of all) {
        const listeners = [...entry.listeners]
        // Emptied so that an old unlisten cannot remove a newer entry of the same path.
        entry.listeners.clear()
        const error = new ListenjsError(
          'closed',
          code === undefined ? 'client closed' : `connection closed with code ${code}`,
          { path },
        )
        for (const listener of listeners) {
          if (code !== undefined) callSafely(listener.options?.onError, error)
          listener.settle(error)
        }
      }
    },

    recovered: () => recovered,

    onResync(listener) {
      const entry = (info: ResyncInfo): void => listener(info)
      resyncListeners.add(entry)
      return () => resyncListeners.delete(entry)
    },
  }
}
