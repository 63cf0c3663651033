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

/**
 * Whether to colour the diff, from the environment and whether stdout is a TTY. `FORCE_COLOR` decides
 * when it is set, as for Node and chalk: colours even when piped and over `NO_COLOR`, but none for `0`
 * or `false`. Otherwise a non-empty `NO_COLOR` (https://no-color.org) turns them off, and a TTY on.
 */
export function colorOf(env: Readonly<Record<string, string | undefined>>, tty: boolean): boolean {
  const force = env.FORCE_COLOR
  if (force !== undefined) return force !== '0' && force !== 'false'
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  return tty
}

/** What {@link tail} needs; the command line's options, parsed and checked. */
export interface TailOptions {
  /** The hub's WebSocket endpoint (`ws://` or `wss://`). */
  readonly endpoint: string
  /** The paths to listen to (at least one). */
  readonly paths: readonly string[]
  readonly format: TailFormat
  /** Colour the diff's lines (a TTY stdout and no `NO_COLOR`, or `FORCE_COLOR`; see `--help`). */
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

    // The client warns once on the console when a socket cannot open. This command says why on its
    // own status lines (`reconnecting… (endpoint_not_found, HTTP 404)` or `gave up: …`), so that
    // warning (it starts with the message of `client.error()`) is not printed twice; any other goes
    // through.
    const restoreWarn = dropWarnings((first) => {
      const why = client.error()
      return why !== undefined && typeof first === 'string' && first.startsWith(why.message)
    })

    const finish = (code: number): void => {
      if (finished) return
      finished = true
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      stopStatus()
      client.close()
      restoreWarn()
      resolve(code)
    }
    const onSignal = (): void => finish(ExitCode.Ok)
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)

    // `closed` is said by the give-up message (or is ours, on finish).
    const stopStatus = client.onStatus((status, error) => {
      if (status === 'closed') return
      const label =
        status === 'open'
          ? 'open'
          : status === 'connecting'
            ? `connecting to ${shown(options.endpoint)}…`
            : `${status}…`
      output.err(`listenjs: ${label}${reason(error)}\n`)
    })

    const onError = (error: ListenjsError): void => {
      if (finished) return
      if (error.code === 'closed') {
        output.err(`listenjs: gave up: ${error.message}${reason(client.error())}\n`)
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

/**
 * Makes `console.warn` drop the warnings whose first argument `drop` picks; returns the function that
 * puts the console's own back (unless `console.warn` was replaced again since).
 */
function dropWarnings(drop: (first: unknown) => boolean): () => void {
  /* eslint-disable no-console -- the command owns its process's console while it runs */
  const original = console.warn
  const filtered = (...args: unknown[]): void => {
    if (!drop(args[0])) original(...args)
  }
  console.warn = filtered
  return () => {
    if (console.warn === filtered) console.warn = original
  }
  /* eslint-enable no-console */
}

/** ` (code, HTTP status)` of why sockets cannot open; '' when they can. */
function reason(error: ListenjsError | undefined): string {
  return error ? ` (${error.code}${error.status ? `, HTTP ${error.status}` : ''})` : ''
}

/** `endpoint` without credentials or query, to be printed. */
function shown(endpoint: string): string {
  const url = new URL(endpoint)
  return `${url.protocol}//${url.host}${url.pathname}`
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
