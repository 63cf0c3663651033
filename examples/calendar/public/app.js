// The calendar page. Plain ES module, no framework, no build step.
//
// The one rule of this demo: the page never edits its own list after a write. It sends the write
// to the REST API and renders only what listenjs pushes — the same push every other open tab gets.
// Every URL is relative to the page, so the demo also works under a path prefix (a proxy serving it
// at /calendar/ and stripping that): the script, the writes and the WebSocket endpoint follow the
// page, while the subscribed path is the app's own.
import { httpFallback } from './listenjs/client-http.js'
import { patches } from './listenjs/client-patches.js'
import { shareAcrossTabs } from './listenjs/client-tabs.js'

/** What listenjs subscribes to: the app's path for the list. */
const API = '/api/appointments'
/** What the page fetches: the same resource, relative to the page. */
const API_URL = 'api/appointments'
const LOCALE = 'en-GB'
const STATUS_LABELS = {
  open: 'Live',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  closed: 'Offline',
}

const $ = (selector) => document.querySelector(selector)
const statusBadge = $('#status')
const banner = $('#banner')
const weekGrid = $('#week')
const weekLabel = $('#week-label')
const lastUpdate = $('#last-update')
const editor = $('#editor')
const form = $('#appointment-form')
const editorTitle = $('#editor-title')
const formError = $('#form-error')
const saveButton = $('#save')
const deleteButton = $('#delete')

const timeFormat = new Intl.DateTimeFormat(LOCALE, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
const clockFormat = new Intl.DateTimeFormat(LOCALE, { timeStyle: 'medium', hourCycle: 'h23' })
const weekdayFormat = new Intl.DateTimeFormat(LOCALE, { weekday: 'short' })
const dayMonthFormat = new Intl.DateTimeFormat(LOCALE, { day: 'numeric', month: 'long' })
const fullDateFormat = new Intl.DateTimeFormat(LOCALE, { day: 'numeric', month: 'long', year: 'numeric' })
const longDayFormat = new Intl.DateTimeFormat(LOCALE, { weekday: 'long', day: 'numeric', month: 'long' })

/** The last state the server pushed: the only thing the week view is ever rendered from. */
let appointments = []
let received = false
let weekStart = startOfWeek(new Date())
/** Id of the appointment open in the editor; null while creating a new one. */
let editingId = null
let editingSnapshot = null

// ---------------------------------------------------------------------------------------------
// Dates (all in the browser's local time zone)

function startOfWeek(date) {
  const monday = new Date(date.getFullYear(), date.getMonth(), date.getDate())
  monday.setDate(monday.getDate() - ((monday.getDay() + 6) % 7))
  return monday
}

function addDays(date, days) {
  const d = new Date(date)
  d.setDate(d.getDate() + days)
  return d
}

const pad = (n) => String(n).padStart(2, '0')
const dateKey = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
const timeValue = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`

/** "2025-11-24" + "09:30" (local) → ISO 8601 UTC string, or null when incomplete. */
function toIso(date, time) {
  if (!date || !time) return null
  const d = new Date(`${date}T${time}`)
  return Number.isNaN(d.getTime()) ? null : d.toISOString()
}

// ---------------------------------------------------------------------------------------------
// Live connection

// The tabs of this browser share one connection; changes come as patches when smaller; where
// WebSockets are blocked, the HTTP stream carries them.
const client = shareAcrossTabs({ url: 'listen', patches, WebSocket: httpFallback() })
// Whether this tab holds the connection the others share (the browser tests read it).
window.listenjsHolder = () => 'X-Listenjs-Client' in client.headers()

function setStatus(status) {
  statusBadge.dataset.status = status
  statusBadge.textContent = STATUS_LABELS[status] ?? status
  statusBadge.title = `WebSocket ${status}`
}
setStatus(client.status())
client.onStatus(setStatus)

client.listen(
  API,
  (list) => {
    const before = new Map(appointments.map((a) => [a.id, JSON.stringify(a)]))
    appointments = Array.isArray(list) ? list : []
    const changed = received
      ? new Set(appointments.filter((a) => before.get(a.id) !== JSON.stringify(a)).map((a) => a.id))
      : new Set()
    received = true
    hideBanner()
    render(changed)
    lastUpdate.textContent = `Last update received at ${clockFormat.format(new Date())}.`
    checkEditedAppointment()
  },
  {
    onError(error) {
      showBanner(`Live updates unavailable: ${error?.message ?? 'subscription refused'}`)
    },
    onGone() {
      appointments = []
      render(new Set())
      showBanner('The appointments resource is gone.')
    },
  },
)

function showBanner(text) {
  banner.textContent = text
  banner.hidden = false
}

function hideBanner() {
  banner.hidden = true
  banner.textContent = ''
}

// ---------------------------------------------------------------------------------------------
// Week view

function render(changed = new Set()) {
  const days = Array.from({ length: 7 }, (_, i) => addDays(weekStart, i))
  const sunday = days[6]
  weekLabel.textContent =
    weekStart.getFullYear() === sunday.getFullYear()
      ? `${dayMonthFormat.format(weekStart)} – ${fullDateFormat.format(sunday)}`
      : `${fullDateFormat.format(weekStart)} – ${fullDateFormat.format(sunday)}`

  const byDay = new Map(days.map((d) => [dateKey(d), []]))
  for (const appointment of appointments) {
    const list = byDay.get(dateKey(new Date(appointment.start)))
    if (list) list.push(appointment)
  }
  const today = dateKey(new Date())

  const columns = days.map((day) => {
    const key = dateKey(day)
    const column = document.createElement('section')
    column.className = key === today ? 'day today' : 'day'
    column.dataset.date = key
    column.setAttribute('aria-label', longDayFormat.format(day))

    const heading = document.createElement('h3')
    const weekday = document.createElement('span')
    weekday.textContent = weekdayFormat.format(day)
    const num = document.createElement('span')
    num.className = 'num'
    num.textContent = String(day.getDate())
    heading.append(weekday, num)
    if (key === today) heading.append(Object.assign(document.createElement('span'), { textContent: 'today' }))

    const items = document.createElement('ol')
    const dayAppointments = byDay.get(key).sort((a, b) => Date.parse(a.start) - Date.parse(b.start))
    for (const appointment of dayAppointments) {
      const li = document.createElement('li')
      li.append(appointmentElement(appointment, changed.has(appointment.id)))
      items.append(li)
    }
    if (dayAppointments.length === 0) {
      items.append(
        Object.assign(document.createElement('li'), { className: 'empty', textContent: 'No appointments' }),
      )
    }
    column.append(heading, items)
    return column
  })
  weekGrid.replaceChildren(...columns)
}

function appointmentElement(appointment, flash) {
  const start = new Date(appointment.start)
  const end = new Date(appointment.end)
  const button = document.createElement('button')
  button.type = 'button'
  button.className = flash ? 'appointment flash' : 'appointment'
  button.dataset.id = appointment.id

  const time = document.createElement('span')
  time.className = 'time'
  const endText =
    dateKey(end) === dateKey(start)
      ? timeFormat.format(end)
      : `${weekdayFormat.format(end)} ${timeFormat.format(end)}`
  time.textContent = `${timeFormat.format(start)} – ${endText}`

  const title = document.createElement('span')
  title.className = 'title'
  title.textContent = appointment.title

  button.append(time, title)
  if (appointment.location) {
    const location = document.createElement('span')
    location.className = 'location'
    location.textContent = appointment.location
    location.title = appointment.location
    button.append(location)
  }
  button.addEventListener('click', () => openEditor(appointment))
  return button
}

$('#prev-week').addEventListener('click', () => {
  weekStart = addDays(weekStart, -7)
  render()
})
$('#next-week').addEventListener('click', () => {
  weekStart = addDays(weekStart, 7)
  render()
})
$('#today').addEventListener('click', () => {
  weekStart = startOfWeek(new Date())
  render()
})

// ---------------------------------------------------------------------------------------------
// Editor

function clearErrors() {
  formError.hidden = true
  formError.textContent = ''
  for (const span of form.querySelectorAll('.field-error')) span.textContent = ''
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid')
}

function showFieldError(field, message) {
  const span = form.querySelector(`.field-error[data-for="${field}"]`)
  const input = form.elements.namedItem(field)
  if (!span || !input) return false
  const text = message.charAt(0).toUpperCase() + message.slice(1)
  span.textContent = span.textContent ? `${span.textContent} ${text}.` : `${text}.`
  span.id = `error-${field}`
  input.setAttribute('aria-invalid', 'true')
  input.setAttribute('aria-describedby', span.id)
  return true
}

function showFormError(message) {
  formError.textContent = message
  formError.hidden = false
}

/** Shows a 400 body ({ message, errors: [{ field, message }] }) next to the fields it names. */
function showApiErrors(body) {
  const errors = Array.isArray(body?.errors) ? body.errors : []
  const unplaced = errors.filter((e) => !showFieldError(e.field, e.message ?? 'is invalid'))
  if (errors.length === 0) showFormError(body?.message ?? 'The server refused this appointment.')
  else if (unplaced.length) showFormError(unplaced.map((e) => `${e.field} ${e.message}`.trim()).join('; '))
  form.querySelector('[aria-invalid="true"]')?.focus()
}

function setBusy(busy) {
  saveButton.disabled = busy
  deleteButton.disabled = busy
}

function openEditor(appointment) {
  clearErrors()
  setBusy(false)
  form.reset()
  editingId = appointment?.id ?? null
  editingSnapshot = appointment ? JSON.stringify(appointment) : null
  editorTitle.textContent = appointment ? 'Edit appointment' : 'New appointment'
  deleteButton.hidden = !appointment

  if (appointment) {
    const start = new Date(appointment.start)
    const end = new Date(appointment.end)
    form.elements.title.value = appointment.title
    form.elements.date.value = dateKey(start)
    form.elements.start.value = timeValue(start)
    form.elements.end.value = timeValue(end)
    form.elements.location.value = appointment.location ?? ''
    form.elements.notes.value = appointment.notes ?? ''
  } else {
    const now = new Date()
    const inThisWeek = now >= weekStart && now < addDays(weekStart, 7)
    const hour = inThisWeek ? Math.min(Math.max(now.getHours() + 1, 8), 22) : 9
    form.elements.date.value = dateKey(inThisWeek ? now : weekStart)
    form.elements.start.value = `${pad(hour)}:00`
    form.elements.end.value = `${pad(hour + 1)}:00`
  }
  if (!editor.open) editor.showModal()
  form.elements.title.focus()
}

function closeEditor() {
  if (editor.open) editor.close()
}

editor.addEventListener('close', () => {
  editingId = null
  editingSnapshot = null
})

/** While an appointment is open in the editor, tell the user when another tab changes or deletes it. */
function checkEditedAppointment() {
  if (!editor.open || editingId === null) return
  const current = appointments.find((a) => a.id === editingId)
  if (!current) {
    showFormError('This appointment was just deleted (in another tab?). Saving is no longer possible.')
    saveButton.disabled = true
    deleteButton.disabled = true
  } else if (JSON.stringify(current) !== editingSnapshot) {
    editingSnapshot = JSON.stringify(current)
    showFormError('This appointment was just changed elsewhere. Saving will overwrite that change.')
  }
}

$('#new-appointment').addEventListener('click', () => openEditor(null))
$('#cancel').addEventListener('click', closeEditor)

function readForm() {
  const data = new FormData(form)
  const value = (name) => String(data.get(name) ?? '')
  const body = { title: value('title') }
  const missing = []
  for (const name of ['date', 'start', 'end']) if (!value(name)) missing.push(name)
  body.start = toIso(value('date'), value('start'))
  body.end = toIso(value('date'), value('end'))
  if (value('location').trim()) body.location = value('location').trim()
  if (value('notes').trim()) body.notes = value('notes').trim()
  return { body, missing }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  clearErrors()
  const { body, missing } = readForm()
  if (missing.length) {
    for (const name of missing) showFieldError(name, 'is required')
    form.querySelector('[aria-invalid="true"]')?.focus()
    return
  }
  const id = editingId
  const url = id === null ? API_URL : `${API_URL}/${encodeURIComponent(id)}`
  await submit(url, {
    method: id === null ? 'POST' : 'PUT',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  })
})

deleteButton.addEventListener('click', async () => {
  if (editingId === null) return
  clearErrors()
  await submit(`${API_URL}/${encodeURIComponent(editingId)}`, { method: 'DELETE' })
})

/**
 * Sends one write to the API. On success the editor just closes: the week view updates when listenjs
 * pushes the new state, in this tab as in every other.
 */
async function submit(url, init) {
  setBusy(true)
  try {
    const response = await fetch(url, init)
    if (response.ok) return closeEditor()
    await showResponseError(response)
  } catch {
    showFormError('Could not reach the server. Check the connection and try again.')
  } finally {
    if (editor.open) setBusy(false)
  }
}

async function showResponseError(response) {
  const body = await response.json().catch(() => null)
  if (response.status === 400) showApiErrors(body)
  else if (response.status === 404)
    showFormError('This appointment no longer exists (deleted in another tab?).')
  else showFormError(body?.message ?? `The server answered ${response.status}.`)
}

render()
