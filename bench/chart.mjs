// Hand-written SVG charts and markdown tables for the benchmark reports (no dependency).

/** A markdown table: the first column left-aligned, the others right-aligned (figures). */
export function table(head, rows) {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n')
}

/** Escapes text for SVG. */
export const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** The smallest of 1, 2, 2.5, 5 × a power of ten that is ≥ v: a round axis maximum. */
export function niceMax(v) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p
  return 10 * p
}

/**
 * A line chart: `series` = [{ label, color, dashed?, points: [[x, y], …] }]; x on a log scale when
 * `logX` (for N = 1k, 5k, 10k, …), y from 0. `xTick(x)` labels the x values of the points.
 */
export function lineChart({
  title,
  series,
  yLabel = '',
  logX = false,
  xTick = (v) => v.toLocaleString('en'),
}) {
  const W = 760
  const H = Math.max(380, 60 + series.length * 20)
  const L = 64
  const R = 250
  const T = 44
  const B = 44
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b)
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite)
  const ymax = niceMax(Math.max(...ys, 1e-9))
  const tx = (v) => (logX ? Math.log10(v) : v)
  const x = (v) =>
    xs.length < 2
      ? L + (W - L - R) / 2
      : L + ((tx(v) - tx(xs[0])) / (tx(xs.at(-1)) - tx(xs[0]))) * (W - L - R)
  const y = (v) => T + (1 - v / ymax) * (H - T - B)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ]
  if (yLabel) parts.push(`<text x="10" y="38" fill="#555">${esc(yLabel)}</text>`)
  for (let i = 0; i <= 5; i++) {
    const v = (ymax * i) / 5
    parts.push(`<line x1="${L}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#eee"/>`)
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${+v.toPrecision(3)}</text>`)
  }
  for (const v of xs) {
    parts.push(`<line x1="${x(v)}" y1="${T}" x2="${x(v)}" y2="${H - B}" stroke="#f4f4f4"/>`)
    parts.push(`<text x="${x(v)}" y="${H - B + 18}" text-anchor="middle">${esc(xTick(v))}</text>`)
  }
  series.forEach((s, i) => {
    const pts = s.points.filter(([, v]) => Number.isFinite(v))
    const dash = s.dashed ? ' stroke-dasharray="5 4"' : ''
    parts.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${pts.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`,
    )
    for (const [a, b] of pts)
      parts.push(`<circle cx="${x(a).toFixed(1)}" cy="${y(b).toFixed(1)}" r="3" fill="${s.color}"/>`)
    const ly = T + 6 + i * 20
    parts.push(
      `<line x1="${W - R + 16}" y1="${ly}" x2="${W - R + 40}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`,
    )
    parts.push(`<text x="${W - R + 46}" y="${ly + 4}">${esc(s.label)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n')
}
