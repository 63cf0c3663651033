// npm run bench:replay: bundles bench/replay-harness.ts (it imports the TypeScript sources) and runs it.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const outfile = path.join(root, '.tmp', 'bench-replay.cjs')
await build({
  entryPoints: [path.join(root, 'bench', 'replay-harness.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  packages: 'external',
  logLevel: 'warning',
})
const run = spawnSync(process.execPath, [outfile], { stdio: 'inherit', cwd: root })
process.exit(run.status ?? 1)
