/**
 * Real Chromium for the end-to-end tests, and the calendar example under a test's control (the app of
 * test/fixtures/calendar-control.mjs in a forked child: tests are CommonJS and cannot import the
 * example's ES modules). Without Chromium, tests skip with a loud message; with CI=true they fail
 * instead. `npm run screenshot` takes the README's picture through the screenshot test.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

/** The Chromium executable: CHROMIUM_PATH, or Debian's. Never downloaded. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/**
 * Flags for a headless Chromium on a CI machine: no sandbox (containers run as root), no GPU, and
 * nothing that reaches for the network on its own (the machine has loopback only).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** The window size of every page, and so of the screenshots. */
export const VIEWPORT = { width: 1280, height: 800 } as const

/** How long one wait for the page may take; generous, as the machine is shared and slow. */
export const WAIT_MS = 30_000

/** Whether the Chromium executable exists and can be run (checked once per test file). */
export function chromiumAvailable(): boolean {
  let found = true
  try {
    accessSync(CHROMIUM_PATH, constants.X_OK)
  } catch {
    found = false
  }
  if (!found) {
    const message = `no Chromium executable at ${CHROMIUM_PATH}`
    if (process.env.CI === 'true')
      throw new Error(`${message}; with CI=true browser tests must run, not skip`)
    process.stderr.write(
      `\n!!! SKIPPING BROWSER TESTS: ${message}. Install Debian's chromium or set CHROMIUM_PATH. !!!\n\n`,
    )
  }
  return found
}

/** `describe` when Chromium is installed, a loud skip otherwise (a failure with CI=true). */
export const describeWithChromium: jest.Describe = (
  chromiumAvailable() ? describe : describe.skip
) as jest.Describe

/** Launches the local headless Chromium. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...CHROMIUM_ARGS] })
}

/** A fresh browser context (its own cookies and storage: a separate visitor) at {@link VIEWPORT}. */
export async function newContext(
  browser: Browser,
  { trustTestCertificate = false } = {},
): Promise<BrowserContext> {
  // The https test server's certificate is self-signed: only that test's context accepts it.
  const context = await browser.newContext({
    viewport: { ...VIEWPORT },
    ignoreHTTPSErrors: trustTestCertificate,
  })
  context.setDefaultTimeout(WAIT_MS)
  return context
}

/**
 * Opens the calendar at `base` in a new page of `context` and waits until it is live: the status
 * badge says `open` and the pushed appointments are rendered.
 */
export async function openCalendar(context: BrowserContext, base: string): Promise<Page> {
  const page = await context.newPage()
  await page.goto(`${base}/`)
  await page.waitForSelector('#status[data-status="open"]')
  await page.waitForSelector('.appointment')
  return page
}

/** The eight bytes every PNG file starts with. */
export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

/** Whether `data` starts with the PNG signature. */
export const isPng = (data: Buffer): boolean => data.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)

/**
 * Saves a full-page PNG of `page` to `file` (directories created) and returns its bytes. Animations
 * are stopped first so the picture does not catch the highlight of a just-pushed change halfway.
 */
export async function saveScreenshot(page: Page, file: string): Promise<Buffer> {
  const png = await page.screenshot({ fullPage: true, type: 'png', animations: 'disabled' })
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(file, png)
  return png
}

/** An appointment as the calendar's store keeps it. */
export interface Appointment {
  id: string
  title: string
  start: string
  end: string
  location?: string
  notes?: string
}

/** The hub counters the tests read. */
export interface CalendarStats {
  /** Open WebSockets. */
  connections: number
  subscriptions: number
}

/** The calendar example in a child process, on one loopback port for its whole life. */
export interface CalendarControl {
  /** The port, chosen at the first start and kept across restarts. */
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly base: string
  /** Starts the server again on the same port with the same store (does nothing while running). */
  start(): Promise<void>
  /** Stops the server: its sockets close and the port refuses connections until {@link start}. */
  stop(): Promise<void>
  /** Adds an appointment to the store directly, without HTTP: no page is told. */
  create(data: Omit<Appointment, 'id'>): Promise<Appointment>
  /** The store's appointments. */
  list(): Promise<Appointment[]>
  /** The hub's counters; undefined while the server is stopped. */
  stats(): Promise<CalendarStats | undefined>
  /** Ends the child process (server and store). */
  close(): Promise<void>
}

interface Reply {
  id?: number
  ok?: boolean
  result?: unknown
  error?: string
  ready?: boolean
}

/**
 * Forks test/fixtures/calendar-control.mjs and starts the calendar on a free port; with `https`, over
 * TLS with the test certificate (pages then need a context that trusts it, see {@link newContext}).
 */
export async function startCalendar({ https = false } = {}): Promise<CalendarControl> {
  const args = https ? ['--https'] : []
  const child: ChildProcess = fork(path.join(__dirname, '..', 'fixtures', 'calendar-control.mjs'), args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>()
  let nextId = 1
  let exited = false
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (message: Reply) => {
      if (message.ready) return resolve()
      const waiter = message.id === undefined ? undefined : pending.get(message.id)
      if (!waiter || message.id === undefined) return
      pending.delete(message.id)
      if (message.ok) waiter.resolve(message.result)
      else waiter.reject(new Error(`calendar fixture: ${message.error}`))
    })
    child.once('exit', (code) => {
      exited = true
      const error = new Error(`calendar fixture exited with ${code}`)
      reject(error)
      for (const waiter of pending.values()) waiter.reject(error)
      pending.clear()
    })
  })
  const command = <T>(cmd: string, args?: unknown): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (exited) return reject(new Error('calendar fixture has exited'))
      const id = nextId++
      pending.set(id, { resolve: (value) => resolve(value as T), reject })
      child.send({ id, cmd, args })
    })

  try {
    await ready
    const { port } = await command<{ port: number }>('start')
    return {
      port,
      base: `${https ? 'https' : 'http'}://127.0.0.1:${port}`,
      start: async () => void (await command('start')),
      stop: async () => void (await command('stop')),
      create: (data) => command<Appointment>('create', data),
      list: () => command<Appointment[]>('list'),
      stats: () => command<CalendarStats | undefined>('stats'),
      close: () => endChild(child),
    }
  } catch (error) {
    await endChild(child)
    throw error
  }
}

/** Disconnects the child (it exits on that) and waits for it; kills it if it does not go. */
async function endChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise((resolve) => child.once('exit', resolve))
  if (child.connected) child.disconnect()
  else child.kill()
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await gone
  clearTimeout(timer)
}
