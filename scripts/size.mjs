// Measures the browser client as an app would ship it: bundled, minified, gzipped.
// Exits 1 when the gzipped size is over the budget.
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const BUDGET = 4096

const result = await build({
  entryPoints: [fileURLToPath(new URL('../src/client/index.ts', import.meta.url))],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  write: false,
  logLevel: 'error',
})
const code = result.outputFiles[0].contents
const gzipped = gzipSync(code, { level: 9 }).length
console.log(`client bundle: ${code.length} B minified, ${gzipped} B gzipped (budget ${BUDGET} B)`)
if (gzipped > BUDGET) {
  console.error(`client bundle is ${gzipped - BUDGET} B over budget`)
  process.exit(1)
}
