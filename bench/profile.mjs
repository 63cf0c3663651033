// Summarizes a V8 CPU profile (.cpuprofile, as written by `node --cpu-prof` or by the inspector's
// Profiler, which is what bench/server.mjs uses around the measured windows): where the non-idle
// time goes, by self time per function, by package, and inclusive time of a few hot-path functions.
// Standalone: `node bench/profile.mjs <file.cpuprofile>`.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

function packageOf(url, functionName) {
  if (functionName === '(garbage collector)') return 'GC'
  if (functionName === '(program)') return '(program: native, unattributed)'
  if (!url) return 'native (C++ bindings, builtins)'
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (m) return m[1]
  if (url.includes('/dist/')) return 'listenjs (dist)'
  if (url.includes('/bench/')) return 'bench app code'
  if (url.startsWith('node:')) {
    if (/net|stream|tcp|handle/.test(url)) return 'node: net + streams'
    return 'node: other'
  }
  return url
}

/** Reads one profile or several (summed) and returns the summary as plain data. */
export function summarizeProfile(fileOrFiles, { top = 25 } = {}) {
  const files = Array.isArray(fileOrFiles) ? fileOrFiles : [fileOrFiles]
  const acc = { self: new Map(), inclusive: new Map(), byPackage: new Map(), total: 0, idle: 0 }
  for (const file of files) addProfile(acc, JSON.parse(readFileSync(file, 'utf8')))
  const { self, inclusive, byPackage, total, idle } = acc
  const sorted = (m) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: us / 1000, share: us / total }))
  return {
    windows: files.length,
    totalMs: total / 1000,
    idleMs: idle / 1000,
    self: sorted(self).slice(0, top),
    packages: sorted(byPackage),
    inclusive: sorted(inclusive)
      .filter((e) => !/^\((root|program)\)/.test(e.name))
      .slice(0, top * 2),
  }
}

function addProfile(acc, profile) {
  const { self, inclusive, byPackage } = acc
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const keyOf = (n) => {
    const { functionName, url, lineNumber } = n.callFrame
    const short = url
      ? `${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(dist|bench)\//, '$1/')}:${lineNumber + 1}`
      : ''
    return `${functionName || '(anonymous)'}${short ? ` ${short}` : ''}`
  }
  const { samples, timeDeltas } = profile
  for (let i = 0; i < samples.length; i++) {
    const dt = timeDeltas[i + 1] ?? 0 // the delta that follows a sample is the time spent in it
    const node = nodes.get(samples[i])
    if (!node) continue
    if (node.callFrame.functionName === '(idle)') {
      acc.idle += dt
      continue
    }
    acc.total += dt
    const key = keyOf(node)
    self.set(key, (self.get(key) ?? 0) + dt)
    const pkg = packageOf(node.callFrame.url, node.callFrame.functionName)
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + dt)
    const seen = new Set()
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf(nodes.get(id))
      if (seen.has(k)) continue
      seen.add(k)
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt)
    }
  }
}

/** The summary as text. */
export function formatProfile(summary) {
  const pct = (s) => `${(s * 100).toFixed(1).padStart(5)} %`
  const lines = [
    `non-idle time: ${summary.totalMs.toFixed(0)} ms over ${summary.windows} window(s), ${(summary.totalMs / summary.windows).toFixed(1)} ms per window`,
    '',
    'by package (self time):',
  ]
  for (const p of summary.packages)
    lines.push(`  ${pct(p.share)}  ${p.ms.toFixed(1).padStart(8)} ms  ${p.name}`)
  lines.push('', 'top functions by self time:')
  for (const f of summary.self) lines.push(`  ${pct(f.share)}  ${f.ms.toFixed(1).padStart(8)} ms  ${f.name}`)
  lines.push('', 'top functions by inclusive time:')
  for (const f of summary.inclusive)
    lines.push(`  ${pct(f.share)}  ${f.ms.toFixed(1).padStart(8)} ms  ${f.name}`)
  return lines.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2)
  if (!files.length) {
    console.error('usage: node bench/profile.mjs <file.cpuprofile>…')
    process.exit(1)
  }
  console.log(`${files.map((f) => path.basename(f)).join(', ')}\n${formatProfile(summarizeProfile(files))}`)
}
