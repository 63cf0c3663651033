// In-memory appointments store shared by the Fastify, Express and Koa examples.
// Each call to createStore() returns an independent store, so tests never share state.
// redis-store.mjs has the same operations (async) with the appointments in Redis, for several processes.

export const TITLE_MAX = 200
export const TEXT_MAX = 500

const FIELDS = ['title', 'start', 'end', 'location', 'notes']

/** Monday 00:00 (server local time) of the week containing `date`. */
export function startOfWeek(date = new Date()) {
  const monday = new Date(date.getFullYear(), date.getMonth(), date.getDate())
  monday.setDate(monday.getDate() - ((monday.getDay() + 6) % 7))
  return monday
}

function at(monday, dayOffset, hours, minutes = 0) {
  const d = new Date(monday)
  d.setDate(d.getDate() + dayOffset)
  d.setHours(hours, minutes, 0, 0)
  return d.toISOString()
}

/** Three or four appointments in the current week so the demo is never empty. */
export function seedAppointments(now = new Date()) {
  const monday = startOfWeek(now)
  return [
    {
      title: 'Team stand-up',
      start: at(monday, 0, 9, 30),
      end: at(monday, 0, 9, 45),
      location: 'Room Galilei',
    },
    {
      title: 'Dentist',
      start: at(monday, 2, 14),
      end: at(monday, 2, 15),
      location: 'Via Roma 12',
      notes: 'Bring the insurance card',
    },
    {
      title: 'Lunch with Giulia',
      start: at(monday, 3, 12, 30),
      end: at(monday, 3, 13, 30),
      location: 'Trattoria da Mario',
    },
    {
      title: 'Sprint review',
      start: at(monday, 4, 16),
      end: at(monday, 4, 17),
      notes: 'Demo the live calendar',
    },
  ]
}

/** The appointment fields of `data` (no id, nothing unknown). */
export function pickFields(data) {
  const out = {}
  for (const key of FIELDS) if (data[key] !== undefined) out[key] = data[key]
  return out
}

/** The order of the list: by start, then end, then id. */
export function compareAppointments(a, b) {
  return (
    Date.parse(a.start) - Date.parse(b.start) ||
    Date.parse(a.end) - Date.parse(b.end) ||
    Number(a.id) - Number(b.id)
  )
}

export function createStore({ seed = true, now = new Date() } = {}) {
  const items = new Map()
  let nextId = 1

  const store = {
    /** All appointments, sorted by start (then end, then id). */
    list() {
      return [...items.values()].sort(compareAppointments)
    },
    get(id) {
      return items.get(String(id))
    },
    create(data) {
      const item = { id: String(nextId++), ...pickFields(data) }
      items.set(item.id, item)
      return item
    },
    /** PUT: replace every field; returns undefined when the id is unknown. */
    replace(id, data) {
      if (!items.has(String(id))) return undefined
      const item = { id: String(id), ...pickFields(data) }
      items.set(item.id, item)
      return item
    },
    /** PATCH: merge the given fields; returns undefined when the id is unknown. */
    update(id, patch) {
      const current = items.get(String(id))
      if (!current) return undefined
      const item = { ...current, ...pickFields(patch), id: current.id }
      items.set(item.id, item)
      return item
    },
    /** Returns true when something was deleted. */
    remove(id) {
      return items.delete(String(id))
    },
    clear() {
      items.clear()
    },
  }

  if (seed) for (const appointment of seedAppointments(now)) store.create(appointment)
  return store
}

/** The cross-field rule JSON schema cannot express: end must be after start. */
export function timeRangeError(appointment) {
  if (Date.parse(appointment.end) > Date.parse(appointment.start)) return null
  return { field: 'end', message: 'must be after start' }
}

// RFC 3339 date-time, with a time zone (what Date#toISOString produces).
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/

/**
 * Hand-written validator for the Express and Koa examples (Fastify uses JSON schemas instead).
 * Returns a list of { field, message }; empty when the body is valid.
 * `partial` (PATCH) accepts any subset of the fields.
 */
export function validateAppointment(body, { partial = false } = {}) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return [{ field: '', message: 'body must be a JSON object' }]
  }
  const errors = []
  for (const key of Object.keys(body)) {
    if (!FIELDS.includes(key)) errors.push({ field: key, message: 'is not an allowed property' })
  }
  const rules = {
    title: { required: true, max: TITLE_MAX, min: 1 },
    start: { required: true, dateTime: true },
    end: { required: true, dateTime: true },
    location: { max: TEXT_MAX },
    notes: { max: TEXT_MAX },
  }
  for (const [field, rule] of Object.entries(rules)) {
    const value = body[field]
    if (value === undefined) {
      if (rule.required && !partial) errors.push({ field, message: 'is required' })
      continue
    }
    if (typeof value !== 'string') errors.push({ field, message: 'must be a string' })
    else if (rule.min && value.trim().length < rule.min) errors.push({ field, message: 'must not be empty' })
    else if (rule.max && value.length > rule.max) {
      errors.push({ field, message: `must be at most ${rule.max} characters` })
    } else if (rule.dateTime && (!DATE_TIME.test(value) || Number.isNaN(Date.parse(value)))) {
      errors.push({ field, message: 'must be an ISO 8601 date-time, e.g. 2025-01-31T09:30:00.000Z' })
    }
  }
  return errors
}
