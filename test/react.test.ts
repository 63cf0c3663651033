/**
 * @jest-environment jsdom
 */
/**
 * `listenjs/react` in jsdom with React Testing Library, against a real server (a child process) over
 * jsdom's own WebSocket: subscribe on mount, unsubscribe on unmount, following path changes, StrictMode,
 * one socket for every component, and the statuses. Plus TanStack Query's `useQuery` made live.
 */
import { act, cleanup, render, screen, waitFor } from '@testing-library/react'
import { QueryClient, QueryClientProvider, useQuery } from '@tanstack/react-query'
import { createElement, StrictMode, type ReactElement } from 'react'
import { createClient, type Client } from '../src/client'
import { patches } from '../src/client/patches'
import { ListenProvider, useListen, type ListenState, type UseListenOptions } from '../src/react'
import { liveQueries } from '../src/tanstack'
import { eventually, startLiveServer, type LiveServer } from './helpers/live-server'

let server: LiveServer
let client: Client

beforeAll(async () => {
  server = await startLiveServer()
})
afterAll(async () => {
  await server.stop()
})
beforeEach(() => {
  client = createClient({ url: server.wsUrl, reconnect: { initialDelayMs: 50 } })
})
afterEach(async () => {
  cleanup()
  client.close()
  // Unsubscriptions wait one macrotask; the next test starts from a hub with no socket.
  await eventually(async () => (await server.stats()).connections === 0)
})

/** Renders what `useListen(path)` returns as JSON in a `<pre data-testid={id}>`. */
function Show({
  id,
  path,
  options,
}: {
  id: string
  path: string | null
  options?: UseListenOptions
}): ReactElement {
  const state: ListenState<unknown> = useListen(path, options)
  return createElement(
    'pre',
    { 'data-testid': id },
    JSON.stringify({
      status: state.status,
      data: state.data,
      error: state.error?.code,
      version: state.version,
    }),
  )
}

const shown = (id: string): { status: string; data?: unknown; error?: string; version?: string } =>
  JSON.parse(screen.getByTestId(id).textContent ?? '{}') as { status: string; data?: unknown }

const withClient = (...children: ReactElement[]): ReactElement =>
  createElement(ListenProvider, { client }, ...children)

describe('useListen', () => {
  it('subscribes on mount, re-renders on every change, and unsubscribes on unmount', async () => {
    const view = render(withClient(createElement(Show, { id: 'items', path: '/items' })))
    expect(shown('items').status).toBe('loading')
    await waitFor(() => expect(shown('items').status).toBe('live'))
    const first = shown('items')
    expect(typeof first.version).toBe('string')
    const n = (first.data as { n: number }).n
    await act(async () => {
      await server.request('POST', '/items')
    })
    await waitFor(() => expect(shown('items').data).toEqual({ n: n + 1 }))
    expect(shown('items').version).not.toBe(first.version)
    expect((await server.stats()).subscriptions).toBe(1)
    view.unmount()
    // The last path unlistened closes the socket.
    await eventually(async () => {
      const stats = await server.stats()
      return stats.subscriptions === 0 && stats.connections === 0
    })
  })

  it('follows path changes, and listens to nothing for a null path', async () => {
    const view = render(withClient(createElement(Show, { id: 'thing', path: '/things/a' })))
    await waitFor(() => expect(shown('thing').data).toEqual({ id: 'a', label: 'first' }))
    view.rerender(withClient(createElement(Show, { id: 'thing', path: '/things/b' })))
    // Never the old path's data under the new path: loading first, then b.
    expect(shown('thing').data).toBeUndefined()
    await waitFor(() => expect(shown('thing').data).toEqual({ id: 'b', label: 'second' }))
    await eventually(async () => (await server.stats()).subscriptions === 1)
    view.rerender(withClient(createElement(Show, { id: 'thing', path: null })))
    expect(shown('thing').status).toBe('idle')
    await eventually(async () => (await server.stats()).subscriptions === 0)
  })

  it('under StrictMode, shares one socket and one subscription per path across components', async () => {
    const { connects } = await server.stats()
    // Counts the sockets the client creates (the hub cannot see one aborted while connecting).
    let created = 0
    class CountingWebSocket extends WebSocket {
      constructor(url: string, protocols: string | string[]) {
        super(url, protocols)
        created++
      }
    }
    client = createClient({ url: server.wsUrl, WebSocket: CountingWebSocket })
    render(
      createElement(
        StrictMode,
        null,
        withClient(
          createElement(Show, { id: 'one', path: '/items' }),
          createElement(Show, { id: 'two', path: '/items' }),
          createElement(Show, { id: 'three', path: '/things/a' }),
        ),
      ),
    )
    await waitFor(() => {
      for (const id of ['one', 'two', 'three']) expect(shown(id).status).toBe('live')
    })
    const stats = await server.stats()
    // StrictMode's unmount and remount of every effect neither closed the socket nor opened another.
    expect(created).toBe(1)
    expect(stats.connects - connects).toBe(1)
    expect(stats.connections).toBe(1)
    expect(stats.subscriptions).toBe(2)
    const before = (shown('one').data as { n: number }).n
    await act(async () => {
      await server.request('POST', '/items')
    })
    await waitFor(() => {
      expect(shown('one').data).toEqual({ n: before + 1 })
      expect(shown('two').data).toEqual({ n: before + 1 })
    })
  })

  it('reports a refusal as error, a deletion as gone, and the resource coming back as live', async () => {
    await server.request('PUT', '/things/temp', { label: 'temporary' })
    render(
      withClient(
        createElement(Show, { id: 'secret', path: '/secret' }),
        createElement(Show, { id: 'temp', path: '/things/temp' }),
      ),
    )
    await waitFor(() => expect(shown('secret')).toMatchObject({ status: 'error', error: 'unauthorized' }))
    await waitFor(() => expect(shown('temp')).toMatchObject({ status: 'live', data: { label: 'temporary' } }))
    await act(async () => {
      await server.request('DELETE', '/things/temp')
    })
    await waitFor(() => expect(shown('temp').status).toBe('gone'))
    expect(shown('temp').data).toBeUndefined()
    await act(async () => {
      await server.request('PUT', '/things/temp', { label: 'back' })
    })
    await waitFor(() => expect(shown('temp')).toMatchObject({ status: 'live', data: { label: 'back' } }))
  })

  it("with missing: 'wait', shows a path that does not exist yet as gone, then live, and keeps waiting across a restart", async () => {
    const path = '/things/later'
    render(
      withClient(
        createElement(Show, { id: 'later', path, options: { missing: 'wait' } }),
        createElement(Show, { id: 'plain', path: '/things/never' }),
      ),
    )
    await waitFor(() => expect(shown('later').status).toBe('gone'))
    // Without the option, a missing path is refused as before.
    await waitFor(() => expect(shown('plain')).toMatchObject({ status: 'error', error: 'not_found' }))
    await act(async () => {
      await server.request('PUT', path, { label: 'created' })
    })
    await waitFor(() => expect(shown('later')).toMatchObject({ status: 'live', data: { label: 'created' } }))
    await act(async () => {
      await server.request('DELETE', path)
    })
    await waitFor(() => expect(shown('later').status).toBe('gone'))
    // A restart closes every socket with 1012: the client resubscribes, still waiting.
    let resynced = false
    const stop = client.onResync(() => {
      resynced = true
    })
    await act(async () => {
      await server.request('POST', '/_restart')
    })
    await eventually(() => resynced)
    stop()
    expect(shown('later').status).toBe('gone')
    expect(shown('later').data).toBeUndefined()
    expect((await server.stats()).subscriptions).toBe(1)
    await act(async () => {
      await server.request('PUT', path, { label: 'after the restart' })
    })
    await waitFor(() =>
      expect(shown('later')).toMatchObject({ status: 'live', data: { label: 'after the restart' } }),
    )
    await server.request('DELETE', path)
  })

  it('shows reconnecting while the socket is down, then live again with the current state', async () => {
    const statuses: string[] = []
    function Track(): ReactElement {
      const state = useListen<{ n: number }>('/items')
      if (statuses.at(-1) !== state.status) statuses.push(state.status)
      return createElement('pre', { 'data-testid': 'n' }, String(state.data?.n))
    }
    render(withClient(createElement(Track)))
    await waitFor(() => expect(statuses.at(-1)).toBe('live'))
    let n = 0
    await act(async () => {
      // A server restart closes every socket with 1012; the client comes back within initialDelayMs.
      await server.request('POST', '/_restart')
      n = ((await server.request('POST', '/items')).json as { n: number }).n
    })
    await waitFor(() => expect(statuses).toContain('reconnecting'))
    await waitFor(() => expect(statuses.at(-1)).toBe('live'))
    await waitFor(() => expect(screen.getByTestId('n').textContent).toBe(String(n)))
    expect(statuses.indexOf('reconnecting')).toBeGreaterThan(statuses.indexOf('live'))
  })

  it('renders whole states from a client that takes patches', async () => {
    const patched = createClient({ url: server.wsUrl, patches })
    try {
      render(withClient(createElement(Show, { id: 'rows', path: '/rows', options: { client: patched } })))
      await waitFor(() => expect(shown('rows').status).toBe('live'))
      const before = await server.stats()
      await act(async () => {
        await server.request('POST', '/rows/3')
      })
      await waitFor(() => expect((shown('rows').data as Array<{ title: string }>)[3]?.title).toBe('edited'))
      const rows = shown('rows').data as Array<{ id: number; title: string }>
      expect(rows).toHaveLength(40)
      expect(rows[4]).toEqual({ id: 4, title: 'row 4' })
      // It came as a patch: one computed, none declined.
      const after = await server.stats()
      expect(after.patches.computed - before.patches.computed).toBe(1)
      expect(after.patches.declined).toBe(before.patches.declined)
    } finally {
      cleanup()
      patched.close()
    }
  })

  it('uses the client given in options over the provider', async () => {
    const other = createClient({ url: server.wsUrl })
    try {
      render(withClient(createElement(Show, { id: 'own', path: '/items', options: { client: other } })))
      await waitFor(() => expect(shown('own').status).toBe('live'))
      expect(client.status()).toBe('closed')
      expect(other.status()).toBe('open')
    } finally {
      cleanup()
      other.close()
    }
  })
})

describe('useQuery made live by liveQueries', () => {
  it('updates existing useQuery code in real time, without refetching', async () => {
    const queryClient = new QueryClient()
    const stop = liveQueries(queryClient, client)
    let fetches = 0
    function Items(): ReactElement {
      const query = useQuery({
        queryKey: ['/items'],
        queryFn: async () => {
          fetches++
          return (await server.request('GET', '/items')).json as { n: number }
        },
        staleTime: Infinity,
      })
      return createElement('pre', { 'data-testid': 'query' }, JSON.stringify(query.data ?? null))
    }
    try {
      render(createElement(QueryClientProvider, { client: queryClient }, createElement(Items)))
      await waitFor(() =>
        expect(JSON.parse(screen.getByTestId('query').textContent ?? 'null')).not.toBeNull(),
      )
      const { n } = JSON.parse(screen.getByTestId('query').textContent ?? '{}') as { n: number }
      await act(async () => {
        await server.request('POST', '/items')
      })
      await waitFor(() =>
        expect(JSON.parse(screen.getByTestId('query').textContent ?? '{}')).toEqual({ n: n + 1 }),
      )
      expect(fetches).toBe(1)
    } finally {
      cleanup()
      stop()
      queryClient.clear()
    }
  })
})
