// Takes the README's picture of the calendar example: node scripts/screenshot.mjs [output.png]
// (default docs/calendar.png). Needs the built package (`npm run build`) and a local Chromium
// (Debian's /usr/bin/chromium, or CHROMIUM_PATH); no browser is ever downloaded. It starts the calendar
// the way test/browser.test.ts does (test/fixtures/calendar-control.mjs in a child process, on a free
// loopback port), waits until the page is live with its appointments, and saves a 1280×800 full-page PNG.
// The launch and screenshot options are those of test/helpers/browser.ts, which Node cannot import (.ts).
import { fork } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const output = path.resolve(process.argv[2] ?? path.join(root, 'docs', 'calendar.png'))
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const viewport = { width: 1280, height: 800 }
const WAIT_MS = 30_000

try {
  accessSync(executablePath, constants.X_OK)
} catch {
  console.error(
    `No Chromium executable at ${executablePath}: install Debian's chromium or set CHROMIUM_PATH.`,
  )
  process.exit(1)
}

/** The calendar in a child process, driven over IPC ({ id, cmd, args } → { id, ok, result | error }). */
async function startCalendar() {
  const child = fork(path.join(root, 'test', 'fixtures', 'calendar-control.mjs'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const pending = new Map()
  let nextId = 1
  const ready = new Promise((resolve, reject) => {
    child.on('message', (message) => {
      if (message.ready) return resolve()
      const waiter = pending.get(message.id)
      if (!waiter) return
      pending.delete(message.id)
      if (message.ok) waiter.resolve(message.result)
      else waiter.reject(new Error(`calendar fixture: ${message.error}`))
    })
    child.once('exit', (code) => {
      const error = new Error(`calendar fixture exited with ${code}`)
      reject(error)
      for (const waiter of pending.values()) waiter.reject(error)
      pending.clear()
    })
  })
  const command = (cmd, commandArgs) =>
    new Promise((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      child.send({ id, cmd, args: commandArgs })
    })
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const gone = new Promise((resolve) => child.once('exit', resolve))
    if (child.connected) child.disconnect()
    else child.kill()
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await gone
    clearTimeout(timer)
  }
  try {
    await ready
    const { port } = await command('start')
    return { base: `http://127.0.0.1:${port}`, stop: () => command('stop'), close }
  } catch (error) {
    await close()
    throw error
  }
}

// Whatever goes wrong, the script ends instead of hanging on a page that never becomes live.
const watchdog = setTimeout(() => {
  console.error('Timed out taking the screenshot.')
  process.exit(1)
}, 120_000)
watchdog.unref()

let calendar
let browser
try {
  calendar = await startCalendar()
  browser = await chromium.launch({ executablePath, headless: true, args })
  const context = await browser.newContext({ viewport })
  context.setDefaultTimeout(WAIT_MS)
  const page = await context.newPage()
  await page.goto(`${calendar.base}/`)
  await page.waitForSelector('#status[data-status="open"]')
  await page.waitForSelector('.appointment')
  // Animations stopped: the picture must not catch the highlight of a pushed change halfway.
  const png = await page.screenshot({ fullPage: true, type: 'png', animations: 'disabled' })
  await mkdir(path.dirname(output), { recursive: true })
  await writeFile(output, png)
  console.log(`Saved ${path.relative(process.cwd(), output) || output} (${png.length} bytes)`)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await browser?.close()
  await calendar?.stop().catch(() => undefined)
  await calendar?.close()
}
