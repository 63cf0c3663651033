/**
 * TanStack Query integration: `liveQueries(queryClient, client)` makes every query whose key names a
 * GET path live. Pushes are written into the cache with `setQueryData` under the query's own key, so
 * `useQuery` code (React, Vue, Solid, Svelte, or `QueryObserver` itself) updates with no other change.
 */
import type { Query, QueryClient, QueryKey } from '@tanstack/query-core'
import { defaultClient } from '../client/index'
import type { Client } from '../client/index'

/** Options of {@link liveQueries}. */
export interface LiveQueriesOptions {
  /**
   * The path a query key names, or `undefined` for a query that is not live.
   * @default a key of one string starting with `/` names that path: `['/appointments']`,
   * `['/appointments?week=2026-W48']`
   */
  pathOf?: (queryKey: QueryKey) => string | undefined
  /**
   * `'wait'`: a query whose resource does not exist yet keeps listening (see `listen`'s option of the
   * same name): its query function reports the absence, and the resource's first state is written into
   * the cache when it is created. @default undefined (listening to a missing resource is refused, and
   * the query invalidated)
   */
  missing?: 'wait'
}

/** The default {@link LiveQueriesOptions.pathOf}: `['/path']` names `/path`. */
export function pathOfKey(queryKey: QueryKey): string | undefined {
  const [first] = queryKey
  return queryKey.length === 1 && typeof first === 'string' && first.startsWith('/') ? first : undefined
}

interface Live {
  readonly stop: () => void
  /** A push not written yet, waiting for an in-flight fetch to be cancelled. */
  waiting: boolean
  latest: unknown
}

/**
 * Makes the queries of `queryClient` whose key names a path live through `client`: a query is
 * listened to while it has observers (a mounted `useQuery`), and every state pushed is written with
 * `queryClient.setQueryData(queryKey, data)`. A push cancels a fetch of the same query still in
 * flight, whose older answer would otherwise overwrite it. A resource answering 404/410 after a
 * change (deleted), or found missing when the subscription starts, invalidates its query, so its own
 * `queryFn` reports it.
 *
 * Pushes keep live queries fresh: give them `staleTime: Infinity` to skip refetches on mount and
 * window focus. The query function still makes the first fetch, as usual.
 * @param client - the listenjs client; default: the page's default client (as `listen()` uses)
 * @returns a function that stops every listener and the cache subscription
 */
export function liveQueries(
  queryClient: QueryClient,
  client: Client = defaultClient(),
  options: LiveQueriesOptions = {},
): () => void {
  const pathOf = options.pathOf ?? pathOfKey
  const cache = queryClient.getQueryCache()
  const live = new Map<Query, Live>()

  // Writes the newest push. A fetch of the query still in flight started before it and may answer an
  // older state: it is cancelled first (reverting to the state before it), and the push written once
  // the cancellation settled. A fetch started after that answers a state at least as new.
  const write = (query: Query, entry: Live): void => {
    if (live.get(query) !== entry) return
    if (query.state.fetchStatus !== 'fetching') {
      queryClient.setQueryData(query.queryKey, entry.latest)
      return
    }
    if (entry.waiting) return
    entry.waiting = true
    void query.cancel({ revert: true }).then(() => {
      entry.waiting = false
      if (live.get(query) === entry) queryClient.setQueryData(query.queryKey, entry.latest)
    })
  }

  // In use: observed, and still the cache's query for its key. (A key never changes, so neither
  // does the path it names.)
  const inUse = (query: Query): boolean =>
    query.getObserversCount() > 0 && cache.get(query.queryHash) === query

  const sync = (query: Query): void => {
    const path = pathOf(query.queryKey)
    const entry = live.get(query)
    if (path !== undefined && inUse(query)) {
      if (entry) return
      const created: Live = {
        waiting: false,
        latest: undefined,
        stop: client.listen(
          path,
          (data) => {
            created.latest = data
            write(query, created)
          },
          {
            missing: options.missing,
            onGone: () => void queryClient.invalidateQueries({ queryKey: query.queryKey, exact: true }),
            // Deleted between the query's fetch and the subscription's snapshot: the same news.
            onError: (error) => {
              if (error.code === 'not_found')
                void queryClient.invalidateQueries({ queryKey: query.queryKey, exact: true })
            },
          },
        ),
      }
      live.set(query, created)
    } else if (entry) {
      // Stopped one macrotask later, so that a component remounting at once (StrictMode) keeps it.
      setTimeout(() => {
        if (live.get(query) !== entry || inUse(query)) return
        live.delete(query)
        entry.stop()
      })
    }
  }

  for (const query of cache.getAll()) sync(query)
  const unsubscribe = cache.subscribe((event) => {
    if (event.type === 'observerAdded' || event.type === 'observerRemoved' || event.type === 'removed') {
      sync(event.query)
    }
  })
  return () => {
    unsubscribe()
    for (const entry of live.values()) entry.stop()
    live.clear()
  }
}
