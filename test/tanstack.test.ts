/**
 * `listenjs/tanstack` with TanStack Query's framework-free core (`QueryObserver` is what `useQuery`
 * uses in every framework), against a real server over real sockets.
 */
import { QueryClient, QueryObserver, type QueryKey } from '@tanstack/query-core'
import WebSocket from 'ws'
import { createClient, type Client } from '../src/client'
import { liveQueries, pathOfKey } from '../src/tanstack'
import { eventually, startLiveServer, type LiveServer } from './helpers/live-server'

let server: LiveServer
let client: Client
let queryClient: QueryClient
let stop: () => void
let fetches: number

beforeAll(async () => {
  server = await startLiveServer()
})
afterAll(async () => {
  await server.stop()
})
beforeEach(() => {
  client = createClient({ url: server.wsUrl, WebSocket })
  queryClient = new QueryClient()
  stop = liveQueries(queryClient, client)
  fetches = 0
})
afterEach(async () => {
  stop()
  queryClient.clear()
  client.close()
  await eventually(async () => (await server.stats()).connections === 0)
})

/** A query function as an app would write it: GET the path its key names (404 throws). */
async function getJson({ queryKey }: { queryKey: QueryKey }): Promise<unknown> {
  fetches++
  const { status, json } = await server.request('GET', String(queryKey[0]))
  if (status !== 200) throw new Error(`GET answered ${status}`)
  return json
}

function observe(queryKey: QueryKey, queryFn = getJson): QueryObserver {
  return new QueryObserver(queryClient, { queryKey, queryFn, staleTime: Infinity, retry: false })
}

describe('liveQueries', () => {
  it('writes every push into the cache under the query key; observers update without refetching', async () => {
    const observer = observe(['/items'])
    const seen: unknown[] = []
    const unsubscribe = observer.subscribe((result) => seen.push(result.data))
    try {
      await eventually(() => observer.getCurrentResult().data !== undefined)
      const { n } = observer.getCurrentResult().data as { n: number }
      await server.request('POST', '/items')
      await eventually(() => (observer.getCurrentResult().data as { n: number }).n === n + 1)
      await server.request('POST', '/items')
      await eventually(() => (observer.getCurrentResult().data as { n: number }).n === n + 2)
      expect(fetches).toBe(1)
      expect(seen).toContainEqual({ n: n + 1 })
      expect(queryClient.getQueryData(['/items'])).toEqual({ n: n + 2 })
    } finally {
      unsubscribe()
    }
  })

  it('listens only while a query has observers, and only to keys that name a path', async () => {
    const live = observe(['/things/a'])
    const notAPath = observe(['things', 'a'], async () => ({ other: true }))
    const unsubscribeLive = live.subscribe(() => {})
    const unsubscribeOther = notAPath.subscribe(() => {})
    await eventually(async () => (await server.stats()).subscriptions === 1)
    unsubscribeLive()
    unsubscribeOther()
    await eventually(async () => (await server.stats()).subscriptions === 0)
    expect(pathOfKey(['/a'])).toBe('/a')
    expect(pathOfKey(['/a', { page: 2 }])).toBeUndefined()
    expect(pathOfKey(['a'])).toBeUndefined()
  })

  it('a push cancels an older fetch still in flight, so its answer never overwrites the push', async () => {
    let answer: (value: unknown) => void = () => {}
    const stale = { n: -1 }
    const observer = observe(['/items'], () => {
      fetches++
      return new Promise((resolve) => (answer = resolve))
    })
    const unsubscribe = observer.subscribe(() => {})
    try {
      // The subscription's snapshot arrives while the query function has not answered.
      await eventually(() => observer.getCurrentResult().data !== undefined)
      const pushed = observer.getCurrentResult().data as { n: number }
      expect(pushed.n).toBeGreaterThanOrEqual(0)
      answer(stale)
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(queryClient.getQueryData(['/items'])).toEqual(pushed)
    } finally {
      unsubscribe()
    }
  })

  it('invalidates a query whose resource is gone, so its own query function reports it', async () => {
    await server.request('PUT', '/things/doomed', { label: 'soon gone' })
    const observer = observe(['/things/doomed'])
    const unsubscribe = observer.subscribe(() => {})
    try {
      await eventually(() => observer.getCurrentResult().data !== undefined)
      expect(fetches).toBe(1)
      await server.request('DELETE', '/things/doomed')
      await eventually(() => observer.getCurrentResult().status === 'error')
      expect(fetches).toBe(2)
    } finally {
      unsubscribe()
    }
  })

  it('invalidates a query whose resource is already missing when its subscription starts', async () => {
    let calls = 0
    // The query's own fetch saw the resource; by the time the subscription starts it is gone.
    const observer = observe(['/things/vanished'], async () => (++calls === 1 ? { label: 'was here' } : null))
    const unsubscribe = observer.subscribe(() => {})
    try {
      await eventually(() => calls === 2)
      expect(observer.getCurrentResult().data).toBeNull()
    } finally {
      unsubscribe()
    }
  })

  it("with missing: 'wait', a query of a resource not created yet gets its first state when it is", async () => {
    stop()
    stop = liveQueries(queryClient, client, { missing: 'wait' })
    const observer = observe(['/things/later'])
    const unsubscribe = observer.subscribe(() => {})
    try {
      // The query function reports the absence; the subscription stays (a refused one would not).
      await eventually(() => observer.getCurrentResult().status === 'error')
      await eventually(async () => (await server.stats()).subscriptions === 1)
      await server.request('PUT', '/things/later', { label: 'now here' })
      await eventually(() => observer.getCurrentResult().status === 'success')
      expect(observer.getCurrentResult().data).toMatchObject({ label: 'now here' })
    } finally {
      unsubscribe()
    }
  })

  it('with a pathOf option, any key can name a path; the returned function stops everything', async () => {
    stop()
    stop = liveQueries(queryClient, client, {
      pathOf: (key) => (key[0] === 'thing' ? `/things/${String(key[1])}` : undefined),
    })
    const observer = observe(['thing', 'b'], async () => ({ id: 'b', label: 'second' }))
    const unsubscribe = observer.subscribe(() => {})
    try {
      await eventually(async () => (await server.stats()).subscriptions === 1)
      await server.request('PUT', '/things/b', { label: 'renamed' })
      await eventually(() => (observer.getCurrentResult().data as { label: string }).label === 'renamed')
      stop()
      await eventually(async () => (await server.stats()).subscriptions === 0)
    } finally {
      unsubscribe()
      await server.request('PUT', '/things/b', { label: 'second' })
    }
  })
})
