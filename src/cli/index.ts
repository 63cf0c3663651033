#!/usr/bin/env node
/**
 * The `listenjs` command. One subcommand, `tail`: prints the snapshot and every change of paths.
 *
 *     listenjs tail <url> <path…> [--diff | --json] [--token t] [--header 'N: v'] [--cookie a=b]
 *                   [--count n] [--retries n]
 *
 * Exit codes:
 * - 0: closed on SIGINT/SIGTERM, or `--count` states printed;
 * - 1: bad usage (unknown option or command, missing url or path, a malformed value);
 * - 2: a path was refused (`unauthorized`, `not_found`, `failed`, `bad_path`, `limit`), said on stderr
 *   with the code and the HTTP status;
 * - 3: the client gave up (the connection closed for good, e.g. after `--retries` failed attempts).
 */
import { parseArgs } from 'node:util'
import { endpointUrl } from '../node/ws-client'
import { colorOf, ExitCode, tail, type TailOptions } from './tail'

const USAGE = `Usage: listenjs tail <url> <path…> [options]

Prints the current state of GET <path> for each path, then each change.

<url>  the hub endpoint (ws://host/listen, wss://…) or the app's base URL
       (http(s)://host[:port], to which /listen is appended; a URL with
       another path is the endpoint itself)

Options:
  --diff                after a path's first state, print only the changed lines
  --json                one JSON line per state: {"path","kind","version","data"}
  --token <token>       bearer token, sent as the client's auth message
  --header 'Name: v'    a header for the WebSocket upgrade (repeatable)
  --cookie 'a=b'        a cookie for the WebSocket upgrade (repeatable)
  --count <n>           exit (code 0) after n states in total
  --retries <n>         give up after n failed reconnects (default: retry forever)
  -h, --help            print this help

States go to stdout, each as "<time> <path> <kind> <version>" then the body
(pretty JSON, or text as it is). Connection statuses and errors go to stderr.

Colours (the removed and added lines of --diff): when stdout is a TTY, unless
NO_COLOR is set and not empty. FORCE_COLOR forces them, piped or not and over
NO_COLOR; FORCE_COLOR=0 (or false) turns them off.

Exit codes:
  0  closed by SIGINT/SIGTERM, or --count states printed
  1  bad usage
  2  a path was refused (unauthorized, not_found, failed, bad_path, limit)
  3  the client gave up (the connection closed for good)
`

/** A mistake on the command line: said on stderr, exit code 1. */
class UsageError extends Error {}

const OPTIONS = {
  diff: { type: 'boolean' },
  json: { type: 'boolean' },
  token: { type: 'string' },
  header: { type: 'string', multiple: true },
  cookie: { type: 'string', multiple: true },
  count: { type: 'string' },
  retries: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

/**
 * The endpoint a `<url>` argument names: `ws(s)` and `http(s)` URLs whose path is `/` get `/listen`;
 * any other path is the endpoint itself. `http` becomes `ws`.
 * @throws UsageError for anything but an absolute ws(s)/http(s) URL
 */
function endpointOf(argument: string): string {
  try {
    return endpointUrl(argument)
  } catch (error) {
    throw new UsageError(
      error instanceof TypeError && /ws\(s\)/.test(error.message) ? error.message : `not a URL: ${argument}`,
    )
  }
}

/** A whole number >= `min` from option `name`. */
function integer(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined
  const number = Number(value)
  if (!/^\d+$/.test(value) || number < min)
    throw new UsageError(`--${name} must be a whole number >= ${min}, not ${value}`)
  return number
}

/**
 * The options of `listenjs tail` from its arguments (those after `tail`).
 * @throws UsageError naming the wrong option or the missing argument
 */
function parseTail(args: string[]): TailOptions | 'help' {
  let parsed
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help) return 'help'
  const [url, ...paths] = positionals
  if (url === undefined) throw new UsageError('missing <url>')
  if (paths.length === 0) throw new UsageError('missing <path>')
  if (values.diff && values.json) throw new UsageError('--diff and --json exclude each other')
  const headers: Record<string, string> = {}
  for (const header of values.header ?? []) {
    const colon = header.indexOf(':')
    const name = header.slice(0, colon).trim()
    if (colon < 1 || !/^[!#$%&'*+.^`|~\w-]+$/.test(name))
      throw new UsageError(`--header must be 'Name: value', not ${header}`)
    headers[name] = header.slice(colon + 1).trim()
  }
  for (const cookie of values.cookie ?? []) {
    if (!/^[^=;\s]+=/.test(cookie)) throw new UsageError(`--cookie must be 'name=value', not ${cookie}`)
  }
  if (values.cookie?.length) headers.Cookie = [headers.Cookie, ...values.cookie].filter(Boolean).join('; ')
  return {
    endpoint: endpointOf(url),
    paths,
    format: values.diff ? 'diff' : values.json ? 'json' : 'pretty',
    color: colorOf(process.env, !!process.stdout.isTTY),
    token: values.token,
    headers,
    count: integer('count', values.count, 1),
    retries: integer('retries', values.retries, 0),
  }
}

/** Runs the command line `argv` (without `node` and the script); resolves with the exit code. */
async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv
  try {
    if (command === undefined || command === '--help' || command === '-h') {
      process.stdout.write(USAGE)
      return command === undefined ? ExitCode.Usage : ExitCode.Ok
    }
    if (command !== 'tail') throw new UsageError(`unknown command: ${command}`)
    const options = parseTail(args)
    if (options === 'help') {
      process.stdout.write(USAGE)
      return ExitCode.Ok
    }
    return await tail(options)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    process.stderr.write(`listenjs: ${error.message}\nRun 'listenjs --help' for usage.\n`)
    return ExitCode.Usage
  }
}

main(process.argv.slice(2)).then(
  // Exits once stdout is flushed: an open socket or a pending timer must not keep the process alive.
  (code) => process.stdout.write('', () => process.exit(code)),
  (error: unknown) => {
    process.stderr.write(`listenjs: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
    process.exit(ExitCode.Usage)
  },
)
