// npm run start:cluster  →  builds listenjs, then runs this file: two calendar servers, two processes,
// one Redis. The appointments live in Redis and listenjs carries every change between the processes,
// so a change made on http://localhost:3001 appears at once on http://localhost:3002, and back.
//
// Environment: PORTS (default `3001,3002`; list more ports for more processes), REDIS_URL (default
// redis://127.0.0.1:6379); REDIS_PREFIX, HOST and LOG_LEVEL are passed on to each server (server.mjs).
// Ctrl-C (or SIGTERM) stops every server gracefully; if one server stops, the others are stopped too.
import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const serverScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'server.mjs')
const ports = (process.env.PORTS || '3001,3002')
  .split(',')
  .map((port) => port.trim())
  .filter(Boolean)
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379'

console.log(
  `Starting ${ports.length} calendar server${ports.length === 1 ? '' : 's'} sharing the Redis at ${redisUrl}…`,
)

let stopping = false
const children = ports.map((port) => {
  const child = fork(serverScript, [], {
    env: { ...process.env, PORT: port, REDIS_URL: redisUrl, STORE: 'redis' },
    stdio: 'inherit',
  })
  child.once('exit', (code, signal) => {
    if (stopping) return
    console.error(
      `The server for port ${port} stopped (${signal ?? `exit code ${code}`}); stopping the others.`,
    )
    stop(1)
  })
  return child
})

process.once('SIGINT', () => stop(0))
process.once('SIGTERM', () => stop(0))

// Each server sends { listening: url } once it listens (and prints its own line).
const urls = await Promise.all(
  children.map(
    (child) => new Promise((resolve) => child.on('message', (m) => m?.listening && resolve(m.listening))),
  ),
)
console.log(`\nThe calendar runs as ${urls.length} processes:`)
for (const url of urls) console.log(`  ${url}`)
console.log(
  `Open ${urls.slice(0, 2).join(' and ')} side by side; a change in one appears in the other.\n` +
    'Ctrl-C stops them all.',
)

async function stop(code = 0) {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(1), 6000).unref()
  await Promise.all(
    children.map((child) => {
      if (child.exitCode !== null || child.signalCode !== null) return undefined
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      return exited
    }),
  )
  process.exit(code)
}
