/**
 * `listenjs tail`: listens to paths through the Node client and prints each state they take, as
 * pretty JSON, as a line diff against the path's previous state, or as one JSON line per state.
 * Connection statuses and refusals go to stderr; stdout carries the states only.
 */
import { createClient } from '../client'
import type { ListenjsError, Meta } from '../client'
import { wsWithHeaders } from '../node/ws-client'

/** The exit codes of the `listenjs` command (documented in `--help`). */
export const ExitCode = {
  /** Closed on SIGINT/SIGTERM, or `--count` states printed. */
  Ok: 0,
  /** Bad usage: unknown option, missing url or path, a malformed value. */
  Usage: 1,
  /** A path was refused (`unauthorized`, `not_found`, `failed`, `bad_path`, `limit`, `bad_message`). */
  Refused: 2,
  /** The client gave up: the connection closed for good (`--retries` exhausted, or a `never` close). */
  GaveUp: 3,
} as const

/** How states are printed: a header and pretty JSON, a line diff after the first, or JSON lines. */
export type TailFormat = 'pretty' | 'diff' | 'json'

/** What {@link tail} needs; the command line's options, parsed and checked. */
export interface TailOptions {
  /** The hub's WebSocket endpoint (`ws://` or `wss://`). */
  readonly endpoint: string
  /** The paths to listen to (at least one). */
  readonly paths: readonly string[]
  readonly format: TailFormat
  /** Colour the diff's lines (stdout is a TTY and `NO_COLOR` is unset). */
  readonly color: boolean
  /** The client's `auth` option. */
  readonly token?: string
  /** Headers sent on each WebSocket upgrade (cookies included, as `Cookie`). */
  readonly headers: Readonly<Record<string, string>>
  /** Stop with exit code 0 after this many states in total. */
  readonly count?: number
  /** Reconnect attempts before giving up. @default Infinity */
  readonly retries?: number
}

/** Where the command writes; `process.stdout`/`process.stderr` by default. */
export interface TailOutput {
  out(text: string): void
  err(text: string): void
}

const processOutput: TailOutput = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
}

/**
 * Runs the command until SIGINT/SIGTERM, `count` states, a refused path or the client giving up, then
 * closes the client and removes its signal handlers. Resolves with the {@link ExitCode} to exit with;
 * the caller exits (this never calls `process.exit`).
 */
export function tail(options: TailOptions, output: TailOutput = processOutput): Promise<number> {
  return new Promise((resolve) => {
    const client = createClient({
      url: options.endpoint,
      WebSocket: wsWithHeaders(options.headers),
      auth: options.token,
      reconnect: { retries: options.retries ?? Infinity },
    })
    const previous = new Map<string, string>()
    let states = 0
    let finished = false

    const finish = (code: number): void => {
      if (finished) return
      finished = true
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      stopStatus()
      client.close()
      resolve(code)
    }
    const onSignal = (): void => finish(ExitCode.Ok)
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)

    // `closed` is said by the give-up message (or is ours, on finish).
    const stopStatus = client.onStatus((status, error) => {
      if (status === 'closed') return
      const label = status === 'open' ? 'open' : `${status}…`
      const why = error && ` (${error.code}${error.status ? `, HTTP ${error.status}` : ''})`
      output.err(`listenjs: ${label}${why ?? ''}\n`)
    })

    const onError = (error: ListenjsError): void => {
      if (finished) return
      if (error.code === 'closed') {
        const why = client.error()
        const detail = why ? ` (${why.code}${why.status ? `, HTTP ${why.status}` : ''})` : ''
        output.err(`listenjs: gave up: ${error.message}${detail}\n`)
        finish(ExitCode.GaveUp)
        return
      }
      const status = error.status === undefined ? '' : ` (HTTP ${error.status})`
      output.err(`listenjs: ${error.path ?? ''} refused: ${error.code}${status}: ${error.message}\n`)
      finish(ExitCode.Refused)
    }

    for (const path of options.paths) {
      client.listen(
        path,
        (data, meta) => {
          if (finished) return
          output.out(render(options, previous, data, meta))
          if (options.count !== undefined && ++states >= options.count) finish(ExitCode.Ok)
        },
        {
          onError,
          onGone: (info) => output.err(`listenjs: ${info.path} gone (HTTP ${info.status})\n`),
        },
      )
    }
  })
}

/** The text of one state in `options.format`; records its pretty JSON in `previous`. */
function render(options: TailOptions, previous: Map<string, string>, data: unknown, meta: Meta): string {
  if (options.format === 'json') {
    return JSON.stringify({ path: meta.path, kind: meta.kind, version: meta.version, data }) + '\n'
  }
  const header = `${new Date().toISOString()} ${meta.path} ${meta.kind} ${meta.version}\n`
  const body = typeof data === 'string' ? data : (JSON.stringify(data, null, 2) ?? String(data))
  const before = previous.get(meta.path)
  previous.set(meta.path, body)
  if (options.format === 'pretty' || before === undefined) return `${header}${body}\n`
  const lines = diffLines(before.split('\n'), body.split('\n')).map(([sign, line]) => {
    const text = `${sign}${line}`
    if (!options.color) return text
    return `${sign === '-' ? '\x1b[31m' : '\x1b[32m'}${text}\x1b[39m`
  })
  return header + lines.map((line) => line + '\n').join('')
}

/** Above this many cells the diff's table is not built: every changed line is removed then added. */
const MAX_DIFF_CELLS = 4_000_000

/**
 * The lines removed from `before` (`-`) and added in `after` (`+`), in order, from a longest common
 * subsequence of the lines between the common prefix and suffix. Unchanged lines are left out.
 */
export function diffLines(before: string[], after: string[]): Array<['-' | '+', string]> {
  let start = 0
  while (start < before.length && start < after.length && before[start] === after[start]) start++
  let endBefore = before.length
  let endAfter = after.length
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore--
    endAfter--
  }
  const removed = before.slice(start, endBefore)
  const added = after.slice(start, endAfter)
  const all = (): Array<['-' | '+', string]> => [
    ...removed.map((line): ['-', string] => ['-', line]),
    ...added.map((line): ['+', string] => ['+', line]),
  ]
  if (removed.length === 0 || added.length === 0 || removed.length * added.length > MAX_DIFF_CELLS)
    return all()
  // common[i * width + j]: length of the longest common subsequence of removed[i..] and added[j..].
  const width = added.length + 1
  const common = new Uint32Array((removed.length + 1) * width)
  const at = (i: number, j: number): number => common[i * width + j] ?? 0
  for (let i = removed.length - 1; i >= 0; i--) {
    for (let j = added.length - 1; j >= 0; j--) {
      common[i * width + j] =
        removed[i] === added[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1))
    }
  }
  const result: Array<['-' | '+', string]> = []
  let i = 0
  let j = 0
  while (i < removed.length || j < added.length) {
    if (i < removed.length && j < added.length && removed[i] === added[j]) {
      i++
      j++
    } else if (j >= added.length || (i < removed.length && at(i + 1, j) >= at(i, j + 1))) {
      result.push(['-', removed[i++] ?? ''])
    } else {
      result.push(['+', added[j++] ?? ''])
    }
  }
  return result
}
