/**
 * `shareAcrossTabs` in real Chromium: the pages of one browser context share one WebSocket, a new
 * leader takes over within two seconds of the leader page closing with nothing missed and nothing
 * delivered twice, a closing follower's paths are unsubscribed, and without BroadcastChannel every
 * page has its own socket. The live server serves the page and the module (bundled by esbuild from
 * the sources), so the page is of the hub's own origin.
 */
import path from 'node:path'
import { build } from 'esbuild'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { describeWithChromium, launchChromium, newContext } from './helpers/browser'
import { eventually, startLiveServer, type LiveServer } from './helpers/live-server'
import type { Client, Meta } from '../src/client'

const TEST_TIMEOUT_MS = 60_000

/** One delivery a page's listener got. */
interface Delivery {
  n: number
  version: string
  kind: Meta['kind']
}

declare global {
  interface Window {
    /** The page's shared client. */
    client: Client
    /** Every delivery of `/items`, per listener (`main`, and `second` once added). */
    deliveries: Record<string, Delivery[]>
    /** Listens to `path` with a listener named `name`; resolves when its `ready` does. */
    listenTo(path: string, name: string): Promise<void>
  }
}

// The page: a module that creates the shared client from the query's `ws` URL and listens to /items.
const HTML = `<!doctype html><meta charset="utf-8"><script type="module">
import { shareAcrossTabs } from './tabs.js'
const client = (window.client = shareAcrossTabs({ url: new URLSearchParams(location.search).get('ws') }))
window.deliveries = {}
window.listenTo = (path, name) => {
  const got = (window.deliveries[name] = [])
  return client.listen(path, (data, meta) => got.push({ n: data.n, version: meta.version, kind: meta.kind })).ready
}
window.listenTo('/items', 'main')
</script>`

describeWithChromium('shareAcrossTabs in a real browser', () => {
  let server: LiveServer
  let browser: Browser
  const contexts: BrowserContext[] = []

  beforeAll(async () => {
    const built = await build({
      entryPoints: [path.join(__dirname, '..', 'src', 'client', 'tabs.ts')],
      bundle: true,
      format: 'esm',
      write: false,
    })
    ;[server, browser] = await Promise.all([startLiveServer(), launchChromium()])
    await server.request('POST', '/_pages', { html: HTML, js: built.outputFiles[0]!.text })
  })
  afterAll(async () => {
    await browser?.close()
    await server?.stop()
  })
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()))
    // The next test starts from a hub with no socket.
    await eventually(async () => (await server.stats()).connections === 0)
  })

  /** A browser context, with `init` run before each page's scripts. */
  async function openContext(init?: () => void): Promise<BrowserContext> {
    const context = await newContext(browser)
    contexts.push(context)
    if (init) await context.addInitScript(init)
    return context
  }

  async function openPage(context: BrowserContext): Promise<Page> {
    const page = await context.newPage()
    await page.goto(`${server.base}/tabs/?ws=${encodeURIComponent(server.wsUrl)}`)
    return page
  }

  const currentN = async (): Promise<number> =>
    ((await server.request('GET', '/items')).json as { n: number }).n

  /** Waits until the last value `page`'s main listener got is `{ n }`. */
  const reaches = (page: Page, n: number): Promise<unknown> =>
    page.waitForFunction((want) => window.deliveries.main?.at(-1)?.n === want, n, {
      timeout: 10_000,
      polling: 50,
    })

  const deliveries = (page: Page): Promise<Delivery[]> => page.evaluate(() => window.deliveries.main ?? [])

  const isLeader = (page: Page): Promise<boolean> =>
    page.evaluate(() => 'X-Listenjs-Client' in window.client.headers())

  /** Each version at most once, per page: the rule a handover must keep. */
  async function expectNoDuplicates(pages: Page[]): Promise<void> {
    for (const page of pages) {
      const versions = (await deliveries(page)).map((delivery) => delivery.version)
      expect(new Set(versions).size).toBe(versions.length)
    }
  }

  it(
    'gives three pages of one browser one WebSocket, and every page every state',
    async () => {
      const context = await openContext()
      const pages = [await openPage(context), await openPage(context), await openPage(context)]
      const n = await currentN()
      await Promise.all(pages.map((page) => reaches(page, n)))
      expect((await server.stats()).connections).toBe(1)
      expect((await server.stats()).subscriptions).toBe(1)
      expect((await Promise.all(pages.map(isLeader))).filter(Boolean)).toHaveLength(1)
      for (const page of pages) {
        expect(await page.evaluate(() => window.client.status())).toBe('open')
        expect((await deliveries(page))[0]?.kind).toBe('snapshot')
      }

      await server.request('POST', '/items')
      await Promise.all(pages.map((page) => reaches(page, n + 1)))
      for (const page of pages) expect((await deliveries(page)).at(-1)?.kind).toBe('change')

      // A second listener of a page gets the state the page holds, at once, without a new subscription.
      const follower = pages[(await Promise.all(pages.map(isLeader))).indexOf(false)]!
      await follower.evaluate(() => window.listenTo('/items', 'second'))
      expect(await follower.evaluate(() => window.deliveries.second)).toEqual([
        expect.objectContaining({ n: n + 1, kind: 'snapshot' }),
      ])
      expect((await server.stats()).connections).toBe(1)
      await expectNoDuplicates(pages)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'hands over within two seconds when the leader page closes, missing nothing and repeating nothing',
    async () => {
      const context = await openContext()
      const pages = [await openPage(context), await openPage(context), await openPage(context)]
      const n = await currentN()
      await Promise.all(pages.map((page) => reaches(page, n)))
      const leaders = await Promise.all(pages.map(isLeader))
      const leader = pages[leaders.indexOf(true)]!
      const rest = pages.filter((page) => page !== leader)

      const closedAt = Date.now()
      await leader.close()
      // A write during the handover: whether it lands before the new leader's snapshot (a `resync`)
      // or after (a `change`), each page gets it once.
      const write = server.request('POST', '/items')
      // The first remaining page whose client has a connection id of its own is the new leader.
      const waits = rest.map((page) =>
        page.waitForFunction(() => 'X-Listenjs-Client' in window.client.headers(), undefined, {
          timeout: 5000,
          polling: 20,
        }),
      )
      // The other wait ends with the test (it times out or its page closes): only the first counts.
      for (const wait of waits) wait.catch(() => {})
      await Promise.any(waits)
      const handoverMs = Date.now() - closedAt
      expect(handoverMs).toBeLessThan(2000)
      expect((await Promise.all(rest.map(isLeader))).filter(Boolean)).toHaveLength(1)
      await eventually(async () => (await server.stats()).connections === 1)

      // Every later state reaches every remaining page, each once.
      await write
      await Promise.all(rest.map((page) => reaches(page, n + 1)))
      for (const next of [n + 2, n + 3]) {
        await server.request('POST', '/items')
        await Promise.all(rest.map((page) => reaches(page, next)))
      }
      for (const page of rest) {
        const seen = (await deliveries(page)).map((delivery) => delivery.n)
        expect(seen).toEqual([n, n + 1, n + 2, n + 3])
      }
      await expectNoDuplicates(rest)
      expect((await server.stats()).connections).toBe(1)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'hands over within two seconds when the leader page is told it will freeze, and follows again on resume',
    async () => {
      const context = await openContext()
      const pages = [await openPage(context), await openPage(context), await openPage(context)]
      const n = await currentN()
      await Promise.all(pages.map((page) => reaches(page, n)))
      const leaders = await Promise.all(pages.map(isLeader))
      const leader = pages[leaders.indexOf(true)]!
      const rest = pages.filter((page) => page !== leader)
      // The event a browser sends a hidden tab before it freezes it to save power (headless Chromium's
      // lifecycle emulation does not send it, so the test sends it: it checks what the page does then).
      const frozenAt = Date.now()
      await leader.evaluate(() => document.dispatchEvent(new Event('freeze')))
      const waits = rest.map((page) =>
        page.waitForFunction(() => 'X-Listenjs-Client' in window.client.headers(), undefined, {
          timeout: 5000,
          polling: 20,
        }),
      )
      for (const wait of waits) wait.catch(() => {})
      await Promise.any(waits)
      expect(Date.now() - frozenAt).toBeLessThan(2000)
      await eventually(async () => (await server.stats()).connections === 1)
      await server.request('POST', '/items')
      await Promise.all(rest.map((page) => reaches(page, n + 1)))
      // Back: it follows the new leader, and catches up.
      await leader.evaluate(() => document.dispatchEvent(new Event('resume')))
      await reaches(leader, n + 1)
      expect(await isLeader(leader)).toBe(false)
      await server.request('POST', '/items')
      await Promise.all(pages.map((page) => reaches(page, n + 2)))
      await expectNoDuplicates(pages)
      expect((await server.stats()).connections).toBe(1)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'unsubscribes the paths of a follower page once it closes',
    async () => {
      const context = await openContext()
      const pages = [await openPage(context), await openPage(context)]
      const n = await currentN()
      await Promise.all(pages.map((page) => reaches(page, n)))
      const follower = pages[(await Promise.all(pages.map(isLeader))).indexOf(false)]!
      await follower.evaluate(() => window.listenTo('/things/a', 'thing'))
      await eventually(async () => (await server.stats()).subscriptions === 2)
      await follower.close()
      await eventually(async () => (await server.stats()).subscriptions === 1)
      expect((await server.stats()).connections).toBe(1)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'falls back to one WebSocket per page without BroadcastChannel',
    async () => {
      const context = await openContext(() => {
        delete (window as { BroadcastChannel?: unknown }).BroadcastChannel
      })
      const pages = [await openPage(context), await openPage(context)]
      const n = await currentN()
      await Promise.all(pages.map((page) => reaches(page, n)))
      expect((await server.stats()).connections).toBe(2)
      for (const page of pages) expect(await isLeader(page)).toBe(true)
      await server.request('POST', '/items')
      await Promise.all(pages.map((page) => reaches(page, n + 1)))
    },
    TEST_TIMEOUT_MS,
  )
})
