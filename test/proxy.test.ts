/**
 * Deployments behind proxies and NATs: the per-address bound counts the client, not the proxy, when
 * the proxy is trusted; a client cannot escape it by writing its own X-Forwarded-For; and the
 * defaults never refuse a real crowd arriving from one address.
 */
import { DEFAULTS, resolveOptions } from '../src/core/options'
import { clientAddress, resolveTrustProxy } from '../src/core/proxy'
import { closeAll, json, plain } from './helpers/plain'
import { TestClient } from './helpers/tclient'

afterEach(closeAll)

describe('clientAddress', () => {
  it.each([
    ['no trusted proxy: the peer', '10.0.0.1', '1.1.1.1', false, '10.0.0.1'],
    ['true: the address the peer appended', '10.0.0.1', '6.6.6.6, 1.1.1.1', true, '1.1.1.1'],
    ['two hops: second from the right', '10.0.0.1', '6.6.6.6, 1.1.1.1, 10.0.0.2', 2, '1.1.1.1'],
    ['more hops than entries: the leftmost', '10.0.0.1', '1.1.1.1', 3, '1.1.1.1'],
    ['true, no header: the peer', '10.0.0.1', undefined, true, '10.0.0.1'],
    [
      'a list: walk past trusted proxies',
      '10.0.0.1',
      '6.6.6.6, 1.1.1.1, 10.0.0.2',
      ['10.0.0.1', '10.0.0.2'],
      '1.1.1.1',
    ],
    ['a list: an untrusted peer is the client', '9.9.9.9', '1.1.1.1', ['10.0.0.1'], '9.9.9.9'],
    ['a list: IPv4-mapped peers match', '::ffff:10.0.0.1', '1.1.1.1', ['10.0.0.1'], '1.1.1.1'],
    ['header given twice: joined', '10.0.0.1', ['6.6.6.6', '1.1.1.1'], true, '1.1.1.1'],
  ] as const)('%s', (_name, peer, header, trust, expected) => {
    expect(clientAddress(peer, header, resolveTrustProxy(trust as never))).toBe(expected)
  })

  it('refuses a trustProxy that is not a boolean, a hop count or a list of addresses', () => {
    for (const bad of [-1, 1.5, 'yes', [''], [1]]) {
      expect(() => resolveOptions({ trustProxy: bad as never })).toThrow(/option "trustProxy"/)
    }
  })
})

describe('connectionsPerAddress', () => {
  it('by default lets a crowd through one proxy or NAT: at least 10,000 per address', () => {
    expect(DEFAULTS.limits.connectionsPerAddress).toBeGreaterThanOrEqual(10_000)
  })

  it('accepts 1,000 sockets from one address with the defaults', async () => {
    const server = await plain((_req, res) => json(res, 200, {}))
    const clients: TestClient[] = []
    try {
      for (let i = 0; i < 1000; i += 100) {
        clients.push(
          ...(await Promise.all(Array.from({ length: 100 }, () => TestClient.connect(server.wsUrl)))),
        )
      }
      expect(server.hub.stats().connections).toBe(1000)
    } finally {
      await Promise.all(clients.map((c) => c.close()))
    }
  }, 60_000)

  it('behind a trusted proxy, counts each forwarded client, and a forged header does not help', async () => {
    const server = await plain((_req, res) => json(res, 200, {}), {
      trustProxy: true,
      limits: { connectionsPerAddress: 2 },
    })
    // What the proxy sends: the client's header, with the address it saw appended.
    const via = (seen: string, sent?: string): Promise<TestClient> =>
      TestClient.connect(server.wsUrl, { headers: { 'x-forwarded-for': sent ? `${sent}, ${seen}` : seen } })
    const a1 = await via('203.0.113.1')
    const a2 = await via('203.0.113.1')
    await expect(via('203.0.113.1')).rejects.toThrow(/429/)
    // The same client writing another address first is still itself.
    await expect(via('203.0.113.1', '198.51.100.7')).rejects.toThrow(/429/)
    // Another client behind the same proxy is counted apart.
    const b = await via('203.0.113.2')
    expect(server.hub.stats().connections).toBe(3)
    await Promise.all([a1.close(), a2.close(), b.close()])
  })

  it('without trustProxy, counts the proxy itself, whatever X-Forwarded-For says', async () => {
    const server = await plain((_req, res) => json(res, 200, {}), { limits: { connectionsPerAddress: 2 } })
    const c1 = await TestClient.connect(server.wsUrl, { headers: { 'x-forwarded-for': '203.0.113.1' } })
    const c2 = await TestClient.connect(server.wsUrl, { headers: { 'x-forwarded-for': '203.0.113.2' } })
    await expect(
      TestClient.connect(server.wsUrl, { headers: { 'x-forwarded-for': '203.0.113.3' } }),
    ).rejects.toThrow(/429/)
    await Promise.all([c1.close(), c2.close()])
  })
})
