/**
 * `listenjs/testing` as a user's test suite uses it: on each framework, with supertest and `fetch`
 * for the writes, a Fastify instance that is not listening yet (writes through `inject`), and the
 * readable failures.
 */
import http from 'node:http'
import express from 'express'
import Fastify from 'fastify'
import request from 'supertest'
import { listenjs as expressListenjs } from '../src/adapters/express'
import fastifyListenjs from '../src/adapters/fastify'
import { connect, type LiveTest } from '../src/testing'
import { FRAMEWORKS, startFixture, type Fixture, type Item } from './helpers/apps'

describe.each(FRAMEWORKS)('%s adapter', (framework) => {
  let app: Fixture
  let live: LiveTest
  beforeEach(async () => {
    app = await startFixture(framework)
    app.state.create('first')
    live = await connect(app.url)
  })
  afterEach(async () => {
    await live.close()
    await app.close()
  })

  it('listen resolves with the snapshot; expectPush with the first later state that passes the check', async () => {
    expect(await live.listen<Item[]>('/items')).toEqual([{ id: '1', title: 'first' }])
    const pushed = live.expectPush<Item[]>('/items', (items) => items.length === 3)
    await request(app.url).post('/items').send({ title: 'second' }).expect(201)
    await request(app.url).post('/items').send({ title: 'third' }).expect(201)
    expect((await pushed).map((item) => item.title)).toEqual(['first', 'second', 'third'])
    expect(live.states('/items').map((state) => state.meta.kind)).toEqual(['snapshot', 'change', 'change'])
  })

  it('expectNoPush passes for a write that changes nothing listened, and fails for one that does', async () => {
    await live.listen('/items')
    const quiet = live.expectNoPush('/items', { forMs: 300 })
    await request(app.url).post('/items/quiet').expect(200)
    await quiet
    const loud = live.expectNoPush('/items', { forMs: 2000 })
    await request(app.url).post('/items').send({ title: 'loud' }).expect(201)
    await expect(loud).rejects.toThrow(/\/items was pushed within 2000 ms: .*loud/)
  })

  it('a check that never passes fails with the states pushed meanwhile', async () => {
    await live.listen('/items')
    const never = live.expectPush<Item[]>('/items', (items) => items.length === 99, { timeoutMs: 1000 })
    await fetch(`${app.url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'seen' }),
    })
    await expect(never).rejects.toThrow(/states pushed meanwhile:\n {2}\[.*"seen"/)
  })

  it('expectGone resolves with the status of a deletion; expectNoPush fails on a gone too', async () => {
    expect(await live.listen<Item>('/items/1')).toEqual({ id: '1', title: 'first' })
    const noPush = live.expectNoPush('/items/1', { forMs: 2000 })
    const gone = live.expectGone('/items/1', { timeoutMs: 5000 })
    await request(app.url).delete('/items/1').expect(204)
    expect(await gone).toBe(404)
    await expect(noPush).rejects.toThrow('/items/1 was pushed within 2000 ms: gone (404)')
    // It stays subscribed: the resource coming back is a push.
    const back = live.expectPush<Item>('/items/1', { timeoutMs: 5000 })
    await request(app.url).put('/items/1').send({ title: 'again' }).expect(200)
    expect(await back).toEqual({ id: '1', title: 'again' })
    await expect(live.expectGone('/items/1', { timeoutMs: 300 })).rejects.toThrow(
      '/items/1 was not gone within 300 ms',
    )
  })

  it('a refused path rejects listen with its code', async () => {
    await expect(live.listen('/private')).rejects.toMatchObject({ code: 'unauthorized' })
    const alice = await connect(app.wsUrl, { token: 'alice-token' })
    try {
      expect(await alice.listen('/private')).toBeDefined()
    } finally {
      await alice.close()
    }
  })
})

describe('targets', () => {
  it('a Fastify instance that does not listen yet, written to with inject', async () => {
    const app = Fastify()
    await app.register(fastifyListenjs)
    let n = 0
    app.get('/n', async () => ({ n }))
    app.post('/n', async () => ({ n: ++n }))
    const live = await connect(app)
    try {
      expect(await live.listen('/n')).toEqual({ n: 0 })
      const pushed = live.expectPush('/n')
      expect((await app.inject({ method: 'POST', url: '/n' })).statusCode).toBe(200)
      expect(await pushed).toEqual({ n: 1 })
    } finally {
      await live.close()
      await app.close()
    }
  })

  it('a listening http.Server (Express), written to with supertest', async () => {
    const app = express()
    const live = expressListenjs()
    app.use(live)
    let n = 0
    app.get('/n', (_req, res) => res.json({ n }))
    app.post('/n', (_req, res) => res.json({ n: ++n }))
    const server = live.attach(http.createServer(app))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const test = await connect(server)
    try {
      expect(await test.listen('/n')).toEqual({ n: 0 })
      const pushed = test.expectPush('/n', (state: { n: number }) => state.n === 1)
      await request(server).post('/n').expect(200)
      expect(await pushed).toEqual({ n: 1 })
    } finally {
      await test.close()
      await live.hub.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
