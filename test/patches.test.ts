/**
 * Patches (`listenjs.v1.1`): negotiated per socket, one patch per group and change, verified by the
 * client, never sent to a v1 socket; and every rule that turns a patch into a full state (tiny or
 * non-JSON bodies, changes that rewrite most of a body, other versions held, slow sockets, the byte
 * budget, keys a client must never assign). Over real sockets on every adapter, and exactly with a
 * fake socket.
 */
import WebSocket from 'ws'
import { createClient, type Client, type Meta } from '../src/client'
import { patches } from '../src/client/patches'
import { checksum } from '../src/core/checksum'
import { SUBPROTOCOL, SUBPROTOCOL_PATCHES } from '../src/core/protocol'
import { FRAMEWORKS, startFixture, type Fixture, type Item } from './helpers/apps'
import { fakeHub, settle, type FakeSocket } from './helpers/fake'
import { closeAll, plain } from './helpers/plain'
import { TestClient } from './helpers/tclient'
import { until } from './helpers/wait'

const V11 = [SUBPROTOCOL_PATCHES, SUBPROTOCOL]

/** Bytes of a frame as it was on the wire. */
const size = (frame: object): number => Buffer.byteLength(JSON.stringify(frame))

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  const raw: TestClient[] = []
  const clients: Client[] = []

  async function connect(protocols?: string[]): Promise<TestClient> {
    const client = await TestClient.connect(app.wsUrl, { protocols })
    raw.push(client)
    return client
  }

  async function edit(id: string, title: string, headers: Record<string, string> = {}): Promise<void> {
    const response = await fetch(`${app.url}/items/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ title }),
    })
    expect(response.status).toBe(200)
  }

  const current = async (): Promise<Item[]> => (await (await fetch(`${app.url}/items`)).json()) as Item[]

  beforeEach(async () => {
    app = await startFixture(framework)
    for (let i = 1; i <= 40; i++) app.state.create(`item ${i}`)
  })

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await Promise.all(raw.splice(0).map((c) => c.close()))
    await app.close()
  })

  it('one edited field goes as a one-op patch to a v1.1 socket, and whole to a v1 socket', async () => {
    const v11 = await connect(V11)
    const v1 = await connect()
    expect(v11.ws.protocol).toBe(SUBPROTOCOL_PATCHES)
    expect(v1.ws.protocol).toBe(SUBPROTOCOL)
    v11.subscribe('/items')
    v1.subscribe('/items')
    const snapshot = await v11.next()
    const full = await v1.next()
    expect(snapshot).toMatchObject({ type: 'data', snapshot: true })
    expect(full).toMatchObject({ type: 'data', snapshot: true })
    await edit('7', 'edited')
    const patch = await v11.next()
    const whole = await v1.next()
    const state = await current()
    expect(patch).toEqual({
      type: 'patch',
      path: '/items',
      version: whole.version,
      from: snapshot.version,
      sum: checksum(state),
      ops: [{ op: 'replace', path: '/6/title', value: 'edited' }],
    })
    expect(whole).toMatchObject({ type: 'data', path: '/items', json: state })
    expect(patches(snapshot.json, patch as never)).toEqual(state)
    // The point of it: the patch is a small fraction of the state it stands for.
    expect(size(patch) * 5).toBeLessThan(size(whole))
  })

  it('the client applies patches: listeners get whole states, unchanged parts keep their identity, meta says patched and own', async () => {
    const client = createClient({ url: app.wsUrl, WebSocket, patches })
    clients.push(client)
    const seen: Array<{ value: Item[]; meta: Meta }> = []
    const unlisten = client.listen<Item[]>('/items', (value, meta) => seen.push({ value, meta }))
    await unlisten.ready
    const first = seen[0]!.value
    await edit('7', 'mine', client.headers())
    await until(() => seen.length === 2)
    const [, second] = seen
    expect(second!.value).toEqual(await current())
    expect(second!.meta).toMatchObject({ kind: 'change', patched: true, own: true, snapshot: false })
    expect(second!.value[0]).toBe(first[0])
    expect(second!.value[6]).not.toBe(first[6])
    // What the listener got first is left as it was.
    expect(first[6]!.title).toBe('item 7')
    await edit('8', 'theirs')
    await until(() => seen.length === 3)
    expect(seen[2]!.meta).toMatchObject({ patched: true, own: false })
    expect(seen[2]!.value).toEqual(await current())
  })

  it('a state that drifted is never patched silently: the client subscribes again and gets it whole', async () => {
    const client = createClient({ url: app.wsUrl, WebSocket, patches })
    clients.push(client)
    const seen: Array<{ value: Item[]; meta: Meta }> = []
    const unlisten = client.listen<Item[]>('/items', (value, meta) => seen.push({ value, meta }))
    await unlisten.ready
    let subscribes = 0
    app.hub.on('subscribe', () => subscribes++)
    // The app changes the value it was given: what the client holds is no longer the server's.
    seen[0]!.value[0]!.title = 'tampered'
    await edit('7', 'edited')
    await until(() => seen.length === 2)
    expect(seen[1]!.value).toEqual(await current())
    expect(seen[1]!.value[0]!.title).toBe('item 1')
    expect(seen[1]!.meta).toMatchObject({ patched: false })
    expect(subscribes).toBe(1)
  })
})

describe('rules (fake socket)', () => {
  const list = (n: number, title = (i: number) => `item ${i}`) =>
    Array.from({ length: n }, (_, i) => ({ id: i, title: title(i), done: false }))

  async function subscribed(
    fake: ReturnType<typeof fakeHub>,
    protocol: string | null = SUBPROTOCOL_PATCHES,
    path = '/l',
  ): Promise<FakeSocket> {
    const socket = fake.connect(undefined, protocol ?? undefined)
    socket.message({ type: 'subscribe', path })
    await settle()
    return socket
  }

  it('a v1 socket (no protocol, or listenjs.v1) never gets a patch; a v1.1 socket does', async () => {
    const fake = fakeHub()
    fake.state.set('/l', list(40))
    const none = await subscribed(fake, null)
    const v1 = await subscribed(fake, SUBPROTOCOL)
    const v11 = await subscribed(fake)
    fake.state.set(
      '/l',
      list(40, (i) => (i === 3 ? 'changed' : `item ${i}`)),
    )
    fake.hub.notify('/l')
    await settle()
    expect(none.frames.at(-1)).toMatchObject({ type: 'data' })
    expect(v1.frames.at(-1)).toMatchObject({ type: 'data' })
    expect(v11.frames.at(-1)).toMatchObject({ type: 'patch', ops: [{ path: '/3/title' }] })
    expect(fake.hub.stats().patches.computed).toBe(1)
    await fake.hub.close()
  })

  it('patches: false never sends one, whatever the socket speaks', async () => {
    const fake = fakeHub({ patches: false })
    fake.state.set('/l', list(40))
    const socket = await subscribed(fake)
    fake.state.set(
      '/l',
      list(40, () => 'x'),
    )
    fake.hub.notify('/l')
    await settle()
    expect(socket.frames.at(-1)).toMatchObject({ type: 'data' })
    expect(fake.hub.stats().patches).toEqual({ stateBytes: 0, computed: 0, declined: 0 })
    await fake.hub.close()
  })

  it('tiny bodies, changes that rewrite most of a body, and keys named __proto__ go whole', async () => {
    const fake = fakeHub()
    fake.state.set('/tiny', { n: 1 })
    fake.state.set('/l', list(40))
    fake.state.set('/proto', JSON.parse(`{"__proto__":{"x":1},"pad":${JSON.stringify(list(30))}}`))
    const socket = fake.connect(undefined, SUBPROTOCOL_PATCHES)
    for (const path of ['/tiny', '/l', '/proto']) socket.message({ type: 'subscribe', path })
    await settle()
    fake.state.set('/tiny', { n: 2 })
    fake.state.set(
      '/l',
      list(40, (i) => `renamed ${i}`),
    )
    fake.state.set('/proto', JSON.parse(`{"__proto__":{"x":2},"pad":${JSON.stringify(list(30))}}`))
    for (const path of ['/tiny', '/l', '/proto']) fake.hub.notify(path)
    await settle()
    const last = (path: string) => socket.frames.filter((f) => f.path === path).at(-1)
    expect(last('/tiny')).toMatchObject({ type: 'data', json: { n: 2 } })
    expect(last('/l')).toMatchObject({ type: 'data' })
    expect(last('/proto')).toMatchObject({ type: 'data' })
    expect(({} as Record<string, unknown>).x).toBeUndefined()
    // The tiny body was never kept; the two others were computed and declined.
    expect(fake.hub.stats().patches).toMatchObject({ computed: 2, declined: 2 })
    await fake.hub.close()
  })

  it('a subscriber holding another version (after a notify payload) gets the whole state', async () => {
    const fake = fakeHub()
    fake.state.set('/l', list(40))
    const socket = await subscribed(fake)
    fake.hub.notify(
      '/l',
      list(40, () => 'payload'),
    )
    await settle()
    fake.state.set(
      '/l',
      list(40, (i) => (i === 0 ? 'one' : `item ${i}`)),
    )
    fake.hub.notify('/l')
    await settle()
    expect(socket.frames.map((f) => f.type)).toEqual(['welcome', 'data', 'data', 'data'])
    await fake.hub.close()
  })

  it('a slow socket gets whole states: a parked frame never depends on one it replaced', async () => {
    const fake = fakeHub()
    fake.state.set('/l', list(40))
    const socket = await subscribed(fake)
    socket.buffered = 524_289 // past the soft limit (not the hard one): frames are parked
    for (const title of ['a', 'b']) {
      fake.state.set(
        '/l',
        list(40, (i) => (i === 5 ? title : `item ${i}`)),
      )
      fake.hub.notify('/l')
      await settle()
    }
    expect(socket.frames.map((f) => f.type)).toEqual(['welcome', 'data'])
    socket.buffered = 0
    socket.events.onDrain()
    expect(socket.frames.at(-1)).toMatchObject({
      type: 'data',
      json: list(40, (i) => (i === 5 ? 'b' : `item ${i}`)),
    })
    await fake.hub.close()
  })

  it('the byte budget bounds what is kept; past it states go whole, and leaving frees it', async () => {
    const body = JSON.stringify(list(40)).length
    const fake = fakeHub({ patches: { memoryBytes: body * 2 } })
    const sockets: FakeSocket[] = []
    for (const path of ['/a', '/b', '/c']) {
      fake.state.set(path, list(40))
      sockets.push(await subscribed(fake, SUBPROTOCOL_PATCHES, path))
    }
    expect(fake.hub.stats().patches.stateBytes).toBe(body * 2)
    for (const path of ['/a', '/b', '/c']) {
      fake.state.set(
        path,
        list(40, (i) => (i === 1 ? 'x' : `item ${i}`)),
      )
      fake.hub.notify(path)
    }
    await settle()
    const types = sockets.map((s) => s.frames.at(-1)?.type)
    expect(types.filter((t) => t === 'patch')).toHaveLength(2)
    expect(types.filter((t) => t === 'data')).toHaveLength(1)
    expect(fake.hub.stats().patches.stateBytes).toBeLessThanOrEqual(body * 2)
    for (const [i, path] of ['/a', '/b', '/c'].entries()) sockets[i]!.message({ type: 'unsubscribe', path })
    await settle()
    expect(fake.hub.stats().patches.stateBytes).toBe(0)
    await fake.hub.close()
  })

  it('text bodies are never kept', async () => {
    let text = 'x'.repeat(2000)
    const app = await plain((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(text)
    })
    const client = await TestClient.connect(app.wsUrl, { protocols: V11 })
    client.subscribe('/t')
    expect(await client.next()).toMatchObject({ type: 'data', text })
    text = text.slice(1) + 'y'
    app.hub.notify('/t')
    expect(await client.next()).toMatchObject({ type: 'data', text })
    expect(app.hub.stats().patches).toEqual({ stateBytes: 0, computed: 0, declined: 0 })
    await client.close()
    await closeAll()
  })
})
