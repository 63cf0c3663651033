// npm run test:stress: the test suite three times in a row (STRESS_RUNS) while two busy loops occupy
// both cores. Each loop stops by itself after STRESS_MAX_MS (default 20 min) even if this script is
// killed. `--npm-test` runs the README's `npm test` (build included) instead of `npx jest <args>`.
import { spawn, spawnSync } from 'node:child_process'

const runs = Number(process.env.STRESS_RUNS ?? 3)
const maxMs = Number(process.env.STRESS_MAX_MS ?? 20 * 60_000)
const loop = `const end = Date.now() + ${maxMs}; while (Date.now() < end) {}`
const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', loop], { stdio: 'ignore' }))
const stop = () => hogs.forEach((hog) => hog.kill('SIGKILL'))
process.on('exit', stop)
process.on('SIGINT', () => process.exit(130))

let failed = 0
for (let run = 1; run <= runs; run++) {
  const started = Date.now()
  console.log(`== stress run ${run}/${runs} (two busy loops on both cores)`)
  const args = process.argv.slice(2)
  const result = args.includes('--npm-test')
    ? spawnSync('npm', ['test'], { stdio: 'inherit' })
    : spawnSync('npx', ['jest', ...args], { stdio: 'inherit' })
  const seconds = ((Date.now() - started) / 1000).toFixed(0)
  if (result.status !== 0) failed++
  console.log(`== stress run ${run}/${runs}: ${result.status === 0 ? 'passed' : 'FAILED'} in ${seconds} s`)
}
stop()
console.log(`stress: ${runs - failed} of ${runs} runs passed`)
process.exit(failed === 0 ? 0 : 1)
