// npm run bench:replay: bundles bench/replay-harness.ts and bench/push-harness.ts (they import the
// TypeScript sources) and runs them.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
// Each harness in a process of its own, one after the other.
for (const harness of ['replay-harness', 'push-harness']) {
  const outfile = path.join(root, '.tmp', `bench-${harness}.cjs`)
  await build({
    entryPoints: [path.join(root, 'bench', `${harness}.ts`)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    packages: 'external',
    logLevel: 'warning',
  })
  const run = spawnSync(process.execPath, ['--expose-gc', outfile], { stdio: 'inherit', cwd: root })
  if (run.status !== 0) process.exit(run.status ?? 1)
}
