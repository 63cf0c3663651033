/**
 * The calendar example in a real browser (headless Chromium): two visitors see each other's changes
 * without reloading, a page catches up after the server restarts, the network coming back or the page
 * becoming visible reconnects at once, an https page connects over wss://, one page opens one WebSocket
 * however many paths it listens to, a page of another origin cannot connect, and a screenshot.
 * The calendar runs in a child process (test/fixtures/calendar-control.mjs) so a test can stop it and
 * change its store while it is down.
 */
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import type { Browser, BrowserContext, Page, WebSocket as PageSocket } from 'playwright-core'
import { prefixProxy } from './helpers/prefix-proxy'
import {
  describeWithChromium,
  isPng,
  launchChromium,
  newContext,
  openCalendar,
  saveScreenshot,
  startCalendar,
  VIEWPORT,
  type CalendarControl,
} from './helpers/browser'

// Each test waits on a shared, slow machine: bounded, but generously.
const TEST_TIMEOUT_MS = 60_000

declare global {
  interface Window {
    /** Set by a test on a page; still there later only if the page never navigated or reloaded. */
    browserTestMarker?: string
    /** Every value the status badge took, recorded by a MutationObserver the test installs. */
    browserTestStatuses?: string[]
    /** What the foreign page's WebSocket reported. */
    socketEvents?: { type: string; code?: number }[]
  }
}

/** `Appointment <unique>`: a title no other test or seed uses, so a text match finds only this one. */
const uniqueTitle = (label: string): string => `${label} ${randomUUID().slice(0, 8)}`

/**
 * The date (YYYY-MM-DD, the page's local time) of a day in the week the page shows: today's column,
 * or the week's Monday if today is not shown. Read from the page so that its time zone decides.
 */
function dayInShownWeek(page: Page): Promise<string> {
  return page.evaluate(() => {
    const day =
      document.querySelector<HTMLElement>('.day.today') ?? document.querySelector<HTMLElement>('.day')
    if (!day?.dataset.date) throw new Error('the week view has no days')
    return day.dataset.date
  })
}

/** Waits until the page's editor dialog is closed (the app closes it once a write succeeded). */
async function editorClosed(page: Page): Promise<void> {
  await page.waitForFunction(() => !document.querySelector<HTMLDialogElement>('#editor')?.open)
}

describeWithChromium('the calendar example in a real browser', () => {
  let calendar: CalendarControl
  let browser: Browser
  let contextA: BrowserContext
  let contextB: BrowserContext
  let pageA: Page
  let pageB: Page
  // Main-frame navigations of page B after it first loaded: a live update must never need one.
  let navigationsB = 0
  // Contexts and servers a single test opened; closed after it whatever happened.
  const contextsOfTest: BrowserContext[] = []
  const serversOfTest: http.Server[] = []

  beforeAll(async () => {
    calendar = await startCalendar()
    browser = await launchChromium()
    contextA = await newContext(browser)
    contextB = await newContext(browser)
    pageA = await openCalendar(contextA, calendar.base)
    pageB = await openCalendar(contextB, calendar.base)
    pageB.on('framenavigated', (frame) => {
      if (frame === pageB.mainFrame()) navigationsB++
    })
  }, TEST_TIMEOUT_MS)

  afterEach(async () => {
    await Promise.all(contextsOfTest.splice(0).map((context) => context.close()))
    await Promise.all(
      serversOfTest.splice(0).map(
        (server) =>
          new Promise<void>((resolve) => {
            server.closeAllConnections()
            server.close(() => resolve())
          }),
      ),
    )
    // A test that failed while the server was stopped must not leave the next one without it.
    await calendar?.start()
  }, TEST_TIMEOUT_MS)

  afterAll(async () => {
    await browser?.close()
    await calendar?.close()
  }, TEST_TIMEOUT_MS)

  it(
    'shows a change made on one page on another page, without reloading it: create, rename, delete',
    async () => {
      const marker = randomUUID()
      await pageB.evaluate((value) => {
        window.browserTestMarker = value
      }, marker)
      const title = uniqueTitle('Planning')
      const renamed = uniqueTitle('Retrospective')

      // Create, through the form of page A, on a day of the week both pages show.
      await pageA.click('#new-appointment')
      await pageA.waitForSelector('#editor[open]')
      await pageA.fill('#f-title', title)
      await pageA.fill('#f-date', await dayInShownWeek(pageA))
      await pageA.fill('#f-start', '10:00')
      await pageA.fill('#f-end', '11:00')
      await pageA.click('#save')
      await editorClosed(pageA)

      const createdOnB = pageB.locator('.appointment', { hasText: title })
      await createdOnB.waitFor()
      const id = await createdOnB.getAttribute('data-id')
      expect(id).toBeTruthy()
      const stored = (await calendar.list()).find((a) => a.id === id)
      expect(stored?.title).toBe(title)
      // Page A too shows it only because the server pushed it (the page never edits its own list).
      await pageA.locator(`.appointment[data-id="${id}"]`, { hasText: title }).waitFor()

      // Rename it on page A: page B shows the new title on the same appointment, and the old one is gone.
      await pageA.click(`.appointment[data-id="${id}"]`)
      await pageA.waitForSelector('#editor[open]')
      expect(await pageA.inputValue('#f-title')).toBe(title)
      await pageA.fill('#f-title', renamed)
      await pageA.click('#save')
      await editorClosed(pageA)
      await pageB.locator(`.appointment[data-id="${id}"]`, { hasText: renamed }).waitFor()
      await pageB.locator('.appointment', { hasText: title }).waitFor({ state: 'detached' })

      // Delete it on page A: it disappears from page B.
      await pageA.click(`.appointment[data-id="${id}"]`)
      await pageA.waitForSelector('#editor[open]')
      await pageA.click('#delete')
      await editorClosed(pageA)
      await pageB.locator(`.appointment[data-id="${id}"]`).waitFor({ state: 'detached' })
      expect((await calendar.list()).some((a) => a.id === id)).toBe(false)

      // Page B got all of that while staying the same document.
      expect(await pageB.evaluate(() => window.browserTestMarker)).toBe(marker)
      expect(navigationsB).toBe(0)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'reconnects after the server restarts and shows what changed while it was away',
    async () => {
      const marker = randomUUID()
      await pageB.evaluate((value) => {
        window.browserTestMarker = value
        // Records every status, so that a short-lived one is seen even if no wait catches it.
        const badge = document.querySelector<HTMLElement>('#status')
        if (!badge) throw new Error('no status badge')
        const statuses = [badge.dataset.status ?? '']
        window.browserTestStatuses = statuses
        new MutationObserver(() => statuses.push(badge.dataset.status ?? '')).observe(badge, {
          attributes: true,
          attributeFilter: ['data-status'],
        })
      }, marker)
      const title = uniqueTitle('Made while away')

      await calendar.stop()
      await pageB.waitForSelector('#status[data-status="reconnecting"]')

      // Changed in the store directly while no server runs: nobody can be told now.
      const day = await dayInShownWeek(pageB)
      const { start, end } = await pageB.evaluate(
        (date) => ({
          start: new Date(`${date}T12:15`).toISOString(),
          end: new Date(`${date}T13:15`).toISOString(),
        }),
        day,
      )
      const created = await calendar.create({ title, start, end })
      expect(await pageB.locator('.appointment', { hasText: title }).count()).toBe(0)

      await calendar.start()
      await pageB.waitForSelector('#status[data-status="open"]')
      await pageB.locator(`.appointment[data-id="${created.id}"]`, { hasText: title }).waitFor()

      // Page A was cut off too; it must be back before the next test counts the hub's connections.
      await pageA.waitForSelector('#status[data-status="open"]')

      const statuses = await pageB.evaluate(() => window.browserTestStatuses ?? [])
      expect(statuses[0]).toBe('open')
      const down = statuses.indexOf('reconnecting')
      expect(down).toBeGreaterThan(0)
      expect(statuses.slice(down)).toContain('open')
      expect(statuses.at(-1)).toBe('open')
      expect(await pageB.evaluate(() => window.browserTestMarker)).toBe(marker)
      expect(navigationsB).toBe(0)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'reconnects at once when the network comes back or the page becomes visible, not after its backoff',
    async () => {
      const context = await newContext(browser)
      contextsOfTest.push(context)
      const page = await context.newPage()
      const sockets: PageSocket[] = []
      page.on('websocket', (socket) => sockets.push(socket))
      await page.goto(`${calendar.base}/api/appointments`)
      // A client whose backoff is an hour: only a wake-up can bring it back within the test.
      await page.evaluate(`(async () => {
        const { createClient } = await import('/listenjs/client.js')
        const client = createClient({ reconnect: { initialDelayMs: 3600000, maxDelayMs: 3600000, jitter: false } })
        window.liveClient = client
        await client.listen('/api/appointments', () => {}).ready
      })()`)
      const status = (): Promise<string> => page.evaluate('window.liveClient.status()') as Promise<string>
      const waitStatus = (wanted: string): Promise<unknown> =>
        page.waitForFunction(
          (s) => (window as unknown as { liveClient: { status(): string } }).liveClient.status() === s,
          wanted,
          {
            timeout: 15_000,
          },
        )
      expect(await status()).toBe('open')

      // The network comes back (`online`): a reconnect waiting for its backoff goes now.
      await calendar.stop()
      await waitStatus('reconnecting')
      await calendar.start()
      await page.evaluate(() => window.dispatchEvent(new Event('online')))
      await waitStatus('open')

      // The page becomes visible again: the same.
      await calendar.stop()
      await waitStatus('reconnecting')
      await calendar.start()
      await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')))
      await waitStatus('open')

      // Offline then online while open: the socket may have died with the old network; a new one
      // replaces it at once.
      const before = sockets.length
      await context.setOffline(true)
      await context.setOffline(false)
      await page.waitForFunction(() => navigator.onLine)
      for (let i = 0; i < 150 && sockets.length === before; i++) await new Promise((r) => setTimeout(r, 100))
      await waitStatus('open')
      expect(sockets.length).toBeGreaterThan(before)
      await page.evaluate('window.liveClient.close()')
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'connects over wss:// from an https page',
    async () => {
      const secure = await startCalendar({ https: true })
      try {
        const context = await newContext(browser, { trustTestCertificate: true })
        contextsOfTest.push(context)
        const page = await context.newPage()
        const sockets: PageSocket[] = []
        page.on('websocket', (socket) => sockets.push(socket))
        await page.goto(`${secure.base}/`)
        await page.waitForSelector('#status[data-status="open"]')
        await page.waitForSelector('.appointment')
        expect(secure.base.startsWith('https://')).toBe(true)
        expect(sockets).toHaveLength(1)
        expect(sockets[0]?.url()).toBe(`wss://127.0.0.1:${secure.port}/listen`)
        // Live over TLS too: a write through the API (from the page, in its time zone) comes back pushed.
        const day = await dayInShownWeek(page)
        const title = uniqueTitle('Over TLS')
        const status = await page.evaluate(
          async ({ day, title }) => {
            const at = (time: string): string => new Date(`${day}T${time}`).toISOString()
            const response = await fetch('/api/appointments', {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ title, start: at('12:15'), end: at('12:45') }),
            })
            return response.status
          },
          { day, title },
        )
        expect(status).toBe(201)
        await page.locator('.appointment', { hasText: title }).waitFor()
      } finally {
        await secure.close()
      }
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'opens exactly one WebSocket for a page listening to 20 paths',
    async () => {
      const context = await newContext(browser)
      contextsOfTest.push(context)
      const page = await context.newPage()
      const sockets: PageSocket[] = []
      page.on('websocket', (socket) => sockets.push(socket))
      // A JSON document of the calendar's origin: same origin for the client, and no socket of its own.
      await page.goto(`${calendar.base}/api/appointments`)
      expect(sockets).toHaveLength(0)

      const ids = (await calendar.list()).map((a) => a.id)
      expect(ids.length).toBeGreaterThan(0)
      const paths = ['/api/appointments', ...ids.map((id) => `/api/appointments/${encodeURIComponent(id)}`)]
      for (let k = 1; paths.length < 20; k++) paths.push(`/api/appointments?k=${k}`)
      expect(new Set(paths).size).toBe(20)

      // A string, not a function: the dynamic import must reach the browser as written, not compiled
      // to require() for Node.
      const firstValues = (await page.evaluate(`(async (paths) => {
        const { createClient } = await import('/listenjs/client.js')
        const client = createClient()
        const first = new Map()
        const listeners = paths.map((path) =>
          client.listen(path, (value) => {
            if (!first.has(path)) first.set(path, value)
          }),
        )
        await Promise.all(listeners.map((unlisten) => unlisten.ready))
        const values = paths.filter((path) => first.has(path)).map((path) => {
          const value = first.get(path)
          return Array.isArray(value) ? { path, length: value.length } : { path, id: value?.id }
        })
        client.close()
        return values
      })(${JSON.stringify(paths)})`)) as { path: string; length?: number; id?: string }[]

      expect(firstValues).toHaveLength(20)
      // Each path got its own resource: the list for the list paths, the right appointment for the others.
      for (const value of firstValues) {
        const id = /^\/api\/appointments\/(.+)$/.exec(value.path)?.[1]
        if (id) expect(value.id).toBe(decodeURIComponent(id))
        else expect(value.length).toBeGreaterThan(0)
      }
      expect(sockets).toHaveLength(1)
      expect(sockets[0]?.url()).toMatch(/\/listen$/)
      expect(new URL(sockets[0]?.url() ?? '').host).toBe(new URL(calendar.base).host)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'refuses a WebSocket from a page of another origin before it opens',
    async () => {
      const wsUrl = `ws://127.0.0.1:${calendar.port}/listen`
      const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title></head><body>
<script>
  window.socketEvents = []
  const socket = new WebSocket(${JSON.stringify(wsUrl)}, 'listenjs.v1')
  socket.onopen = () => window.socketEvents.push({ type: 'open' })
  socket.onerror = () => window.socketEvents.push({ type: 'error' })
  socket.onclose = (event) => window.socketEvents.push({ type: 'close', code: event.code })
</script>
</body></html>`
      const server = http.createServer((_request, response) => {
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        response.end(html)
      })
      serversOfTest.push(server)
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const { port } = server.address() as AddressInfo
      // `localhost`, not 127.0.0.1: another origin than the calendar's even apart from the port.
      const foreignOrigin = `http://localhost:${port}`
      expect(foreignOrigin).not.toBe(new URL(calendar.base).origin)

      // Every socket this suite keeps is open (none still reconnecting), so none appears meanwhile.
      for (const page of [pageA, pageB]) await page.waitForSelector('#status[data-status="open"]')
      const before = await calendar.stats()
      expect(before).toBeDefined()

      const context = await newContext(browser)
      contextsOfTest.push(context)
      const page = await context.newPage()
      const handshakeErrors: string[] = []
      page.on('websocket', (socket) => socket.on('socketerror', (error) => handshakeErrors.push(error)))
      await page.goto(`${foreignOrigin}/`)
      await page.waitForFunction(() => window.socketEvents?.some((event) => event.type === 'close'))

      const events = await page.evaluate(() => window.socketEvents ?? [])
      expect(events.some((event) => event.type === 'open')).toBe(false)
      expect(events.find((event) => event.type === 'close')?.code).toBe(1006)
      // The refusal is the hub's 403 at the upgrade, not some other failure to connect.
      expect(handshakeErrors.join('\n')).toMatch(/\b403\b/)
      const after = await calendar.stats()
      expect(after?.connections).toBeLessThanOrEqual(before?.connections ?? 0)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'works unchanged behind a proxy that serves it under /calendar and strips the prefix',
    async () => {
      const proxy = await prefixProxy(Number(new URL(calendar.base).port), '/calendar')
      try {
        const contexts = [await newContext(browser), await newContext(browser)]
        contextsOfTest.push(...contexts)
        const [writer, watcher] = await Promise.all(
          contexts.map((context) => openCalendar(context, `${proxy.url}/calendar`)),
        )
        const title = uniqueTitle('Behind a prefix')
        await writer!.click('#new-appointment')
        await writer!.waitForSelector('#editor[open]')
        await writer!.fill('#f-title', title)
        await writer!.fill('#f-date', await dayInShownWeek(writer!))
        await writer!.fill('#f-start', '14:00')
        await writer!.fill('#f-end', '15:00')
        await writer!.click('#save')
        await editorClosed(writer!)
        await watcher!.locator('.appointment', { hasText: title }).waitFor()
        expect((await calendar.list()).some((a) => a.title === title)).toBe(true)
      } finally {
        await proxy.close()
      }
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'saves a screenshot of the calendar',
    async () => {
      await pageB.waitForSelector('#status[data-status="open"]')
      await pageB.waitForSelector('.appointment')
      // `npm run screenshot` runs only this test with SCREENSHOT_TO=docs/calendar.png: the README's picture.
      const to = process.env.SCREENSHOT_TO
      const file = to ? path.resolve(to) : path.join(__dirname, '..', '.tmp', 'screenshots', 'calendar.png')
      await saveScreenshot(pageB, file)

      const png = await readFile(file)
      expect(isPng(png)).toBe(true)
      expect(png.length).toBeGreaterThan(10 * 1024)
      // The IHDR chunk (right after the signature and its own header) holds width and height.
      expect(png.readUInt32BE(16)).toBeGreaterThanOrEqual(VIEWPORT.width)
      expect(png.readUInt32BE(20)).toBeGreaterThanOrEqual(VIEWPORT.height)
    },
    TEST_TIMEOUT_MS,
  )
})
