/**
 * Behind a path prefix: a proxy serves the app under `/app` and strips it. Pages listen on the URLs
 * they fetch (`/app/items`), and the hub replays and keys them as the app sees them (`/items`):
 * with `trustProxy` through the proxy's `X-Forwarded-Prefix`, or with the `basePath` option.
 */
import { FRAMEWORKS, startFixture, type Fixture } from './helpers/apps'
import { prefixProxy, type PrefixProxy } from './helpers/prefix-proxy'
import { TestClient } from './helpers/tclient'

describe.each(FRAMEWORKS)('%s behind a prefix-stripping proxy', (framework) => {
  let app: Fixture
  let proxy: PrefixProxy
  const clients: TestClient[] = []

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await proxy.close()
    await app.close()
  })

  async function connect(): Promise<TestClient> {
    const client = await TestClient.connect(`ws://127.0.0.1:${proxy.port}/app/listen`)
    clients.push(client)
    return client
  }

  const post = (title: string): Promise<Response> =>
    fetch(`${proxy.url}/app/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title }),
    })

  it.each([
    ['X-Forwarded-Prefix from a trusted proxy', { trustProxy: true }, true],
    ['the basePath option', { basePath: '/app' }, false],
  ] as const)('listens on the URLs the page fetches, through %s', async (_how, hub, forwardPrefix) => {
    app = await startFixture(framework, { hub })
    proxy = await prefixProxy(app.port, '/app', { forwardPrefix })
    const c = await connect()
    c.subscribe('/app/items')
    expect(await c.next()).toMatchObject({ type: 'data', path: '/app/items', json: [] })
    c.subscribe('/app/items?title=b')
    expect(await c.next()).toMatchObject({ type: 'data', path: '/app/items?title=b', json: [] })
    expect((await post('a')).status).toBe(201)
    expect(await c.next()).toMatchObject({ type: 'data', path: '/app/items', json: [{ title: 'a' }] })
    expect((await post('b')).status).toBe(201)
    const frames = [await c.next(), await c.next()]
    expect(frames).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          path: '/app/items',
          json: [
            { id: '1', title: 'a' },
            { id: '2', title: 'b' },
          ],
        }),
        expect.objectContaining({ path: '/app/items?title=b', json: [{ id: '2', title: 'b' }] }),
      ]),
    )
    // An explicit payload for the app's path reaches the page's path too.
    app.hub.notify('/items', { note: 'payload' })
    expect(await c.next()).toMatchObject({ type: 'data', path: '/app/items', json: { note: 'payload' } })
  })

  it('still serves app paths as they are, and ignores the header from an untrusted peer', async () => {
    app = await startFixture(framework)
    proxy = await prefixProxy(app.port, '/app')
    const c = await connect()
    // No trustProxy: X-Forwarded-Prefix is not believed, so /app/items is the app's /app/items.
    c.subscribe('/app/items')
    expect(await c.next()).toMatchObject({ type: 'error', code: 'not_found', path: '/app/items' })
    c.subscribe('/items')
    expect(await c.next()).toMatchObject({ type: 'data', path: '/items' })
  })
})
