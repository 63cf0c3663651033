// npm start  →  builds listenjs, then runs this file: the calendar on http://localhost:3000
import { buildApp } from './app.mjs'

const port = Number(process.env.PORT || 3000)
const host = process.env.HOST || 'localhost'

const app = buildApp({ logger: process.env.LOG_LEVEL ? { level: process.env.LOG_LEVEL } : false })

try {
  await app.listen({ port, host })
} catch (error) {
  console.error(error)
  process.exit(1)
}
console.log(`Calendar demo on http://localhost:${app.server.address().port}`)

let closing = false
async function shutdown(signal) {
  if (closing) return
  closing = true
  // Open pages get a "going away" close and reconnect to the next server that starts.
  setTimeout(() => process.exit(1), 5000).unref()
  try {
    await app.close()
    process.exit(0)
  } catch (error) {
    console.error(`Error while closing after ${signal}:`, error)
    process.exit(1)
  }
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
