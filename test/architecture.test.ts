/**
 * The shape of the code, checked: the core imports no socket library (only src/node knows `ws`),
 * the browser client imports nothing from Node, and no source file outgrows one sitting.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'

const root = path.join(__dirname, '..', 'src')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name)
    return statSync(full).isDirectory() ? files(full) : full.endsWith('.ts') ? [full] : []
  })
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/^(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1] as string)
}

describe('architecture', () => {
  it('src/core imports no socket library and nothing outside the core', () => {
    for (const file of files(path.join(root, 'core'))) {
      for (const spec of importsOf(file)) {
        expect([file, spec]).not.toEqual([file, expect.stringMatching(/^(ws|node:net|net|node:tls|tls)$/)])
        expect([file, spec]).not.toEqual([file, expect.stringMatching(/^\.\.\//)])
      }
    }
  })

  it('only src/node imports ws', () => {
    for (const file of files(root)) {
      if (file.startsWith(path.join(root, 'node'))) continue
      expect([file, importsOf(file)]).not.toEqual([file, expect.arrayContaining(['ws'])])
    }
  })

  it('the browser client, React and TanStack entries import nothing from Node', () => {
    for (const dir of ['client', 'react', 'tanstack']) {
      for (const file of files(path.join(root, dir))) {
        for (const spec of importsOf(file))
          expect([file, spec]).not.toEqual([file, expect.stringMatching(/^node:/)])
      }
    }
  })

  it('no source file is over 400 lines', () => {
    const long = files(root)
      .map((file) => [path.relative(root, file), readFileSync(file, 'utf8').split('\n').length] as const)
      .filter(([, lines]) => lines > 400)
    expect(long).toEqual([])
  })
})
