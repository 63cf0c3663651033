/**
 * The example servers as a user runs them: each started as its own Node process from the built
 * package, on a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'

/** Each example server: a name and its file. */
export const EXAMPLES = [
  ['calendar (Fastify)', 'examples/calendar/server.mjs'],
  ['express', 'examples/express/server.mjs'],
  ['koa', 'examples/koa/server.mjs'],
] as const

/** Starts an example on a free port; resolves with its base URL once it prints it. */
export function startExample(file: string): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [path.join(__dirname, '..', '..', file)], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => reject(new Error(`${file} did not start: ${output}`)), 10_000)
    const read = (chunk: Buffer): void => {
      output += String(chunk)
      const port = /http:\/\/localhost:(\d+)/.exec(output)?.[1]
      if (port) {
        clearTimeout(timer)
        resolve({ child, base: `http://127.0.0.1:${port}` })
      }
    }
    child.stdout?.on('data', read)
    child.stderr?.on('data', read)
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}: ${output}`)))
  })
}
