/**
 * The shape of the code, checked: the core imports no socket library (only src/node knows `ws`),
 * the browser client imports nothing from Node, OpenTelemetry is loaded by `listenjs/otel` only (in
 * the sources and in the built chunks), and no source file outgrows one sitting.
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

  it('only src/otel imports OpenTelemetry, and nothing imports the command line', () => {
    for (const file of files(root)) {
      const specs = importsOf(file)
      if (!file.startsWith(path.join(root, 'otel')))
        expect([file, specs]).not.toEqual([
          file,
          expect.arrayContaining([expect.stringMatching(/^@opentelemetry\//)]),
        ])
      if (!file.startsWith(path.join(root, 'cli')))
        expect([file, specs]).not.toEqual([
          file,
          expect.arrayContaining([expect.stringMatching(/\/cli(\/|$)/)]),
        ])
    }
  })

  it('the built entries other than listenjs/otel load no OpenTelemetry, whatever chunks they share', () => {
    const dist = path.join(__dirname, '..', 'dist')
    /** Every module an ES module of dist loads, itself included, followed through its chunks. */
    const loaded = (file: string, seen = new Set<string>()): Set<string> => {
      if (seen.has(file)) return seen
      seen.add(file)
      const text = readFileSync(path.join(dist, file), 'utf8')
      for (const [, spec] of text.matchAll(/(?:from|import)\s*"([^"]+)"/g)) {
        if (spec?.startsWith('./')) loaded(spec.slice(2), seen)
        else if (spec) seen.add(spec)
      }
      return seen
    }
    const entries = readdirSync(dist).filter((name) => name.endsWith('.js') && !name.startsWith('chunk-'))
    expect(entries).toEqual(expect.arrayContaining(['index.js', 'otel.js', 'fastify.js', 'client.js']))
    for (const entry of entries) {
      const modules = [...loaded(entry)]
      const otel = modules.filter((spec) => spec.startsWith('@opentelemetry/'))
      expect([entry, otel]).toEqual([entry, entry === 'otel.js' ? ['@opentelemetry/api'] : []])
    }
  })

  it('no source file is over 400 lines', () => {
    const long = files(root)
      .map((file) => [path.relative(root, file), readFileSync(file, 'utf8').split('\n').length] as const)
      .filter(([, lines]) => lines > 400)
    expect(long).toEqual([])
  })
})
