import { startFixture, FRAMEWORKS } from './helpers/apps'
import { TestClient } from './helpers/tclient'

describe.each(FRAMEWORKS)('%s smoke', (framework) => {
  it('snapshot then push', async () => {
    const app = await startFixture(framework)
    try {
      const c = await TestClient.connect(app.wsUrl)
      c.subscribe('/items')
      const snap = await c.next()
      expect(snap).toMatchObject({ type: 'data', path: '/items', json: [], snapshot: true })
      const r = await fetch(`${app.url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'a' }),
      })
      expect(r.status).toBe(201)
      const push = await c.next()
      expect(push).toMatchObject({ type: 'data', path: '/items', json: [{ id: '1', title: 'a' }] })
      await c.close()
    } finally {
      await app.close()
    }
  })
})
