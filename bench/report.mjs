// Turns the results of bench/run.mjs into BENCHMARKS.md, the text printed to stdout, and three
// hand-written SVG charts (no dependency): latency distribution, CPU per message, bytes polling vs push.
import { percentile, pollRequest } from './lib.mjs'
import { esc, niceMax, table } from './chart.mjs'
import { renderBackplane } from './backplane.mjs'
import { renderScale } from './scale.mjs'
import { patchesTargets, renderPatches } from './patches.mjs'
import { renderStream } from './stream.mjs'
import { USER_METHOD, userScenarios, userSvg, userTable, userTargets } from './report-user.mjs'

const LISTENJS = ['listenjs-fastify', 'listenjs-express', 'listenjs-koa']
const SHORT = { 'listenjs-fastify': 'Fastify', 'listenjs-express': 'Express', 'listenjs-koa': 'Koa' }
const COLORS = {
  'ws-frame': '#555555',
  'ws-send': '#999999',
  'socket.io': '#d1495b',
  'listenjs-fastify': '#00798c',
  'listenjs-express': '#2e86ab',
  'listenjs-koa': '#66a182',
}

const f = (v, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : '–')
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–')
const ratio = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–')
const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(a === b ? 0 : 2)} %` : '–')

// ---------------------------------------------------------------------------------------------
// Fan-out tables

function fanOutTable(scenario) {
  const rows = scenario.rows
  const byKey = (key) => rows.find((r) => r.key === key)
  const frame = byKey('ws-frame') ?? byKey('ws-frame:public')
  const sio = byKey('socket.io') ?? byKey('socket.io:public')
  const body = rows.map((r) => {
    const base = scenario.id === 'user' ? byKey(`ws-frame:${r.access}`) : frame
    const io = scenario.id === 'user' ? byKey(`socket.io:${r.access}`) : sio
    const spread =
      r.cpuPerMsgAll?.length > 1
        ? ` (${f(Math.min(...r.cpuPerMsgAll))}–${f(Math.max(...r.cpuPerMsgAll))})`
        : ''
    return [
      `${r.variant.label}${r.access ? `, ${r.access}` : ''}`,
      `${f(r.cpuPerMsg)}${spread}`,
      ratio(r.cpuPerMsg / base.cpuPerMsg),
      Number.isFinite(r.systemPerMsg)
        ? `${f((100 * r.systemPerMsg) / (r.systemPerMsg + r.userPerMsg), 0)} %`
        : '–',
      int(r.msgsPerCore),
      ratio(r.msgsPerCore / io.msgsPerCore),
      f(r.p50),
      f(r.p99),
      f(r.ttld, 1),
      ratio(r.ttld / base.ttld),
      `${int(r.received)} / ${int(r.expected)} (${pct(r.received, r.expected)})`,
    ]
  })
  return table(
    [
      'system',
      'server CPU µs / msg (min–max)',
      '× ws pre-framed',
      'in the kernel',
      'msgs/s per core',
      '× Socket.IO',
      'latency p50 ms',
      'p99 ms',
      'last delivery ms',
      '× ws pre-framed',
      'delivered / expected',
    ],
    body,
  )
}

function memoryRows(results) {
  const m = results.memory
  if (!m) return []
  const n = m.to - m.from
  const per = (name, key) => (m.after[name][key] - m.before[name][key]) / n
  const systems = [
    ['raw ws (both baselines)', 'raw'],
    ['Socket.IO 4', 'sio'],
    ['listenjs (Fastify)', 'fastify'],
    ['listenjs (Express)', 'express'],
    ['listenjs (Koa)', 'koa'],
  ]
  return systems.map(([label, name]) => ({
    label,
    name,
    heap: per(name, 'heapUsed'),
    rss: per(name, 'rss'),
    external: per(name, 'external'),
    heapTotal: m.after[name].heapUsed,
    rssTotal: m.after[name].rss,
  }))
}

function memoryTable(results) {
  const rows = memoryRows(results)
  if (!rows.length) return ''
  const raw = rows.find((r) => r.name === 'raw')
  const sio = rows.find((r) => r.name === 'sio')
  return table(
    [
      'system',
      'heap / connection',
      '× raw ws',
      '× Socket.IO',
      'RSS / connection',
      '× raw ws',
      '× Socket.IO',
      `heap at ${results.memory.to.toLocaleString('en')}`,
      `RSS at ${results.memory.to.toLocaleString('en')}`,
    ],
    rows.map((r) => [
      r.label,
      `${f(r.heap / 1024, 2)} KiB`,
      ratio(r.heap / raw.heap),
      ratio(r.heap / sio.heap),
      `${f(r.rss / 1024, 2)} KiB`,
      ratio(r.rss / raw.rss),
      ratio(r.rss / sio.rss),
      `${f(r.heapTotal / 2 ** 20, 1)} MiB`,
      `${f(r.rssTotal / 2 ** 20, 1)} MiB`,
    ]),
  )
}

// ---------------------------------------------------------------------------------------------
// Polling

function pollingRows(results) {
  const p = results.polling
  if (!p) return []
  const out = []
  for (const changeEvery of p.rates) {
    for (const mode of ['plain', 'conditional', 'push', 'raw-push']) {
      const ws = p.windows.filter((w) => w.mode === mode && w.changeEvery === changeEvery)
      if (!ws.length) continue
      const sum = (k) => ws.reduce((s, w) => s + w[k], 0)
      const seconds = sum('seconds')
      const samples = ws.flatMap((w) => w.samples ?? []).sort((a, b) => a - b)
      const handoffs = ws.flatMap((w) => w.handoffs ?? []).sort((a, b) => a - b)
      const requests = sum('gets') + sum('posts') + sum('replays')
      out.push({
        mode,
        changeEvery,
        bytes: sum('bytesIn') + sum('bytesOut'),
        bytesIn: sum('bytesIn'),
        bytesOut: sum('bytesOut'),
        perClientPerSec: (sum('bytesIn') + sum('bytesOut')) / seconds / p.n,
        requestsPerSec: requests / seconds,
        framesPerSec: sum('frames') / seconds,
        opsPerSec: (requests + sum('frames')) / seconds,
        cpuMsPerSec: sum('cpuMs') / seconds,
        p50: samples.length ? percentile(samples, 50) : NaN,
        min: samples.length ? samples[0] : NaN,
        p99: samples.length ? percentile(samples, 99) : NaN,
        handoffP50: handoffs.length ? percentile(handoffs, 50) : NaN,
        seen: samples.length,
        possible: sum('changes') * p.n,
        r304: sum('r304'),
        polls: sum('polls'),
        skipped: sum('skipped'),
        seconds,
      })
    }
  }
  return out
}

function pollingTables(results) {
  const p = results.polling
  const rows = pollingRows(results)
  const blocks = []
  for (const changeEvery of p.rates) {
    const group = rows.filter((r) => r.changeEvery === changeEvery)
    const push = group.find((r) => r.mode === 'push')
    const rarer = changeEvery / p.T
    blocks.push(
      `**Changes ${rarer === 1 ? 'as often as polls' : `${rarer}× rarer than polls`}** (one change every ${changeEvery} ms, polls every ${p.T} ms, ${p.n} clients, ${f(group[0]?.seconds ?? 0, 0)} s measured per mode)\n\n` +
        table(
          [
            'mode',
            'bytes on the wire (in + out)',
            'per client per s',
            '× push',
            'server operations/s (app requests: polls, POSTs, replays)',
            '× push',
            'WS frames/s',
            'operations + frames/s',
            '× push',
            'server CPU ms/s',
            '× push',
            'staleness p50 ms',
            'p99 ms',
            'fastest ms',
            'server: last frame to the kernel p50 ms',
            'states seen / changes × clients',
          ],
          group.map((r) => [
            {
              push: 'listenjs push',
              plain: 'polling, plain GET',
              conditional: 'polling, conditional (ETag → 304)',
              'raw-push': 'raw ws push, pre-framed (the floor on this host)',
            }[r.mode],
            `${int(r.bytes)} (${int(r.bytesIn)} + ${int(r.bytesOut)})`,
            `${int(r.perClientPerSec)} B`,
            ratio(r.bytes / push.bytes),
            f(r.requestsPerSec, 1),
            ratio(r.requestsPerSec / push.requestsPerSec),
            f(r.framesPerSec, 1),
            f(r.opsPerSec, 1),
            ratio(r.opsPerSec / push.opsPerSec),
            f(r.cpuMsPerSec, 1),
            ratio(r.cpuMsPerSec / push.cpuMsPerSec),
            f(r.p50, 1),
            f(r.p99, 1),
            f(r.min, 1),
            Number.isFinite(r.handoffP50) ? f(r.handoffP50, 1) : '—',
            `${int(r.seen)} / ${int(r.possible)}`,
          ]),
        ),
    )
  }
  return blocks.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Targets (issue 5)

function targets(results) {
  const sc = (id) => results.scenarios.find((s) => s.id === id)
  const row = (s, key) => s?.rows.find((r) => r.key === key)
  const out = []
  const each = (s, value) => LISTENJS.map((k) => ({ name: SHORT[k], v: row(s, k) ? value(row(s, k)) : NaN }))
  const verdict = (vals, ok) => {
    const bad = vals.filter((x) => !(Number.isFinite(x.v) && ok(x.v)))
    if (vals.every((x) => !Number.isFinite(x.v))) return 'not run'
    return bad.length === 0 ? 'met' : `missed (${bad.map((b) => b.name).join(', ')})`
  }
  const show = (vals, unit = '×') => vals.map((x) => `${x.name} ${f(x.v)}${unit}`).join(', ')

  const large = sc('large')
  if (large) {
    const frame = row(large, 'ws-frame')
    const send = row(large, 'ws-send')
    const sio = row(large, 'socket.io')
    const cpu = each(large, (r) => r.cpuPerMsg / frame.cpuPerMsg)
    out.push([
      `N = ${large.n.toLocaleString('en')}: CPU per delivered message ≤ 1.15 × pre-framed raw ws`,
      show(cpu),
      verdict(cpu, (v) => v <= 1.15),
    ])
    const vsSio = each(large, (r) => r.msgsPerCore / sio.msgsPerCore)
    out.push([
      `N = ${large.n.toLocaleString('en')}: msgs/s per core ≥ 1.5 × Socket.IO`,
      show(vsSio),
      verdict(vsSio, (v) => v >= 1.5),
    ])
    const ttld = each(large, (r) => r.ttld / frame.ttld)
    const ttldSend = each(large, (r) => r.ttld / send.ttld)
    out.push([
      `N = ${large.n.toLocaleString('en')}: time to last delivery ≤ 1.15 × raw ws (pre-framed; vs send(): ${show(ttldSend)})`,
      show(ttld),
      verdict(ttld, (v) => v <= 1.15),
    ])
  }
  const burst = sc('burst')
  if (burst) {
    const sio = row(burst, 'socket.io')
    const vals = each(burst, (r) => r.msgsPerCore / sio.msgsPerCore)
    out.push([
      'Burst of 10 changes in one turn: msgs/s per core ≥ 3 × Socket.IO',
      show(vals),
      verdict(vals, (v) => v >= 3),
    ])
  }
  const mem = memoryRows(results)
  if (mem.length) {
    const raw = mem.find((r) => r.name === 'raw')
    const sio = mem.find((r) => r.name === 'sio')
    const lj = mem.filter((r) => ['fastify', 'express', 'koa'].includes(r.name))
    const vsRaw = lj.map((r) => ({
      name: r.label.replace(/^listenjs \((.*)\)$/, '$1'),
      v: r.heap / raw.heap,
    }))
    const vsSio = lj.map((r) => ({
      name: r.label.replace(/^listenjs \((.*)\)$/, '$1'),
      v: r.heap / sio.heap,
    }))
    out.push([
      'Idle memory per connection: heap ≤ 1.6 × raw ws',
      show(vsRaw),
      verdict(vsRaw, (v) => v <= 1.6),
    ])
    out.push([
      'Idle memory per connection: heap ≤ 0.5 × Socket.IO',
      show(vsSio),
      verdict(vsSio, (v) => v <= 0.5),
    ])
  }
  const ljRows = results.scenarios.flatMap((s) => s.rows.filter((r) => LISTENJS.includes(r.variant.id)))
  if (ljRows.length) {
    const received = ljRows.reduce((s, r) => s + r.received, 0)
    const expected = ljRows.reduce((s, r) => s + r.expected, 0)
    out.push([
      '100 % delivered when no consumer is slow (every listenjs scenario)',
      `${int(received)} / ${int(expected)} (${pct(received, expected)})`,
      received === expected ? 'met' : 'missed',
    ])
  }
  const p = results.polling
  if (p) {
    const rows = pollingRows(results)
    const rare = p.rates.find((r) => r === 10 * p.T)
    const cond = rows.find((r) => r.mode === 'conditional' && r.changeEvery === rare)
    const push = rows.find((r) => r.mode === 'push' && r.changeEvery === rare)
    const floor = rows.find((r) => r.mode === 'raw-push' && r.changeEvery === rare)
    if (cond && push) {
      const bytes = cond.bytes / push.bytes
      const ops = cond.opsPerSec / push.opsPerSec
      const reqs = cond.requestsPerSec / push.requestsPerSec
      const cpu = cond.cpuMsPerSec / push.cpuMsPerSec
      out.push([
        'Vs conditional polling, changes 10× rarer: ≥ 20 × fewer bytes',
        ratio(bytes),
        bytes >= 20 ? 'met' : 'missed',
      ])
      out.push([
        'Vs conditional polling, changes 10× rarer: ≥ 10 × fewer server operations (requests the app serves: polls, POSTs, replays)',
        `${ratio(reqs)} (server CPU: ${ratio(cpu)}; counting each WS frame as one more operation: ${ratio(ops)}, which cannot reach 10× when changes are exactly 10× rarer)`,
        reqs >= 10 ? 'met' : 'missed',
      ])
      out.push([
        `Vs conditional polling, changes 10× rarer: push staleness p50 < 5 ms (polling ~T/2 = ${p.T / 2} ms)`,
        `push ${f(push.p50)} ms, conditional polling ${f(cond.p50, 1)} ms${floor ? `; raw ws push on the same host ${f(floor.p50)} ms (${ratio(push.p50 / floor.p50)})` : ''}`,
        push.p50 < 5 ? 'met' : 'missed',
      ])
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// SVG charts

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12"'

function latencySvg(scenario) {
  const W = 760
  const H = 420
  const L = 60
  const R = 200
  const T = 40
  const B = 50
  const rows = scenario.rows.filter((r) => r.latSample?.length)
  const xmax = niceMax(Math.max(...rows.map((r) => r.latSample.at(-1))))
  const x = (v) => L + (v / xmax) * (W - L - R)
  const y = (q) => T + (1 - q) * (H - T - B)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT}>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${L}" y="22" font-size="14" font-weight="bold">Latency, POST handler done → receipt: ${esc(scenario.title)}</text>`,
  ]
  for (let i = 0; i <= 5; i++) {
    const v = (xmax * i) / 5
    parts.push(`<line x1="${x(v)}" y1="${T}" x2="${x(v)}" y2="${H - B}" stroke="#eee"/>`)
    parts.push(`<text x="${x(v)}" y="${H - B + 16}" text-anchor="middle">${+v.toFixed(1)}</text>`)
  }
  for (const q of [0, 0.25, 0.5, 0.75, 0.9, 0.99]) {
    parts.push(`<line x1="${L}" y1="${y(q)}" x2="${W - R}" y2="${y(q)}" stroke="#eee"/>`)
    parts.push(`<text x="${L - 6}" y="${y(q) + 4}" text-anchor="end">${q * 100}%</text>`)
  }
  parts.push(`<line x1="${L}" y1="${y(1)}" x2="${W - R}" y2="${y(1)}" stroke="#ccc"/>`)
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">latency (ms)</text>`)
  parts.push(
    `<text x="14" y="${(T + H - B) / 2}" transform="rotate(-90 14 ${(T + H - B) / 2})" text-anchor="middle">share of messages delivered</text>`,
  )
  rows.forEach((r, i) => {
    const s = r.latSample
    const points = s.map((v, k) => `${x(v).toFixed(1)},${y((k + 1) / s.length).toFixed(1)}`).join(' ')
    const color = COLORS[r.variant.id] ?? '#000'
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/>`)
    const ly = T + 10 + i * 20
    parts.push(
      `<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 32}" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
    )
    parts.push(`<text x="${W - R + 38}" y="${ly + 4}">${esc(r.variant.id)} p50 ${f(r.p50, 1)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n')
}

function cpuSvg(scenarios) {
  const groups = scenarios.filter((s) => ['one', 'large', 'burst', 'paths'].includes(s.id))
  const variants = groups[0]?.rows.map((r) => r.variant) ?? []
  const W = 760
  const L = 170
  const R = 90
  const barH = 14
  const groupH = variants.length * (barH + 3) + 30
  const H = 50 + groups.length * groupH + 30
  const xmax = niceMax(Math.max(...groups.flatMap((g) => g.rows.map((r) => r.cpuPerMsg))))
  const x = (v) => L + (v / xmax) * (W - L - R)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT}>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">Server CPU per delivered message (µs, lower is better)</text>`,
  ]
  for (let i = 0; i <= 5; i++) {
    const v = (xmax * i) / 5
    parts.push(`<line x1="${x(v)}" y1="36" x2="${x(v)}" y2="${H - 24}" stroke="#eee"/>`)
    parts.push(`<text x="${x(v)}" y="${H - 10}" text-anchor="middle">${+v.toFixed(2)}</text>`)
  }
  groups.forEach((g, gi) => {
    const top = 50 + gi * groupH
    parts.push(`<text x="10" y="${top}" font-weight="bold">${esc(g.title)}</text>`)
    g.rows.forEach((r, i) => {
      const yy = top + 8 + i * (barH + 3)
      parts.push(`<text x="${L - 6}" y="${yy + barH - 3}" text-anchor="end">${esc(r.variant.id)}</text>`)
      parts.push(
        `<rect x="${L}" y="${yy}" width="${Math.max(1, x(r.cpuPerMsg) - L).toFixed(1)}" height="${barH}" fill="${COLORS[r.variant.id] ?? '#000'}"/>`,
      )
      parts.push(`<text x="${x(r.cpuPerMsg) + 4}" y="${yy + barH - 3}">${f(r.cpuPerMsg)}</text>`)
    })
  })
  parts.push('</svg>')
  return parts.join('\n')
}

function pollingSvg(results) {
  const p = results.polling
  const rows = pollingRows(results)
  const W = 760
  const H = 380
  const L = 80
  const T = 50
  const B = 70
  const modes = [
    ['plain', 'polling, plain', '#d1495b'],
    ['conditional', 'polling, ETag/304', '#edae49'],
    ['push', 'listenjs push', '#00798c'],
  ]
  const vmax = 10 ** Math.ceil(Math.log10(Math.max(...rows.map((r) => r.perClientPerSec))))
  const vmin = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...rows.map((r) => r.perClientPerSec)))))
  const y = (v) =>
    T + (1 - (Math.log10(v) - Math.log10(vmin)) / (Math.log10(vmax) - Math.log10(vmin))) * (H - T - B)
  const groupW = (W - L - 20) / p.rates.length
  const barW = Math.min(70, groupW / 4)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT}>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">Bytes on the wire per client per second (log scale), polling every ${p.T} ms vs push</text>`,
  ]
  for (let v = vmin; v <= vmax; v *= 10) {
    parts.push(`<line x1="${L}" y1="${y(v)}" x2="${W - 20}" y2="${y(v)}" stroke="#eee"/>`)
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toLocaleString('en')} B</text>`)
  }
  p.rates.forEach((rate, gi) => {
    const x0 = L + gi * groupW + (groupW - modes.length * (barW + 8)) / 2
    modes.forEach(([mode, , color], mi) => {
      const r = rows.find((w) => w.mode === mode && w.changeEvery === rate)
      if (!r) return
      const xx = x0 + mi * (barW + 8)
      const yy = y(Math.max(vmin, r.perClientPerSec))
      parts.push(
        `<rect x="${xx}" y="${yy.toFixed(1)}" width="${barW}" height="${(H - B - yy).toFixed(1)}" fill="${color}"/>`,
      )
      parts.push(
        `<text x="${xx + barW / 2}" y="${yy - 4}" text-anchor="middle">${int(r.perClientPerSec)}</text>`,
      )
    })
    const rarer = rate / p.T
    parts.push(
      `<text x="${L + gi * groupW + groupW / 2}" y="${H - B + 18}" text-anchor="middle">change every ${rate} ms (${rarer === 1 ? 'as often as polls' : `${rarer}× rarer than polls`})</text>`,
    )
  })
  modes.forEach(([, label, color], mi) => {
    const lx = L + mi * 180
    parts.push(`<rect x="${lx}" y="${H - 30}" width="14" height="14" fill="${color}"/>`)
    parts.push(`<text x="${lx + 20}" y="${H - 19}">${label}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n')
}

// ---------------------------------------------------------------------------------------------

export function renderReport(results, { svgRelative = '' } = {}) {
  const m = results.machine
  const c = results.config
  const head = [
    `Machine: ${m.cpu}, ${m.cores} cores, ${f(m.memoryGiB, 1)} GiB RAM, ${m.os}. Node ${m.node}.`,
    `Date: ${results.date}. Command: \`${results.command}\` (${f(results.seconds, 0)} s${results.quick ? ', quick mode: small N, few rounds; a smoke test, not a measurement' : ''}).`,
  ].join('\n')
  const targetRows = [
    ...userTargets(results),
    ...targets(results),
    ...(results.patches ? patchesTargets(results.patches) : []),
  ]
  const targetTable = targetRows.length ? table(['target', 'measured', 'verdict'], targetRows) : ''
  const sections = []
  const perUser = userScenarios(results)
  if (perUser.length) {
    sections.push(
      `### Per-user views (what most apps push)\n\n${USER_METHOD}\n\n${perUser.map((s) => `#### ${s.title}\n\n${userTable(s)}`).join('\n\n')}`,
    )
  }
  for (const s of results.scenarios)
    if (!perUser.includes(s)) sections.push(`### ${s.title}\n\n${fanOutTable(s)}`)
  const mem = memoryTable(results)
  const memText = mem
    ? `### Idle memory per connection\n\nEach connection holds one subscription (${results.memory.to.toLocaleString('en')} connections per server). Per connection = (heap or RSS at ${results.memory.to.toLocaleString('en')} − at ${results.memory.from.toLocaleString('en')}) / ${(results.memory.to - results.memory.from).toLocaleString('en')}, both after forced GC (\`--expose-gc\`, four \`gc()\` calls).\n\n${mem}`
    : ''
  const pollText = results.polling
    ? `### Polling vs push\n\nScaled-down ratios to fit the time budget: clients poll every **${results.polling.T} ms** and changes come every **${results.polling.rates.join(' ms / ')} ms** (the thesis's T = 1 s with one change per 10 s, ×0.1). Bytes are counted at the socket level on the server (sum of \`socket.bytesRead + socket.bytesWritten\` over client sockets, TCP/IP headers excluded), within the measurement window (connections are opened before it). Pollers use one keep-alive connection each and send the headers Chrome 126 sends for a same-origin \`fetch('/items')\` (sec-ch-ua*, User-Agent, Accept, Sec-Fetch-*, Referer, Accept-Encoding, Accept-Language) and a short session cookie: ${pollRequest(40000, 1234).length} bytes per request, ${pollRequest(40000, 1234, '"i1234"').length} with If-None-Match. *Server operations* are the requests the application serves (polls, the POSTs that make the changes, and listenjs's in-process replays); WebSocket frames written are counted separately. Staleness: time from the POST handler that made a change to the client seeing that state (*fastest*: the first client to see it). All ${results.polling.n} clients run in two generator processes on the same 2-core host${results.polling.pinned ? ' (pinned with taskset: the server on CPU 0, both generators on CPU 1, so the clients do not preempt a fan-out)' : ''}, so the push staleness includes the fan-out to every client, one loopback write each, and the clients' own receive work, serialized on one core; a poller's staleness is dominated by the poll period (~T/2). *Server: last frame to the kernel*: time from the change to the end of the fan-out loop (every frame handed to the kernel). The raw \`ws\` row is a hand-written server pushing one pre-framed buffer per socket (no version, no replay): the floor for push on this host.\n\n${pollingTables(results)}`
    : ''
  const backplane = results.backplane ? renderBackplane(results.backplane) : undefined
  const patches = results.patches ? renderPatches(results.patches) : undefined
  const stream = results.stream ? renderStream(results.stream) : undefined
  const scale = results.scale ? renderScale(results.scale, { svgRelative }) : undefined
  const demote = (markdown) => markdown.replace(/^(#+) /gm, '#$1 ')
  const charts = [
    perUser.length ? `![CPU per delivered per-user view against N](${svgRelative}user.svg)` : '',
    results.scenarios.some((s) => s.id === 'large' || s.id === 'one')
      ? `![Latency distribution](${svgRelative}latency.svg)`
      : '',
    results.scenarios.some((s) => !s.id.startsWith('user-'))
      ? `![CPU per message](${svgRelative}cpu.svg)`
      : '',
    results.polling ? `![Bytes, polling vs push](${svgRelative}polling.svg)` : '',
  ].filter(Boolean)

  const method = `## Method

- **Processes.** Five server processes (raw \`ws\`, Socket.IO, listenjs on Fastify, Express and Koa) run at once, each in its own process started with \`--expose-gc\`; ${c.generators} load-generator processes hold the client sockets (each generator holds a share of every system's sockets, spread over the source addresses 127.0.0.2–127.0.0.9) and speak the protocols over raw \`ws\` clients: the listenjs protocol (answering \`ping\` with \`pong\`), a minimal JSON protocol for the raw \`ws\` server, and Engine.IO v4 / Socket.IO directly (\`/socket.io/?EIO=4&transport=websocket\`, \`0{…}\` open, \`40\` namespace connect, \`2\`→\`3\` pings, \`42[…]\` events). The orchestrator (\`bench/run.mjs\`) only triggers changes (a real HTTP POST over loopback keep-alive) and aggregates. Everything on loopback.
- **Interleaved.** Every scenario runs ${c.rounds} rounds (the first is a warm-up, not counted); each round makes one change on every system, in an order rotated by one each round, so all systems see the same drift. Ratios are within one run.
- **One change.** The POST handler changes the state and stamps it with the time it finished (\`performance.timeOrigin + performance.now()\`, the same host clock in every process). Baselines fan out inside their POST handler; listenjs's POST only changes the state: the hub replays \`GET\` in process and pushes.
  - *raw ws, pre-framed:* one \`JSON.stringify\`, one frame built with ws's exported \`Sender.frame(data, { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false })\`, and that one buffer written to every socket's \`net.Socket\` (\`ws._socket\`: ws has no public API for this, \`_socket\` is private). Several paths in one turn: each socket corked once, one write.
  - *raw ws, send(string):* one \`JSON.stringify\`, then \`ws.send(string)\` per socket (ws converts and frames per socket).
  - *Socket.IO 4.8:* \`io.to(path).emit('data', state)\`, websocket transport only, \`perMessageDeflate: false\`.
  - *listenjs:* \`GET /items\` with route option \`public: true\` (one replay for everyone) unless said otherwise; a ~330-byte JSON body.
- **Metrics.** *Server CPU per message*: \`process.cpuUsage()\` (user + system) in the server over a window that covers the whole cost of one change, its garbage included: the young generation is scavenged just before the window (a forced minor GC, then ${c.settleMs} ms for V8's concurrent work, so nothing earlier is billed); the window runs from just before the POST until the generators have received every expected message, and closes only after a second forced scavenge inside it, which collects what the change left. An empty window measured the same way (IPC, timers, the scavenge of an empty young generation) is subtracted; CPU ÷ messages delivered, median over rounds. No full GC touches a window: closing one with a full GC would bill the marking of the whole live heap, every idle connection (at 10,000 connections, 42–53 ms for raw \`ws\` and 58–81 ms for listenjs, 4–8 µs per message of one change), a cost of holding connections that the memory table reports, not of a push. Billing it is why an outside harness found 1.17–1.18× where the push itself costs 1.02–1.09×. (Until issue 14, every window opened right after a forced full GC: it started with cold caches, and the change's garbage was collected after it, unbilled.) *Msgs/s per core* = 10⁶ / that. *Latency*: receipt (first thing in the generator's message handler) − the stamp, pooled over rounds, p50/p99. *Last delivery*: the largest latency of a change, median over rounds. *Delivered*: frames of that change received / sockets × frames expected.
- **Deviations from defaults** (same for every system): listenjs \`limits.connectionsPerAddress\` raised (thousands of sockets per loopback address), listenjs heartbeat and Socket.IO \`pingInterval\` set to 15 min so that no ping round lands inside a measurement window. ${results.pinned ? "Servers are pinned to CPU 0 and load generators to CPU 1 (`taskset`; one server is measured at a time, the others idle), so a fan-out is not preempted by the clients receiving it; latencies include the clients' time on their one core." : 'Load generators run on the same 2 cores as the server, so latencies include client-side time.'} CPU per message is the server's alone. *In the kernel*: the system-time share of the window's CPU (on loopback, a write's system time includes the TCP path to the receiving socket).`

  const markdown = [
    '# listenjs benchmarks',
    '',
    "Per-user views, fan-out, latency, memory, many sockets, the polling comparison, the Redis backplane's ceiling, patches and the HTTP stream, each measured against its baselines (raw `ws`, Socket.IO, the framework's own floor) in one run. Reproduce with `npm run bench` (about 12 minutes on 2 cores; `npm run bench -- --quick` is the CI smoke test, `--only=<ids>` runs some phases). The harness is in [bench/](bench/); where the time goes is in [bench/PROFILE.md](bench/PROFILE.md).",
    '',
    head,
    '',
    '## Targets',
    '',
    targetTable,
    '',
    '## Results',
    '',
    sections.join('\n\n'),
    '',
    memText,
    '',
    pollText,
    '',
    scale ? demote(scale.markdown) : '',
    '',
    backplane
      ? demote(backplane.markdown).replace(/\]\(backplane\.svg\)/g, `](${svgRelative}backplane.svg)`)
      : '',
    '',
    patches ?? '',
    '',
    stream ?? '',
    '',
    '## Charts',
    '',
    charts.join('\n\n'),
    '',
    method,
    '',
  ].join('\n')

  const stdout = [
    head,
    '',
    sections.join('\n\n'),
    '',
    memText,
    '',
    pollText,
    '',
    '## Targets',
    '',
    targetTable,
  ].join('\n')

  const svgs = {}
  const latScenario =
    results.scenarios.find((s) => s.id === 'large') ?? results.scenarios.find((s) => s.id === 'one')
  if (latScenario) svgs['latency.svg'] = latencySvg(latScenario)
  if (results.scenarios.some((s) => !s.id.startsWith('user-'))) svgs['cpu.svg'] = cpuSvg(results.scenarios)
  if (perUser.length) svgs['user.svg'] = userSvg(results)
  if (results.polling) svgs['polling.svg'] = pollingSvg(results)
  if (backplane) Object.assign(svgs, backplane.svgs)
  if (scale) Object.assign(svgs, scale.svgs)
  return { markdown, stdout, svgs }
}
