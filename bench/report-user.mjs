// The per-user section of BENCHMARKS.md (bench/run.mjs's `user-<N>` scenarios): tables, the targets
// and a chart of CPU per delivered message against N, for the hand-written loops, the floor of the
// replay model on each framework (bench/floor.mjs) and listenjs.
import { lineChart, table } from './chart.mjs'

const FRAMEWORKS = [
  ['fastify', 'Fastify'],
  ['express', 'Express'],
  ['koa', 'Koa'],
]
const COLORS = {
  'ws-loop': '#555555',
  'socket.io-loop': '#d1495b',
  'floor-fastify': '#9fd3dc',
  'listenjs-fastify': '#00798c',
  'floor-express': '#a9cbe0',
  'listenjs-express': '#2e86ab',
  'floor-koa': '#bcdcc0',
  'listenjs-koa': '#66a182',
}
const f = (v, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : '–')
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–')
const ratio = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–')

/** The per-user scenarios of a run, by ascending N. */
export function userScenarios(results) {
  return results.scenarios.filter((s) => s.id.startsWith('user-')).sort((a, b) => a.n - b.n)
}

const floorOf = (scenario, row) => {
  const fw = /^(?:listenjs|floor)-(\w+)$/.exec(row.variant.id)?.[1]
  return fw ? scenario.rows.find((r) => r.key === `floor-${fw}`) : undefined
}

/** One table per N: CPU per delivered message and its ratios to the floor and the loops. */
export function userTable(scenario) {
  const byKey = (key) => scenario.rows.find((r) => r.key === key)
  const sio = byKey('socket.io-loop')
  const ws = byKey('ws-loop')
  const head = [
    'system',
    'server CPU µs / msg (min–max)',
    '× floor',
    '× Socket.IO loop',
    '× ws loop',
    'views / s per core',
    'last delivery ms',
    'delivered / expected',
  ]
  const rows = scenario.rows.map((r) => {
    const spread =
      r.cpuPerMsgAll?.length > 1
        ? ` (${f(Math.min(...r.cpuPerMsgAll), 1)}–${f(Math.max(...r.cpuPerMsgAll), 1)})`
        : ''
    const floor = floorOf(scenario, r)
    return [
      r.variant.label,
      `${f(r.cpuPerMsg, 1)}${spread}`,
      floor && floor !== r ? ratio(r.cpuPerMsg / floor.cpuPerMsg) : '–',
      ratio(r.cpuPerMsg / sio.cpuPerMsg),
      ratio(r.cpuPerMsg / ws.cpuPerMsg),
      int(r.msgsPerCore),
      f(r.ttld, 1),
      `${int(r.received)} / ${int(r.expected)}`,
    ]
  })
  return table(head, rows)
}

/** Target rows: listenjs ≤ 1.2× the floor of its framework at N ≥ 1,000. */
export function userTargets(results) {
  const out = []
  for (const s of userScenarios(results).filter((x) => x.n >= 1000)) {
    const vals = FRAMEWORKS.map(([fw, name]) => {
      const lj = s.rows.find((r) => r.key === `listenjs-${fw}`)
      const floor = s.rows.find((r) => r.key === `floor-${fw}`)
      return { name, v: lj && floor ? lj.cpuPerMsg / floor.cpuPerMsg : NaN }
    })
    const sio = s.rows.find((r) => r.key === 'socket.io-loop')
    const vsSio = FRAMEWORKS.map(([fw, name]) => {
      const lj = s.rows.find((r) => r.key === `listenjs-${fw}`)
      return `${name} ${ratio(lj.cpuPerMsg / sio.cpuPerMsg)}`
    }).join(', ')
    const bad = vals.filter((x) => !(x.v <= 1.2))
    out.push([
      `Per-user views, N = ${s.n.toLocaleString('en')}: CPU per delivered message ≤ 1.2 × the framework's floor`,
      `${vals.map((x) => `${x.name} ${ratio(x.v)}`).join(', ')} (vs the Socket.IO hand-written loop: ${vsSio})`,
      bad.length ? `missed (${bad.map((b) => b.name).join(', ')})` : 'met',
    ])
  }
  return out
}

/** What the per-user rows measure. */
export const USER_METHOD = `A phase of its own: eight server processes (the two loops, and the floor and listenjs on each framework), the same load generators, N growing from one step to the next on the same sockets. Every socket sends its own cookie (\`sid=<n>\`), subscribes to \`/mine\`, and \`GET /mine\` answers a ~1.1 KB JSON view of that user's six rows (built anew for each request, as a handler filtering a table by owner would). One POST changes the state; every user then gets its own view:

- *raw ws, hand-written loop*: in the POST handler, for each subscribed socket, the view from the same data function, \`JSON.stringify\`, one pre-framed write.
- *Socket.IO 4, hand-written loop*: for each socket in the room, \`socket.emit('data', view)\` with that socket's user.
- *floor (framework)*: the price of the model itself, without listenjs. The framework alone (no listenjs) serves each subscriber's \`GET /mine\` to a bare in-process request (Node's \`IncomingMessage\`/\`ServerResponse\` over a dummy socket, \`server.emit('request')\`, \`write\`/\`end\` only collect the body; the request carries the headers a replay forwards: \`Host\`, \`Cookie\`, \`User-Agent\`), 100 at a time, and each answer goes out as one pre-framed write ([bench/floor.mjs](bench/floor.mjs)). No version, no sharing of equal answers, no timeout, no body limit, no async context.
- *listenjs (framework)*: the POST only changes the state; the hub replays \`GET /mine\` once per identity (every cookie is its own) and pushes each answer.

*Views / s per core* = 10⁶ / CPU per delivered message. *× floor* compares listenjs with the floor on the same framework, in the same run.`

/** CPU per delivered message against N (log x), one line per system. */
export function userSvg(results) {
  const scenarios = userScenarios(results)
  if (scenarios.length === 0) return undefined
  return lineChart({
    title: 'Per-user views: server CPU per delivered message against the number of users',
    yLabel: 'µs per delivered message (lower is better); dashed: the floor of the replay model',
    logX: true,
    series: scenarios[0].rows.map((row) => ({
      label: row.variant.label,
      color: COLORS[row.key] ?? '#000',
      dashed: row.key.startsWith('floor-'),
      points: scenarios.map((s) => [s.n, s.rows.find((r) => r.key === row.key)?.cpuPerMsg]),
    })),
  })
}
