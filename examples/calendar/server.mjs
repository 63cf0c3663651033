// npm start  →  builds listenjs, then runs this file: the calendar on http://localhost:3000
//
// By default the appointments live in this process's memory. With REDIS_URL set (or STORE=redis) they
// live in Redis and changes travel between processes through the listenjs Redis backplane, so several
// of these servers (see cluster.mjs) show the same calendar: a change made through one appears on the
// pages of every other. STORE=memory keeps the in-memory store even when REDIS_URL is set.
// REDIS_PREFIX (default `calendar`) names the Redis keys and the backplane channel.
import { buildApp } from './app.mjs'

const port = Number(process.env.PORT || 3000)
const host = process.env.HOST || 'localhost'
const useRedis = process.env.STORE ? process.env.STORE === 'redis' : Boolean(process.env.REDIS_URL)
const logger = process.env.LOG_LEVEL ? { level: process.env.LOG_LEVEL } : false

/** A pino-style logger on the console, for the backplane's few messages (debug is left out). */
function consoleLogger() {
  const line = (obj, msg) =>
    typeof obj === 'string' ? obj : `${msg}${obj?.err ? ` (${obj.err.message ?? obj.err})` : ''}`
  return {
    debug() {},
    info: (obj, msg) => console.log(line(obj, msg)),
    warn: (obj, msg) => console.warn(line(obj, msg)),
    error: (obj, msg) => console.error(line(obj, msg)),
  }
}

let store
const liveOptions = {}
if (useRedis) {
  // Only imported when used: the in-memory default needs neither ioredis nor a Redis.
  const { createRedisStore } = await import('./redis-store.mjs')
  const { redisBackplane } = await import('listenjs/redis')
  const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
  const prefix = process.env.REDIS_PREFIX || 'calendar'
  try {
    store = await createRedisStore({ url, prefix })
  } catch (error) {
    console.error(`Cannot use Redis at ${url}:`, error.message)
    process.exit(1)
  }
  // Redis outages are logged once each; meanwhile pages keep getting this process's own changes.
  liveOptions.backplane = redisBackplane({ url, prefix, logger: consoleLogger() })
}

const app = buildApp({ store, logger, listenjs: liveOptions })

try {
  await app.listen({ port, host })
} catch (error) {
  console.error(error)
  process.exit(1)
}
const url = `http://localhost:${app.server.address().port}`
console.log(`Calendar demo on ${url}${useRedis ? ' (appointments in Redis)' : ''}`)
// Started by cluster.mjs: tell it, and stop if it goes away.
process.send?.({ listening: url })

let closing = false
async function shutdown(signal) {
  if (closing) return
  closing = true
  // Open pages get a "going away" close and reconnect to the next server that starts.
  setTimeout(() => process.exit(1), 5000).unref()
  try {
    await app.close()
    await store?.close?.()
    process.exit(0)
  } catch (error) {
    console.error(`Error while closing after ${signal}:`, error)
    process.exit(1)
  }
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
process.once('disconnect', () => shutdown('disconnect'))
