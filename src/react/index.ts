/**
 * React bindings: `useListen('/appointments')` keeps a component rendered with the current state of
 * `GET /appointments`. Every component shares one client, so one WebSocket, whatever the number of
 * paths. No JSX here, so the entry needs no JSX setup to build.
 */
import { createContext, createElement, useContext, useEffect, useState } from 'react'
import type { ReactElement, ReactNode } from 'react'
import { defaultClient } from '../client/index'
import type { Client, ListenjsError } from '../client/index'

/**
 * Where a `useListen` is:
 * - `idle`: no path (`useListen(null)`), nothing subscribed;
 * - `loading`: subscribed, no state yet;
 * - `live`: `data` is the current state and the socket is open;
 * - `reconnecting`: the socket is down; `data` is the last state held, maybe stale. When the socket is
 *   back and every path answered, `live` again (with the new state if it changed meanwhile);
 * - `gone`: the resource answered 404 or 410 after a change (deleted), or does not exist yet (with
 *   `missing: 'wait'`); `data` is undefined. If it comes back (or is created), `live`;
 * - `error`: the subscription was refused (`error.code`: `unauthorized`, `not_found`, …) or the client
 *   gave up (`closed`); `data` is undefined.
 */
export type ListenStatus = 'idle' | 'loading' | 'live' | 'reconnecting' | 'gone' | 'error'

/** What {@link useListen} returns. */
export interface ListenState<T> {
  /** The current state of the resource (the parsed JSON body, a string for other types, null for 204). */
  readonly data: T | undefined
  readonly status: ListenStatus
  /** Why the subscription was refused or ended, while `status` is `error`. */
  readonly error: ListenjsError | undefined
  /** The server's version of `data`. */
  readonly version: string | undefined
}

/** Options of {@link useListen}. */
export interface UseListenOptions {
  /** The client to listen through. @default the {@link ListenProvider}'s, else the page's default client */
  client?: Client
  /**
   * `'wait'`: a path that does not exist yet (404 or 410) is `gone`, not an `error`, and becomes `live`
   * when the resource is created; the subscription is kept across reconnects (see `ListenOptions.missing`
   * of `listenjs/client`). @default undefined (a missing resource is an `error` with code `not_found`)
   */
  missing?: 'wait'
}

const ClientContext = createContext<Client | undefined>(undefined)

/** Props of {@link ListenProvider}. */
export interface ListenProviderProps {
  /** The client every `useListen` below uses (e.g. `createClient({ url, auth })`). */
  client: Client
  children?: ReactNode
}

/**
 * Gives every `useListen` below it a client of your own: another endpoint, an `auth` token, other
 * reconnect options. Without a provider, `useListen` uses the page's default client
 * (`ws(s)://location.host/listen`), the one `listen()` from `listenjs/client` uses.
 */
export function ListenProvider({ client, children }: ListenProviderProps): ReactElement {
  return createElement(ClientContext.Provider, { value: client }, children)
}

const IDLE: ListenState<never> = { data: undefined, status: 'idle', error: undefined, version: undefined }
const LOADING: ListenState<never> = { ...IDLE, status: 'loading' }

/**
 * The current state of `GET path`, kept current by pushes. Subscribes on mount and when `path`
 * changes (the state starts `loading` again), unsubscribes on unmount. `null` or `undefined` listens
 * to nothing (`idle`), for paths that depend on something not known yet.
 *
 * Safe under StrictMode: an unsubscription waits one macrotask, so the effect's second run (or a quick
 * remount) keeps the same subscription and socket. Renders `loading` on the server (effects do not
 * run there) and needs no client until it runs in the browser.
 */
export function useListen<T = unknown>(
  path: string | null | undefined,
  options: UseListenOptions = {},
): ListenState<T> {
  const provided = useContext(ClientContext)
  const source = options.client ?? provided
  const { missing } = options
  const [held, setHeld] = useState<{ path: string; source?: Client; state: ListenState<T> }>()

  useEffect(() => {
    if (!path) return
    const client = source ?? defaultClient()
    let active = true
    let state: ListenState<T> = LOADING
    const set = (next: Partial<ListenState<T>>): void => {
      if (!active) return
      state = { ...state, ...next }
      setHeld({ path, source, state })
    }
    const unlisten = client.listen<T>(
      path,
      (data, meta) =>
        set({
          data,
          version: meta.version,
          error: undefined,
          status: client.status() === 'open' ? 'live' : 'reconnecting',
        }),
      {
        missing,
        onError: (error) => set({ data: undefined, version: undefined, error, status: 'error' }),
        onGone: () => set({ data: undefined, version: undefined, error: undefined, status: 'gone' }),
      },
    )
    const stopStatus = client.onStatus((status) => {
      if (status !== 'open' && state.status === 'live') set({ status: 'reconnecting' })
    })
    // After a reconnect every path answered: an unchanged state is live again (a changed one already
    // came through the listener).
    const stopResync = client.onResync(() => {
      if (state.status === 'reconnecting') set({ status: 'live' })
    })
    return () => {
      active = false
      stopStatus()
      stopResync()
      setTimeout(unlisten)
    }
  }, [source, path, missing])

  if (!path) return IDLE
  return held && held.path === path && held.source === source ? held.state : LOADING
}
