/**
 * The path corpus (issue 4, PROTOCOL.md "Paths"): each variant with its expected outcome, on all three
 * adapters. A subscription path is keyed exactly as given once valid (case, trailing slash and
 * percent-encoding kept, no Unicode folding) and refused with `bad_path`, the socket kept, when it could
 * be read as another path: dot segments in any encoding, encoded `/` or `\`, `//`, backslashes, raw or
 * encoded control characters, invalid percent-encoding (overlong UTF-8 included), over-long paths.
 *
 * Outcomes:
 * - `data`: accepted, and the fixture serves it: a snapshot (with the JSON given, when given);
 * - `not_found`: accepted (NOT `bad_path`), and the fixture has no such route: `error` `not_found`;
 * - `accepted`: accepted and keyed as given; the framework's own routing decides the answer (Fastify's
 *   routes are case- and trailing-slash-sensitive, Express's and Koa's are not), so only "not
 *   `bad_path`, answered for exactly this path" is asserted;
 * - `bad_path`: refused with `error` `bad_path` for exactly this path; nothing registered; the socket
 *   stays open.
 *
 * Decoding is single: `%252e` decodes once to the three characters `%2e`, which is not a dot segment, so
 * `/%252e` is an ordinary (accepted) path; the router then sees a segment `%2e` and has no such route.
 */
import { FRAMEWORKS, startFixture, type Fixture, type Framework } from './helpers/apps'
import { TestClient, type Frame } from './helpers/tclient'

type Outcome = 'data' | 'not_found' | 'accepted' | 'bad_path'

interface Entry {
  path: string
  outcome: Outcome
  /** The rule the entry checks. */
  why: string
  /** For `data`: the snapshot's JSON. */
  json?: unknown
}

const FIRST = { id: '1', title: 'first' }
const pad = (prefix: string, length: number): string => prefix + 'q'.repeat(length - prefix.length)

const CORPUS: readonly Entry[] = [
  // Served by the fixture: a snapshot.
  { path: '/items', outcome: 'data', why: 'a plain path', json: [FIRST] },
  { path: '/items/1', outcome: 'data', why: 'a route parameter', json: FIRST },
  { path: '/items?title=first', outcome: 'data', why: 'a query', json: [FIRST] },
  { path: '/items?title=nope', outcome: 'data', why: 'a query variant is its own resource', json: [] },
  {
    path: '/items/%31',
    outcome: 'data',
    why: 'an encoded ordinary character is kept in the key',
    json: FIRST,
  },
  { path: '/items?title=%66irst', outcome: 'data', why: 'an encoded query character', json: [FIRST] },
  { path: '/items?a=1&a=2', outcome: 'data', why: 'a repeated query parameter', json: [FIRST] },
  { path: '/items?', outcome: 'data', why: 'an empty query is kept', json: [FIRST] },
  { path: '/items?x=%2F', outcome: 'data', why: 'an encoded / is allowed in a query', json: [FIRST] },
  { path: '/items?x=../..', outcome: 'data', why: 'dots are allowed in a query', json: [FIRST] },
  { path: '/items?x=a+b', outcome: 'data', why: 'a + in a query', json: [FIRST] },
  { path: '/items/1?x=%C3%A9', outcome: 'data', why: 'encoded UTF-8 in a query', json: FIRST },
  { path: '/items?__proto__=1', outcome: 'data', why: '__proto__ as a query key', json: [FIRST] },
  {
    path: '/items?constructor[prototype][polluted]=1',
    outcome: 'data',
    why: 'a prototype-pollution query',
    json: [FIRST],
  },
  {
    path: pad('/items?pad=', 2048),
    outcome: 'data',
    why: 'exactly limits.pathLength (2048) characters',
    json: [FIRST],
  },
  // Accepted and keyed as given; the framework's routing decides.
  { path: '/Items', outcome: 'accepted', why: 'case is kept (/Items is not /items)' },
  { path: '/ITEMS/1', outcome: 'accepted', why: 'case is kept in every segment' },
  { path: '/items/', outcome: 'accepted', why: 'a trailing slash is kept' },
  { path: '/items/1/', outcome: 'accepted', why: 'a trailing slash after a parameter is kept' },
  // Accepted, no such route: not_found (an ordinary path, never bad_path).
  { path: '/', outcome: 'not_found', why: 'the root' },
  { path: '/__proto__', outcome: 'not_found', why: '__proto__ is an ordinary segment' },
  { path: '/constructor', outcome: 'not_found', why: 'constructor is an ordinary segment' },
  { path: '/prototype', outcome: 'not_found', why: 'prototype is an ordinary segment' },
  {
    path: '/constructor/prototype',
    outcome: 'not_found',
    why: 'constructor/prototype are ordinary segments',
  },
  { path: '/__proto__/polluted', outcome: 'not_found', why: '__proto__ followed by a segment' },
  { path: '/items/__proto__', outcome: 'not_found', why: '__proto__ as a route parameter' },
  { path: '/items/constructor', outcome: 'not_found', why: 'constructor as a route parameter' },
  { path: '/caf%C3%A9', outcome: 'not_found', why: 'encoded NFC UTF-8' },
  { path: '/cafe%CC%81', outcome: 'not_found', why: 'encoded NFD UTF-8 (no Unicode folding)' },
  { path: '/%252e', outcome: 'not_found', why: 'single decoding: %252e is the text %2e, not a dot' },
  { path: '/items/%252e%252e', outcome: 'not_found', why: 'single decoding: %252e%252e is not ..' },
  { path: '/items%3Ftitle=first', outcome: 'not_found', why: 'an encoded ? belongs to the segment' },
  { path: '/items%201', outcome: 'not_found', why: 'an encoded space is allowed' },
  { path: '/missing/', outcome: 'not_found', why: 'a trailing slash is kept on a 404' },
  { path: pad('/', 2048), outcome: 'not_found', why: 'a 2048-character path is accepted' },
  // Refused: bad_path, the socket stays.
  { path: 'items', outcome: 'bad_path', why: 'no leading /' },
  { path: '', outcome: 'bad_path', why: 'empty' },
  { path: '?', outcome: 'bad_path', why: 'a bare ?' },
  { path: '/.', outcome: 'bad_path', why: 'a . segment' },
  { path: '/items/..', outcome: 'bad_path', why: 'a .. segment' },
  { path: '/items/./1', outcome: 'bad_path', why: 'a . segment in the middle' },
  { path: '/%2e', outcome: 'bad_path', why: '%2e is a . segment' },
  { path: '/%2E', outcome: 'bad_path', why: '%2E is a . segment' },
  { path: '/items/.%2e', outcome: 'bad_path', why: '.%2e is a .. segment' },
  { path: '/items/%2e.', outcome: 'bad_path', why: '%2e. is a .. segment' },
  { path: '/items/%2e%2e/private', outcome: 'bad_path', why: '%2e%2e is a .. segment' },
  { path: '/items/%2E%2e', outcome: 'bad_path', why: 'mixed-case %2E%2e is a .. segment' },
  { path: '/items%2F1', outcome: 'bad_path', why: 'an encoded / (%2F)' },
  { path: '/items%2f1', outcome: 'bad_path', why: 'an encoded / (%2f)' },
  { path: '/items%5C1', outcome: 'bad_path', why: 'an encoded \\ (%5C)' },
  { path: '/items%5c1', outcome: 'bad_path', why: 'an encoded \\ (%5c)' },
  { path: '/items\\1', outcome: 'bad_path', why: 'a raw backslash' },
  { path: '//', outcome: 'bad_path', why: '//' },
  { path: '//items', outcome: 'bad_path', why: 'a leading //' },
  { path: '/items//1', outcome: 'bad_path', why: 'an empty segment in the middle' },
  { path: '/items//', outcome: 'bad_path', why: 'a trailing //' },
  { path: '/items\u0000', outcome: 'bad_path', why: 'a raw NUL' },
  { path: '/items%00', outcome: 'bad_path', why: 'an encoded NUL' },
  { path: '/items%0a', outcome: 'bad_path', why: 'an encoded line feed' },
  { path: '/items%0D', outcome: 'bad_path', why: 'an encoded carriage return' },
  { path: '/items%7f', outcome: 'bad_path', why: 'an encoded DEL' },
  { path: '/items%09', outcome: 'bad_path', why: 'an encoded tab' },
  { path: '/items\t1', outcome: 'bad_path', why: 'a raw tab' },
  { path: '/items\n', outcome: 'bad_path', why: 'a raw line feed' },
  { path: '/items 1', outcome: 'bad_path', why: 'a raw space' },
  { path: '/items\u007f', outcome: 'bad_path', why: 'a raw DEL' },
  { path: '/%c0%ae', outcome: 'bad_path', why: 'overlong UTF-8 for . (%c0%ae)' },
  { path: '/items/%c0%ae%c0%ae', outcome: 'bad_path', why: 'overlong UTF-8 for ..' },
  { path: '/%e0%80%ae', outcome: 'bad_path', why: '3-byte overlong UTF-8 for . (%e0%80%ae)' },
  { path: '/items%c0%af1', outcome: 'bad_path', why: 'overlong UTF-8 for / (%c0%af)' },
  { path: '/items/%ED%A0%80', outcome: 'bad_path', why: 'an encoded UTF-16 surrogate' },
  { path: '/items%', outcome: 'bad_path', why: 'a lone %' },
  { path: '/items%2', outcome: 'bad_path', why: 'a truncated escape' },
  { path: '/items%zz', outcome: 'bad_path', why: 'a non-hex escape' },
  { path: '/items%e2%82', outcome: 'bad_path', why: 'a truncated UTF-8 sequence' },
  { path: '/items#frag', outcome: 'bad_path', why: 'a fragment' },
  { path: '/items?title=first#frag', outcome: 'bad_path', why: 'a fragment after a query' },
  { path: '/items?%00', outcome: 'bad_path', why: 'an encoded NUL in the query' },
  { path: '/items?x=%0A', outcome: 'bad_path', why: 'an encoded line feed in the query' },
  { path: '/items?x=%zz', outcome: 'bad_path', why: 'invalid percent-encoding in the query' },
  { path: '/items?x=%', outcome: 'bad_path', why: 'a lone % in the query' },
  { path: '/café', outcome: 'bad_path', why: 'a raw non-ASCII character' },
  { path: '/items\u2028', outcome: 'bad_path', why: 'a raw line separator' },
  { path: pad('/', 2049), outcome: 'bad_path', why: 'one over limits.pathLength (2049 characters)' },
  { path: pad('/items?pad=', 2049), outcome: 'bad_path', why: 'one over limits.pathLength, in the query' },
]

/** A readable title for a path (control characters escaped, long paths cut). */
function show(path: string): string {
  const escaped = JSON.stringify(path).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
  return escaped.length > 50 ? `${escaped.slice(0, 30)}…" (${path.length} chars)` : escaped
}

const ROWS = CORPUS.map((entry) => [`${show(entry.path)} → ${entry.outcome}: ${entry.why}`, entry] as const)

/** What each framework answered, by path: the outcome as the table names it. */
const observed = new Map<Framework, Map<string, Outcome>>()

test('the corpus has at least 40 distinct variants', () => {
  expect(new Set(CORPUS.map((e) => e.path)).size).toBe(CORPUS.length)
  expect(CORPUS.length).toBeGreaterThanOrEqual(40)
})

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  let client: TestClient
  const seen = new Map<string, Outcome>()
  observed.set(framework, seen)

  beforeAll(async () => {
    app = await startFixture(framework)
    app.state.create('first')
    client = await TestClient.connect(app.wsUrl)
  })

  afterAll(async () => {
    await client?.close()
    await app?.close()
  })

  /** Subscribes and returns the answer for exactly `path` (the socket must stay open). */
  async function answer(path: string): Promise<Frame> {
    client.subscribe(path)
    const frame = await client.next()
    expect(frame.path).toBe(path)
    expect(client.ws.readyState).toBe(client.ws.OPEN)
    return frame
  }

  /** Ends the subscription of `path` and waits until the hub holds nothing. */
  async function drop(path: string): Promise<void> {
    client.unsubscribe(path)
    const deadline = Date.now() + 3000
    while (app.hub.stats().subscriptions !== 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5))
    expect(app.hub.stats()).toMatchObject({ subscriptions: 0, resources: 0 })
  }

  it.each(ROWS)('%s', async (_title, entry) => {
    const frame = await answer(entry.path)
    let outcome: Outcome
    if (frame.type === 'data') outcome = 'data'
    else if (frame.type === 'error' && frame.code === 'not_found') outcome = 'not_found'
    else if (frame.type === 'error' && frame.code === 'bad_path') outcome = 'bad_path'
    else throw new Error(`unexpected answer ${JSON.stringify(frame).slice(0, 300)}`)
    if (entry.outcome === 'accepted' && outcome !== 'bad_path') outcome = 'accepted'
    seen.set(entry.path, outcome)
    expect(outcome).toBe(entry.outcome)
    if (frame.type === 'data') {
      expect(frame.snapshot).toBe(true)
      if (entry.json !== undefined) expect(frame.json).toEqual(entry.json)
      await drop(entry.path)
    } else {
      // A refused path leaves nothing registered.
      expect(app.hub.stats()).toMatchObject({ subscriptions: 0, resources: 0 })
    }
  })

  it('keeps the socket open after every refusal: it still subscribes and gets pushes', async () => {
    const frame = await answer('/items')
    expect(frame).toMatchObject({ type: 'data', snapshot: true })
    await fetch(`${app.url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'pushed' }),
    })
    const pushed = await client.nextOf('data')
    expect(pushed.path).toBe('/items')
    expect(pushed.json).toEqual([FIRST, { id: '2', title: 'pushed' }])
    await drop('/items')
  })

  it('keys /items and /Items separately, each answered for exactly the path sent', async () => {
    const lower = await answer('/items')
    const upper = await answer('/Items')
    expect(lower.type).toBe('data')
    expect(upper.path).toBe('/Items')
    expect(upper).not.toMatchObject({ code: 'bad_path' })
    // When the framework serves /Items too, it is a second resource, not the same key.
    expect(app.hub.stats().resources).toBe(upper.type === 'data' ? 2 : 1)
    client.unsubscribe('/Items')
    await drop('/items')
  })

  it('keys NFC and NFD spellings as different resources (no Unicode folding)', async () => {
    const nfc = '/items/caf%C3%A9' // é as one code point
    const nfd = '/items/cafe%CC%81' // e + combining acute accent
    for (const [path, title] of [
      [nfc, 'composed'],
      [nfd, 'decomposed'],
    ] as const) {
      const res = await fetch(`${app.url}${path}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title }),
      })
      expect(res.status).toBe(200)
    }
    const a = await answer(nfc)
    const b = await answer(nfd)
    expect(a).toMatchObject({ type: 'data', json: { id: 'caf\u00e9', title: 'composed' } })
    expect(b).toMatchObject({ type: 'data', json: { id: 'cafe\u0301', title: 'decomposed' } })
    expect(a.version).not.toBe(b.version)
    expect(app.hub.stats()).toMatchObject({ subscriptions: 2, resources: 2 })
    client.unsubscribe(nfc)
    await drop(nfd)
  })

  it('lets no path or query pollute Object.prototype', () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false)
  })
})

describe('all adapters', () => {
  it('give every corpus entry the same outcome', () => {
    const reference = observed.get(FRAMEWORKS[0])
    expect(reference?.size).toBe(CORPUS.length)
    for (const framework of FRAMEWORKS.slice(1)) {
      const seen = observed.get(framework)
      for (const { path } of CORPUS) {
        expect([framework, path, seen?.get(path)]).toEqual([framework, path, reference?.get(path)])
      }
    }
  })
})
