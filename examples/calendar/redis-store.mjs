// Appointments in Redis, for running the calendar as several processes (cluster.mjs): every process
// reads and writes the same data. Same operations as the in-memory store (store.mjs), but async.
//
// Keys, under `prefix` (default `calendar`):
//   <prefix>:appointments          hash: id → JSON of the appointment's fields (the id is the hash field)
//   <prefix>:appointments:next-id  counter for new ids (INCR)
//   <prefix>:seeded                set (SET NX) by the one process that seeds the demo appointments
// Writes that read first (replace, update, seeding) run as small Lua scripts, so that two processes
// writing at the same moment never lose an update or bring back a deleted appointment.
import Redis from 'ioredis'
import { compareAppointments, pickFields, seedAppointments } from './store.mjs'

// KEYS: seeded flag, id counter, hash. ARGV: the fields (JSON) of each demo appointment.
// Only the process whose SET NX succeeds seeds, all at once: nobody ever sees half the demo data.
const SEED = `
if not redis.call('SET', KEYS[1], '1', 'NX') then return 0 end
for _, fields in ipairs(ARGV) do
  redis.call('HSET', KEYS[3], tostring(redis.call('INCR', KEYS[2])), fields)
end
return #ARGV`

// KEYS: hash. ARGV: id, fields (JSON). Replaces the appointment only if it still exists.
const REPLACE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`

// KEYS: hash. ARGV: id, patch (JSON). Merges the patch into the stored fields; returns them, or nil.
const UPDATE = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local fields = cjson.decode(current)
for key, value in pairs(cjson.decode(ARGV[2])) do fields[key] = value end
local merged = cjson.encode(fields)
redis.call('HSET', KEYS[1], ARGV[1], merged)
return merged`

/**
 * `await createRedisStore({ url?, redis?, prefix?, seed?, now? })`: a store on Redis, seeded with the
 * demo appointments the first time any process opens it (unless `seed: false`). Pass your own ioredis
 * client as `redis` (then `close()` leaves it open), or a `url` (default REDIS_URL, or the local Redis).
 */
export async function createRedisStore({
  url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  redis: client,
  prefix = 'calendar',
  seed = true,
  now = new Date(),
} = {}) {
  const redis = client ?? new Redis(url, { maxRetriesPerRequest: 1 })
  // While Redis is unreachable, store calls reject (the request gets a 500) and ioredis reconnects;
  // the listenjs backplane logs the outage. Without this listener ioredis would print every attempt.
  if (!client) redis.on('error', () => {})
  const hash = `${prefix}:appointments`
  const nextId = `${prefix}:appointments:next-id`
  const seeded = `${prefix}:seeded`
  // pickFields puts the fields in one order, whatever order the Lua JSON encoder wrote them in.
  const item = (id, json) => (json == null ? undefined : { id: String(id), ...pickFields(JSON.parse(json)) })

  const store = {
    /** All appointments, sorted by start (then end, then id). */
    async list() {
      const all = await redis.hgetall(hash)
      return Object.entries(all)
        .map(([id, json]) => item(id, json))
        .sort(compareAppointments)
    },
    async get(id) {
      return item(id, await redis.hget(hash, String(id)))
    },
    async create(data) {
      const id = String(await redis.incr(nextId))
      const fields = pickFields(data)
      await redis.hset(hash, id, JSON.stringify(fields))
      return { id, ...fields }
    },
    /** PUT: replace every field; resolves with undefined when the id is unknown. */
    async replace(id, data) {
      const fields = pickFields(data)
      const done = await redis.eval(REPLACE, 1, hash, String(id), JSON.stringify(fields))
      return done === 1 ? { id: String(id), ...fields } : undefined
    },
    /** PATCH: merge the given fields; resolves with undefined when the id is unknown. */
    async update(id, patch) {
      return item(id, await redis.eval(UPDATE, 1, hash, String(id), JSON.stringify(pickFields(patch))))
    },
    /** Resolves with true when something was deleted. */
    async remove(id) {
      return (await redis.hdel(hash, String(id))) === 1
    },
    /** Deletes every appointment (the store stays seeded: it is not filled again). */
    async clear() {
      await redis.del(hash)
    },
    /** Closes the Redis connection, unless it was passed in as `redis`. */
    async close() {
      if (!client) await redis.quit()
    },
  }

  if (seed) {
    const demo = seedAppointments(now).map((appointment) => JSON.stringify(pickFields(appointment)))
    await redis.eval(SEED, 3, seeded, nextId, hash, ...demo)
  }
  return store
}
