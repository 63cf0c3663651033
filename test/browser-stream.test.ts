/**
 * The calendar example in real Chromium where WebSockets cannot work: behind a proxy that refuses
 * every upgrade with 403, and on pages whose `WebSocket` was removed. The pages fall back to the HTTP
 * stream (`httpFallback`) and stay live.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import Redis from 'ioredis'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import {
  describeWithChromium,
  launchChromium,
  newContext,
  openCalendar,
  startCalendar,
  WAIT_MS,
  type CalendarControl,
} from './helpers/browser'
import { EXAMPLES, startExample } from './helpers/examples'
import { httpOnlyProxy, type HttpOnlyProxy } from './helpers/http-only-proxy'
import { freePort, REDIS_URL, redisAvailable, uniquePrefix } from './helpers/redis'
import { until } from './helpers/wait'

const TEST_TIMEOUT_MS = 90_000

declare global {
  interface Window {
    /** Set by the calendar page: whether this tab holds the shared connection. */
    listenjsHolder?: () => boolean
  }
}

/** A day the page's week view shows, as `YYYY-MM-DD`. */
const shownDay = (page: Page): Promise<string> =>
  page.evaluate(() => {
    const day =
      document.querySelector<HTMLElement>('.day.today') ?? document.querySelector<HTMLElement>('.day')
    if (!day?.dataset.date) throw new Error('the week view has no days')
    return day.dataset.date
  })

/** Creates an appointment through `base` (a plain POST) and waits until every page shows it. */
async function createdOnBoth(base: string, pages: Page[]): Promise<void> {
  const title = `Stream ${randomUUID().slice(0, 8)}`
  const day = await shownDay(pages[0]!)
  const response = await fetch(`${base}/api/appointments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title, start: `${day}T09:00:00.000Z`, end: `${day}T10:00:00.000Z` }),
  })
  expect(response.status).toBe(201)
  for (const page of pages)
    await page.locator('.appointment', { hasText: title }).waitFor({ timeout: WAIT_MS })
}

describeWithChromium('the calendar over the HTTP stream in a real browser', () => {
  let calendar: CalendarControl
  let proxy: HttpOnlyProxy
  let browser: Browser
  const contexts: BrowserContext[] = []

  beforeAll(async () => {
    calendar = await startCalendar()
    proxy = await httpOnlyProxy([Number(new URL(calendar.base).port)])
    browser = await launchChromium()
  }, TEST_TIMEOUT_MS)
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()))
  })
  afterAll(async () => {
    await browser?.close()
    await proxy?.close()
    await calendar?.close()
  }, TEST_TIMEOUT_MS)

  /** Two pages in two contexts, each with `init` run before the page's scripts. */
  async function twoPages(base: string, init?: () => void): Promise<[Page, Page]> {
    const pages: Page[] = []
    for (let i = 0; i < 2; i++) {
      const context = await newContext(browser)
      contexts.push(context)
      if (init) await context.addInitScript(init)
      pages.push(await openCalendar(context, base))
    }
    return pages as [Page, Page]
  }

  it(
    'behind a proxy that refuses upgrades: both pages fall back to the stream and stay live',
    async () => {
      const refusedBefore = proxy.refused
      const pages = await twoPages(proxy.url)
      // Two refused upgrades per page, then the stream.
      expect(proxy.refused - refusedBefore).toBeGreaterThanOrEqual(4)
      await createdOnBoth(proxy.url, pages)
      await createdOnBoth(proxy.url, pages)
      expect((await calendar.stats())?.connections).toBe(2)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'three pages of one browser share one connection; closing the holder hands over within 2 s',
    async () => {
      const context = await newContext(browser)
      contexts.push(context)
      const pages: Page[] = []
      for (let i = 0; i < 3; i++) pages.push(await openCalendar(context, calendar.base))
      await until(async () => (await calendar.stats())?.connections === 1, WAIT_MS)
      await createdOnBoth(calendar.base, pages)
      // The page that holds the connection (the one whose client has the connection's id).
      const holds = await Promise.all(
        pages.map((page) => page.evaluate(() => window.listenjsHolder?.() === true)),
      )
      const holder = holds.indexOf(true)
      expect(holder).toBeGreaterThanOrEqual(0)
      const closedAt = Date.now()
      await pages[holder]!.close()
      const rest = pages.filter((_, i) => i !== holder)
      await until(async () => {
        const flags = await Promise.all(
          rest.map((page) => page.evaluate(() => window.listenjsHolder?.() === true)),
        )
        return flags.includes(true)
      }, WAIT_MS)
      expect(Date.now() - closedAt).toBeLessThan(2000)
      await until(async () => (await calendar.stats())?.connections === 1, WAIT_MS)
      await createdOnBoth(calendar.base, rest)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'on pages without WebSocket at all: the stream from the start',
    async () => {
      const pages = await twoPages(calendar.base, () => {
        Reflect.deleteProperty(window, 'WebSocket')
      })
      for (const page of pages) expect(await page.evaluate(() => typeof window.WebSocket)).toBe('undefined')
      await createdOnBoth(calendar.base, pages)
    },
    TEST_TIMEOUT_MS,
  )
})

/** `describe` with Chromium and Redis (both required with CI=true). */
const describeWithBoth: jest.Describe = (
  redisAvailable() ? describeWithChromium : describe.skip
) as jest.Describe

describeWithBoth('the calendar over the HTTP stream, two processes behind a round-robin proxy', () => {
  it(
    'no sticky sessions: every page reaches every state, whichever process serves each request',
    async () => {
      const prefix = uniquePrefix()
      const ports = [await freePort(), await freePort()]
      const servers: ChildProcess[] = ports.map((port) =>
        fork(path.join(__dirname, '..', 'examples', 'calendar', 'server.mjs'), [], {
          env: {
            ...process.env,
            PORT: String(port),
            HOST: '127.0.0.1',
            STORE: 'redis',
            REDIS_URL,
            REDIS_PREFIX: prefix,
          },
          stdio: 'ignore',
        }),
      )
      const proxy = await httpOnlyProxy(ports)
      const browser = await launchChromium()
      try {
        for (const port of ports)
          await until(
            async () =>
              (await fetch(`http://127.0.0.1:${port}/api/appointments`).catch(() => undefined))?.ok === true,
            WAIT_MS,
          )
        const pages: Page[] = []
        for (let i = 0; i < 2; i++) pages.push(await openCalendar(await newContext(browser), proxy.url))
        const day = await shownDay(pages[0]!)
        const titles: string[] = []
        // Ten changes, each POST on the next process in turn; the pages' streams are on either.
        for (let i = 0; i < 10; i++) {
          const title = `Round robin ${i} ${randomUUID().slice(0, 6)}`
          titles.push(title)
          const response = await fetch(`${proxy.url}/api/appointments`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              title,
              start: `${day}T0${i % 9}:00:00.000Z`,
              end: `${day}T0${i % 9}:30:00.000Z`,
            }),
          })
          expect(response.status).toBe(201)
        }
        for (const page of pages)
          for (const title of titles)
            await page.locator('.appointment', { hasText: title }).waitFor({ timeout: WAIT_MS })
        expect(proxy.served[0]).toBeGreaterThan(0)
        expect(proxy.served[1]).toBeGreaterThan(0)
      } finally {
        await browser.close()
        await proxy.close()
        for (const server of servers) server.kill()
        // The test's appointments go with it.
        const redis = new Redis(REDIS_URL)
        const keys = await redis.keys(`${prefix}*`)
        if (keys.length > 0) await redis.del(...keys)
        redis.disconnect()
      }
    },
    TEST_TIMEOUT_MS,
  )
})

describeWithChromium.each(EXAMPLES)('the %s example in a real browser, WebSockets refused', (_name, file) => {
  it(
    'pages fall back to the HTTP stream and stay live; the tabs of one browser share one connection',
    async () => {
      const { child, base } = await startExample(file)
      const proxy = await httpOnlyProxy([Number(new URL(base).port)])
      const browser = await launchChromium()
      try {
        const context = await newContext(browser)
        const pages: Page[] = []
        for (let i = 0; i < 2; i++) pages.push(await openCalendar(context, proxy.url))
        pages.push(await openCalendar(await newContext(browser), proxy.url))
        // Two refused upgrades for the context's holder and two for the other context's.
        expect(proxy.refused).toBeGreaterThanOrEqual(4)
        const holders = await Promise.all(pages.map((page) => page.evaluate(() => window.listenjsHolder?.())))
        expect(holders.filter(Boolean)).toHaveLength(2)
        await createdOnBoth(proxy.url, pages)
        await createdOnBoth(proxy.url, pages)
      } finally {
        await browser.close()
        await proxy.close()
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
    },
    TEST_TIMEOUT_MS,
  )
})
