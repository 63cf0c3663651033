// Measures the browser client as an app would ship it: bundled, minified, gzipped (esbuild, ESM,
// level-9 gzip). Exits 1 when the client is over its budget. Also measures, the same way, the React
// and TanStack entries (without React or TanStack, which the app already has) and socket.io-client,
// for the comparison in the README.
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const BUDGET = 4096
const here = (file) => fileURLToPath(new URL(file, import.meta.url))

/** Minified and gzipped bytes of a bundle of `contents` (an ES module importing what it measures). */
async function measure(contents, external = []) {
  const result = await build({
    stdin: { contents, resolveDir: here('..'), loader: 'ts' },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    write: false,
    external,
    logLevel: 'error',
  })
  const code = result.outputFiles[0].contents
  return { minified: code.length, gzipped: gzipSync(code, { level: 9 }).length }
}

const line = (name, { minified, gzipped }, extra = '') =>
  console.log(
    `${name.padEnd(34)} ${String(minified).padStart(6)} B minified, ${String(gzipped).padStart(5)} B gzipped${extra}`,
  )

const client = await measure(`export * from './src/client/index.ts'`)
line('listenjs/client', client, ` (budget ${BUDGET} B)`)
line(
  'listenjs/client + listenjs/client/patches',
  await measure(`export * from './src/client/index.ts'; export * from './src/client/patches.ts'`),
)
line(
  'listenjs/client + listenjs/client/http',
  await measure(`export * from './src/client/index.ts'; export * from './src/client/http.ts'`),
)
line(
  'listenjs/client + listenjs/client/tabs',
  await measure(`export * from './src/client/index.ts'; export * from './src/client/tabs.ts'`),
)
line(
  'listenjs/client + listenjs/react',
  await measure(`export * from './src/client/index.ts'; export * from './src/react/index.ts'`, ['react']),
)
line(
  'listenjs/client + listenjs/tanstack',
  await measure(`export * from './src/client/index.ts'; export * from './src/tanstack/index.ts'`, [
    '@tanstack/query-core',
  ]),
)
line('socket.io-client (io)', await measure(`export { io } from 'socket.io-client'`))

if (client.gzipped > BUDGET) {
  console.error(`the client bundle is ${client.gzipped - BUDGET} B over budget`)
  process.exit(1)
}
