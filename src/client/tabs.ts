/**
 * One connection per browser: the tabs of an origin that listen to the same endpoint share one
 * WebSocket. The tab holding a Web Lock (the leader) runs the real client and relays what it receives
 * over a `BroadcastChannel`; the others (followers) tell it what they listen to. Browser-only, and kept
 * apart from the client so that apps that do not share pay nothing for it.
 */
import { ListenjsError, type ListenjsErrorCode } from '../core/errors'
import { DEFAULT_PATH } from '../core/protocol'
import { callSafely, type Status } from './connection'
import { createClient, type Client, type ClientOptions } from './index'
import type { ListenOptions, Meta, ResyncInfo, Unlisten } from './types'

/** A {@link ListenjsError} as it crosses the channel (errors lose their own fields when cloned). */
interface PlainError {
  readonly code: ListenjsErrorCode
  readonly message: string
  readonly status: number | undefined
}

/**
 * What travels over the channel. `listen`, `unlisten` and `reauth` are for the leader; `who` asks
 * every tab to announce its paths again; the rest is what the leader's client reported.
 */
type Message =
  | { readonly type: 'listen'; readonly tab: string; readonly path: string; readonly wait?: boolean }
  | { readonly type: 'unlisten'; readonly tab: string; readonly path: string }
  | { readonly type: 'who' | 'reauth' }
  | { readonly type: 'data'; readonly path: string; readonly data: unknown; readonly meta: Meta }
  | { readonly type: 'gone'; readonly path: string; readonly status: number }
  | { readonly type: 'error'; readonly path: string; readonly error: PlainError }
  | { readonly type: 'status'; readonly status: Status; readonly error?: PlainError }
  | ({ readonly type: 'resync' } & ResyncInfo)

interface Listener {
  readonly onData: (data: unknown, meta: Meta) => void
  readonly options: ListenOptions | undefined
  readonly settle: (error?: ListenjsError) => void
}

/** What one tab listens to on a path, and the last news of it. */
interface Entry {
  readonly listeners: Set<Listener>
  value?: { readonly data: unknown; readonly meta: Meta }
  gone?: { readonly path: string; readonly status: number }
  // Some listener of this tab asked `missing: 'wait'`.
  wait?: boolean
  // The path was refused: nothing is held for it until this tab listens to it again.
  refused?: boolean
}

/** What the leader serves on a path: the tabs listening, the real listeners, the last news sent. */
interface Served {
  readonly tabs: Set<string>
  readonly stops: Unlisten[]
  wait?: boolean
  last?: Message
}

const noop = (): void => {}

const plain = (error: ListenjsError | undefined): PlainError | undefined =>
  error && { code: error.code, message: error.message, status: error.status }

/**
 * A client whose connection is shared by the tabs of this origin that call `shareAcrossTabs` with the
 * same endpoint (the resolved `url`, or `name` when given): one WebSocket for the whole browser, however
 * many tabs are open. It implements {@link Client}; `listen`, `ready`, `onError`, `onGone`,
 * `missing: 'wait'`, statuses and `onResync` behave as with {@link createClient}.
 *
 * One tab, the leader, holds the Web Lock `listenjs:<key>` until it closes or calls `close()`, and runs
 * the real client with its own options (tabs sharing a key should pass the same ones: the leader's
 * `reconnect`, `patches` and `auth` serve every tab); every other tab announces its paths to it over a
 * `BroadcastChannel` and gets every value, refusal and status it relays. When the leader goes, another
 * tab takes the lock at once, asks every tab what it listens to and subscribes afresh: a follower
 * skips a state whose version it already holds and gets a changed one with `kind: 'resync'`, so nothing
 * is delivered twice and nothing is missed. `onResync` is not called for a handover, and a path
 * refused before it stays refused until listened to again. A leader tab that the browser freezes (a
 * hidden tab) hands over first, and waits its turn again when it resumes.
 *
 * Writes: only the leader tab has a connection id, so {@link Client.headers} returns it in the leader
 * tab and `{}` in followers, and `meta.own` is only ever true in the leader tab.
 *
 * Credentials: cookies are the same in every tab of an origin, so cookie-authenticated clients share
 * by default. With an `auth` option, tabs share only when `name` is given: tabs passing one `name` must
 * hold the same credentials, since the leader's `auth` is used for all of them (`reauthenticate()` in a
 * follower asks the leader to call its own). Without `name`, such a client is not shared.
 *
 * Where the Web Locks API or `BroadcastChannel` is missing, this is `createClient(options)`: one socket
 * per tab.
 * @throws ListenjsError `invalid_option`, as {@link createClient}
 */
export function shareAcrossTabs(options: ClientOptions & { name?: string }): Client {
  const own = createClient(options)
  const locks = globalThis.navigator?.locks
  if (
    !locks ||
    typeof BroadcastChannel !== 'function' ||
    (options.auth !== undefined && options.name === undefined)
  )
    return own
  const lock =
    'listenjs:' +
    (options.name ?? new URL(options.url ?? DEFAULT_PATH, location.href).href.replace(/^http/i, 'ws'))
  const channel = new BroadcastChannel(lock)
  const me = Math.random().toString(36).slice(2)
  const entries = new Map<string, Entry>()
  const statusListeners = new Set<(status: Status, error?: ListenjsError) => void>()
  const resyncListeners = new Set<(info: ResyncInfo) => void>()
  // The leader's state: its client (this tab's `own` once it holds the lock), what it serves, and the
  // tabs whose lock it waits for (granted when that tab is gone).
  let leader: Client | undefined
  const served = new Map<string, Served>()
  const watched = new Set<string>()
  let status: Status = 'closed'
  let failure: ListenjsError | undefined
  let recovered = false
  let closed = false
  let resign = noop
  let release = noop

  // Each tab holds a lock of its own while it lives, so that the leader learns when it is gone. Nothing
  // is sent before it is held: the leader must not find it free and forget a tab that is alive.
  const alive = new Promise<void>((held) => {
    void locks.request(`${lock} ${me}`, () => {
      if (closed) return
      held()
      return new Promise<void>((resolve) => (release = resolve))
    })
  })

  // Every message goes to the other tabs and to this one.
  const post = (message: Message): void => {
    void alive.then(() => {
      if (closed) return
      channel.postMessage(message)
      receive(message)
    })
  }
  const announce = (path: string, entry: Entry): void =>
    post({ type: 'listen', tab: me, path, wait: entry.wait })
  const tell = (client: Client): void =>
    post({ type: 'status', status: client.status(), error: plain(client.error()) })

  // The leader stops serving `path` to `tab`; the last tab gone unlistens.
  function leave(tab: string, path: string): void {
    const serving = served.get(path)
    if (!serving?.tabs.delete(tab) || serving.tabs.size) return
    served.delete(path)
    for (const stop of serving.stops) stop()
  }

  function serve(client: Client, path: string, wait?: boolean): Served {
    const serving: Served = { tabs: new Set(), stops: [], wait }
    const send = (message: Message): void => post((serving.last = message))
    serving.stops.push(
      client.listen(path, (data, meta) => send({ type: 'data', path, data, meta }), {
        missing: wait ? 'wait' : undefined,
        onGone: ({ status: code }) => send({ type: 'gone', path, status: code }),
        // The subscription is over: the next tab listening to the path subscribes it again.
        onError(error) {
          if (served.get(path) === serving) served.delete(path)
          for (const stop of serving.stops) stop()
          post({ type: 'error', path, error: plain(error)! })
        },
      }),
    )
    return serving
  }

  function receive(message: Message): void {
    const entry = 'path' in message ? entries.get(message.path) : undefined
    switch (message.type) {
      case 'listen': {
        if (!leader) break
        const { tab, path } = message
        let serving = served.get(path)
        // A path already served: its last news again, for the new tab (the others skip it).
        if (!serving) served.set(path, (serving = serve(leader, path, message.wait)))
        else if (serving.last) post(serving.last)
        if (message.wait && !serving.wait) {
          serving.wait = true
          serving.stops.push(leader.listen(path, noop, { missing: 'wait' }))
        }
        serving.tabs.add(tab)
        if (tab !== me && !watched.has(tab)) {
          watched.add(tab)
          void locks.request(`${lock} ${tab}`, () => {
            for (const path of [...served.keys()]) leave(tab, path)
          })
        }
        tell(leader)
        break
      }
      case 'unlisten':
        if (leader) leave(message.tab, message.path)
        break
      case 'reauth':
        leader?.reauthenticate().catch(noop)
        break
      case 'who':
        for (const [path, entry] of entries) if (!entry.refused) announce(path, entry)
        break
      case 'data': {
        const held = entry?.value
        // The same version again (a new leader's snapshot, a state relayed for another tab) is skipped.
        if (!entry || entry.refused || held?.meta.version === message.meta.version) break
        const kind =
          held && message.meta.kind === 'snapshot'
            ? 'resync'
            : held || entry.gone
              ? message.meta.kind
              : 'snapshot'
        const meta: Meta = {
          ...message.meta,
          kind,
          snapshot: kind !== 'change',
          own: !!leader && message.meta.own,
        }
        entry.value = { data: message.data, meta }
        entry.gone = undefined
        for (const listener of [...entry.listeners]) {
          callSafely(listener.onData, message.data, meta)
          listener.settle()
        }
        break
      }
      case 'gone': {
        if (!entry || entry.refused || entry.gone?.status === message.status) break
        const gone = (entry.gone = { path: message.path, status: message.status })
        entry.value = undefined
        for (const listener of [...entry.listeners]) {
          callSafely(listener.options?.onGone, gone)
          listener.settle()
        }
        break
      }
      case 'error': {
        if (!entry) break
        const { code, message: text, status: httpStatus } = message.error
        const error = new ListenjsError(code, text, { status: httpStatus, path: message.path })
        const listeners = [...entry.listeners]
        entry.value = entry.gone = undefined
        entry.refused = true
        // The leader's client gave up: its listeners are dropped, as the client's own are.
        if (code === 'closed') {
          entries.delete(message.path)
          entry.listeners.clear()
        }
        for (const listener of listeners) {
          callSafely(listener.options?.onError, error)
          listener.settle(error)
        }
        break
      }
      case 'status': {
        const changed = message.status !== status
        status = message.status
        failure = message.error && new ListenjsError(message.error.code, message.error.message, message.error)
        if (changed) for (const listener of [...statusListeners]) callSafely(listener, status, failure)
        break
      }
      case 'resync': {
        recovered = message.recovered
        const info = { recovered, changed: message.changed.filter((path) => entries.has(path)) }
        if (entries.size) for (const listener of [...resyncListeners]) callSafely(listener, info)
        break
      }
    }
  }

  channel.onmessage = (event: MessageEvent<Message>) => receive(event.data)

  own.onStatus(() => leader && tell(own))
  own.onResync((info) => leader && post({ type: 'resync', ...info }))
  // Held until this tab closes, calls `close()` or is frozen: the browser then grants it to another
  // tab at once.
  const elect = (): void =>
    void locks.request(lock, () => {
      if (closed) return
      leader = own
      // The new leader knows no path yet: every tab, this one too, announces its paths again.
      post({ type: 'who' })
      return new Promise<void>((resolve) => (resign = resolve))
    })
  elect()
  // A tab the browser freezes (a hidden tab, to save power) runs nothing more: as leader it would
  // starve the others. It hands over first, and when it resumes waits its turn again, announcing its
  // paths to whoever leads.
  const page = globalThis.document
  page?.addEventListener('freeze', () => {
    if (!leader) return
    leader = undefined
    served.clear()
    own.close()
    resign()
  })
  page?.addEventListener('resume', () => {
    if (closed) return
    elect()
    for (const [path, entry] of entries) if (!entry.refused) announce(path, entry)
  })

  return {
    listen(path, onData, listenOptions) {
      let settle: Listener['settle'] = noop
      const ready = new Promise<void>((resolve, reject) => {
        settle = (error) => (error ? reject(error) : resolve())
      })
      ready.catch(noop)
      const listener: Listener = { onData: onData as Listener['onData'], options: listenOptions, settle }
      const wait = listenOptions?.missing === 'wait'
      let entry = entries.get(path)
      if (!entry) entries.set(path, (entry = { listeners: new Set() }))
      else if (!entry.refused && (entry.value || entry.gone)) {
        const { value, gone } = entry
        const known = entry
        // After `listen` returns, as the client does; skipped when newer news or an unlisten came first.
        void Promise.resolve().then(() => {
          if (known.value !== value || known.gone !== gone || !known.listeners.has(listener)) return
          if (value)
            callSafely(listener.onData, value.data, {
              ...value.meta,
              snapshot: true,
              kind: 'snapshot',
              own: false,
              patched: false,
            })
          else callSafely(listenOptions?.onGone, gone!)
          settle()
        })
      }
      if (!entry.listeners.size || entry.refused || (wait && !entry.wait)) {
        entry.refused = false
        entry.wait ||= wait
        announce(path, entry)
      }
      entry.listeners.add(listener)
      const mine = entry
      return Object.assign(
        () => {
          if (!mine.listeners.delete(listener)) return
          settle(new ListenjsError('closed', 'unlistened', { path }))
          if (mine.listeners.size) return
          entries.delete(path)
          post({ type: 'unlisten', tab: me, path })
        },
        { ready },
      )
    },
    status: () => status,
    onStatus(listener) {
      const entry = (next: Status, error?: ListenjsError): void => listener(next, error)
      statusListeners.add(entry)
      return () => statusListeners.delete(entry)
    },
    error: () => failure,
    recovered: () => recovered,
    onResync(listener) {
      const entry = (info: ResyncInfo): void => listener(info)
      resyncListeners.add(entry)
      return () => resyncListeners.delete(entry)
    },
    async reauthenticate() {
      if (leader) return leader.reauthenticate()
      if (options.auth === undefined) throw new ListenjsError('invalid_option', 'no auth option')
      post({ type: 'reauth' })
    },
    headers: () => (leader ? leader.headers() : {}),
    // The other tabs learn it from the locks: this tab's is released, and so is leadership.
    close() {
      closed = true
      for (const [path, entry] of entries) {
        const error = new ListenjsError('closed', 'client closed', { path })
        for (const listener of entry.listeners) listener.settle(error)
        entry.listeners.clear()
      }
      entries.clear()
      served.clear()
      own.close()
      channel.close()
      release()
      resign()
    },
  }
}
