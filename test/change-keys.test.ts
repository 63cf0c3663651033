/**
 * No successful write can hide from the subscribers of what it changed (SPEC §2.3): however the
 * client spells the request-target of a write, if the router accepts it, the subscribers of the
 * resource it changed (and of its ancestors) are pushed the new state. A change is keyed by the
 * request-target (absolute-form reduced to its path), by the router's canonical path (the matched
 * template filled with the decoded params) and by the response's `Content-Location`.
 *
 * The fixture's `PUT /things/:id` reads the id as a number (`042`, `+42`, `42\t` all name 42) and
 * answers `Content-Location: /things/42`; the request-targets below are sent byte for byte.
 */
import http from 'node:http'
import { FRAMEWORKS, startFixture, type Fixture, type Framework } from './helpers/apps'
import { TestClient } from './helpers/tclient'

interface Form {
  /** What the form is. */
  readonly why: string
  /** The request-target, as sent on the request line. */
  target(app: Fixture): string
  /** Whether each framework's router accepts it (found by sending it; see the comments). */
  readonly accepted: Readonly<Record<Framework, boolean>>
}

const ALL = { fastify: true, express: true, koa: true } as const

const FORMS: readonly Form[] = [
  { why: 'origin-form', target: () => '/things/42', accepted: ALL },
  // All three route an absolute-form target by its path; Fastify ignores its authority, even a
  // foreign one (`PUT http://example.com/things/42` is routed too).
  { why: 'absolute-form', target: (app) => `${app.url}/things/42`, accepted: ALL },
  // The param is decoded to `42\t`, which the handler reads as 42.
  { why: 'an encoded tab after the id', target: () => '/things/42%09', accepted: ALL },
  // Express and Koa (path-to-regexp, case-insensitive by default) route it; Fastify (find-my-way)
  // is case-sensitive and answers 404.
  { why: 'another case', target: () => '/THINGS/42', accepted: { fastify: false, express: true, koa: true } },
  { why: 'a percent-encoded id', target: () => '/things/%34%32', accepted: ALL },
  { why: 'a leading zero', target: () => '/things/042', accepted: ALL },
  { why: 'a plus sign', target: () => '/things/+42', accepted: ALL },
]

/** Sends `PUT target` with a JSON body, the target exactly as given on the request line. */
function put(
  app: Fixture,
  target: string,
  body: unknown,
): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port: app.port,
        method: 'PUT',
        path: target,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (response) => {
        response.resume()
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers }))
      },
    )
    request.on('error', reject)
    request.end(payload)
  })
}

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  const clients: TestClient[] = []

  async function subscribed(path: string): Promise<TestClient> {
    const client = await TestClient.connect(app.wsUrl)
    clients.push(client)
    client.subscribe(path)
    return client
  }

  beforeEach(async () => {
    app = await startFixture(framework)
    app.state.things.set('42', { id: '42', title: 'before' })
  })

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await app.close()
  })

  describe.each(FORMS)('a write to $why', (form) => {
    const accepted = form.accepted[framework]

    it(
      accepted
        ? 'pushes the new state to the subscribers of /things/42 and /things'
        : 'is refused by the router, and nothing is pushed',
      async () => {
        const one = await subscribed('/things/42')
        expect(await one.next()).toMatchObject({
          type: 'data',
          path: '/things/42',
          json: { title: 'before' },
        })
        const all = await subscribed('/things')
        expect(await all.next()).toMatchObject({ type: 'data', path: '/things', json: [{ title: 'before' }] })

        const title = `after ${form.why}`
        const { status, headers } = await put(app, form.target(app), { title })

        if (accepted) {
          expect(status).toBe(200)
          expect(headers['content-location']).toBe('/things/42')
          expect(await one.nextOf('data')).toMatchObject({ path: '/things/42', json: { id: '42', title } })
          expect(await all.nextOf('data')).toMatchObject({ path: '/things', json: [{ id: '42', title }] })
        } else {
          expect(status).not.toBeLessThan(300)
          expect(app.state.things.get('42')?.title).toBe('before')
          expect(await one.quiet()).toBe(true)
          expect(await all.quiet()).toBe(true)
        }
      },
    )
  })

  if (framework === 'fastify') {
    it('refuses a subscription to /Things with not_found (Fastify routes are case-sensitive)', async () => {
      const client = await subscribed('/Things')
      expect(await client.next()).toMatchObject({
        type: 'error',
        code: 'not_found',
        status: 404,
        path: '/Things',
      })
    })
  } else {
    it('pushes a write to /things/42 to a subscription to /Things, which the router reads as /things', async () => {
      const client = await subscribed('/Things')
      expect(await client.next()).toMatchObject({
        type: 'data',
        path: '/Things',
        json: [{ title: 'before' }],
      })
      const { status } = await put(app, '/things/42', { title: 'after' })
      expect(status).toBe(200)
      expect(await client.nextOf('data')).toMatchObject({
        path: '/Things',
        json: [{ id: '42', title: 'after' }],
      })
    })
  }
})
