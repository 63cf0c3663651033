/**
 * Fuzzing the hub's message handling over real sockets (issue 4). FUZZ_FRAMES generated frames
 * (default 1,000; `npm run fuzz` sends 10,000) go to one hub with default limits, many frames per
 * socket and many sockets: random JSON, protocol types with wrong fields, huge numbers, deep nesting,
 * strings around `limits.messageBytes`, binary frames, bytes that are not UTF-8, fragments, floods,
 * `__proto__` keys and paths, and frame-level garbage after a real upgrade.
 *
 * Every frame is checked against a model written from PROTOCOL.md (test/helpers/fuzz.ts): a valid
 * message keeps the socket open with its documented answer (snapshot, `bad_path`, `not_found`,
 * `unauthorized`, nothing for `pong`/`unsubscribe`, re-checks after `auth`); any other frame closes
 * the socket with its documented code (4400 after a `bad_message` error, 1009, 1007, 4429).
 *
 * FUZZ_SEED=<n> replays a run (the seed is printed in the summary line and in every failure).
 */
import fc from 'fast-check'
import WebSocket from 'ws'
import { DEFAULTS } from '../src/core/options'
import {
  classify,
  closeCodeIn,
  describeFrame,
  frameArb,
  frameBytes,
  fuzzHandler,
  FuzzSocket,
  GOOD_PATH,
  rawUpgrade,
  type FuzzFrame,
} from './helpers/fuzz'
import { closeAll, connect, plain, until, type Plain } from './helpers/plain'

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 1000)
const SEED = process.env.FUZZ_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.FUZZ_SEED)
const LIMITS = DEFAULTS.limits
/** A socket is closed by the fuzz (1000) after this many messages, far below `limits.messageBurst`. */
const MESSAGES_PER_SOCKET = 300
/** Frames per batch: sent back to back, then the socket is settled (every owed answer checked). */
const BATCH = { minLength: 1, maxLength: 16 }

afterEach(closeAll)

/** Everything own on the built-in prototypes, to compare before and after. */
function prototypeShape(): string {
  return JSON.stringify(
    [Object.prototype, Array.prototype, Function.prototype, String.prototype].map((proto) =>
      Object.getOwnPropertyNames(proto)
        .sort()
        .map((name) => {
          const d = Object.getOwnPropertyDescriptor(proto, name) as PropertyDescriptor
          return [name, typeof d.value, typeof d.get, d.enumerable, d.writable]
        }),
    ),
  )
}

/** Counts by key, printed as `key×n`. */
class Tally extends Map<string, number> {
  add(key: string | number, n = 1): void {
    this.set(String(key), (this.get(String(key)) ?? 0) + n)
  }
  override toString(): string {
    return [...this.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k}×${n}`)
      .join(' ')
  }
}

it(
  `keeps the hub up and every bad socket closed with its documented code, over ${FRAMES} fuzzed frames`,
  async () => {
    const started = Date.now()
    const app: Plain = await plain(fuzzHandler)
    const idle = (): Promise<void> =>
      until(() => {
        const s = app.hub.stats()
        return s.replaysInFlight === 0 && s.replaysQueued === 0
      }, 5000)
    const shapeBefore = prototypeShape()

    // A good client, subscribed all along; it must still get pushes at the end.
    const good = await connect(app.wsUrl)
    good.subscribe(GOOD_PATH)
    expect(await good.next()).toMatchObject({ type: 'data', path: GOOD_PATH, snapshot: true })
    let pushes = 0
    const checkGood = async (): Promise<void> => {
      app.hub.notify(GOOD_PATH, { push: ++pushes })
      expect(await good.nextOf('data', 5000)).toMatchObject({ path: GOOD_PATH, json: { push: pushes } })
    }

    const kinds = new Tally()
    const closes = new Tally()
    const answers = new Tally()
    let frames = 0
    let sockets = 0
    let rawSockets = 0
    let batches = 0
    let socket: FuzzSocket | undefined
    let batch: FuzzFrame[] = []

    const fail = (problems: readonly string[], frame?: FuzzFrame): never => {
      throw new Error(
        [
          `fuzz failure (FUZZ_SEED=${SEED}, batch ${batches}, frame ${frames})`,
          ...problems.map((p) => `  - ${p}`),
          frame ? `  frame: ${describeFrame(frame)}` : '',
          '  batch:',
          ...batch.map((f) => `    ${describeFrame(f)}`),
        ].join('\n'),
      )
    }
    const collect = (s: FuzzSocket): void => {
      for (const [label, n] of s.answers) answers.add(label, n)
      s.answers.clear()
      if (s.problems.length > 0) fail(s.problems)
    }

    /** Waits for every answer owed to `s` (see FuzzSocket.settle), failing with the batch on a problem. */
    const settle = async (s: FuzzSocket): Promise<void> => {
      try {
        await s.settle(idle)
      } catch (error) {
        fail([String(error), ...s.problems])
      }
    }

    const openSocket = async (): Promise<FuzzSocket> => {
      sockets++
      return FuzzSocket.open(WebSocket, app.wsUrl, LIMITS)
    }

    /** Garbage after a real upgrade: the server must close the connection, and keep nothing of it. */
    const runRaw = async (frame: Extract<FuzzFrame, { kind: 'raw' }>): Promise<void> => {
      rawSockets++
      const { socket: tcp, head } = await rawUpgrade(Number(new URL(app.url).port))
      const received: Buffer[] = [head]
      tcp.on('data', (chunk: Buffer) => received.push(chunk))
      tcp.on('error', () => {})
      const closed = new Promise<void>((resolve) => tcp.once('close', () => resolve()))
      tcp.write(Buffer.from(frame.bytes))
      tcp.end()
      let timer: NodeJS.Timeout | undefined
      const ended = await Promise.race([
        closed.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 5000))),
      ])
      clearTimeout(timer)
      if (!ended) {
        tcp.destroy()
        fail(['the server kept a connection open after garbage and the client’s FIN'], frame)
      }
      const code = closeCodeIn(Buffer.concat(received))
      closes.add(`raw:${code ?? 'none'}`)
      // A close frame in the garbage is echoed with its own code; otherwise only protocol-error codes.
      const echoed = frame.bytes.length > 0 && ((frame.bytes[0] as number) & 0x0f) === 0x8
      if (!echoed && code !== undefined && ![1002, 1007, 1009, 4400, 4429].includes(code))
        fail([`garbage closed with ${code}`], frame)
    }

    const arb = fc.array(frameArb(LIMITS.messageBytes), BATCH)
    let chunk = 0
    try {
      while (frames < FRAMES) {
        for (batch of fc.sample(arb, { numRuns: 50, seed: SEED + chunk++ })) {
          if (frames >= FRAMES) break
          batches++
          for (const frame of batch.slice(0, FRAMES - frames)) {
            frames++
            kinds.add(frame.label)
            if (frame.kind === 'raw') {
              await runRaw(frame)
              continue
            }
            if (socket && socket.messages >= MESSAGES_PER_SOCKET) {
              // Well used: close it (1000) and go on with a fresh one.
              socket.ws.close(1000)
              closes.add((await socket.closed).code)
              collect(socket)
              socket = undefined
            }
            socket ??= await openSocket()
            const data = frameBytes(frame)
            const outcome =
              data === undefined
                ? ({ kind: 'close', code: 4429 } as const)
                : classify(data.bytes, data.binary, LIMITS.messageBytes)
            // `auth` re-checks every subscription held: settle first, so that none is pending.
            if (outcome.kind === 'message' && outcome.message.type === 'auth') await settle(socket)
            await socket.send(frame, LIMITS.messageBurst)
            if (outcome.kind === 'message') {
              socket.apply(outcome.message)
              continue
            }
            socket.closing(outcome.code)
            let timer: NodeJS.Timeout | undefined
            const closed = await Promise.race([
              socket.closed,
              new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 5000))),
            ])
            clearTimeout(timer)
            if (closed === undefined) fail([`the socket was not closed (expected ${outcome.code})`], frame)
            else if (closed.code !== outcome.code)
              fail([`closed with ${closed.code} (${closed.reason}), expected ${outcome.code}`], frame)
            closes.add(outcome.code)
            socket.problems.push(...socket.missing())
            collect(socket)
            socket = undefined
            break // the rest of the batch is not sent
          }
          if (socket) {
            await settle(socket)
            collect(socket)
          }
          if (batches % 25 === 0) await checkGood()
        }
      }
      if (socket) {
        socket.ws.close(1000)
        closes.add((await socket.closed).code)
        collect(socket)
        socket = undefined
      }

      // The server is up: the good client still gets pushes.
      await checkGood()
      // Nothing of the fuzz sockets is left: one connection and one subscription, the good client's.
      await until(() => {
        const s = app.hub.stats()
        return s.connections === 1 && s.subscriptions === 1 && s.resources === 1
      }, 5000).catch(() => undefined)
      const stats = app.hub.stats()
      expect({
        connections: stats.connections,
        subscriptions: stats.subscriptions,
        resources: stats.resources,
      }).toEqual({ connections: 1, subscriptions: 1, resources: 1 })
      expect(stats.replaysInFlight + stats.replaysQueued).toBe(0)
      // No prototype was polluted, by keys or by paths.
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false)
      expect(prototypeShape()).toBe(shapeBefore)
    } finally {
      socket?.ws.terminate()
      const seconds = ((Date.now() - started) / 1000).toFixed(1)
      console.log(
        `fuzz: ${frames} frames in ${batches} batches, ${sockets} sockets + ${rawSockets} raw, ` +
          `closes {${closes.toString()}}, answers {${answers.toString()}}, ` +
          `kinds {${kinds.toString()}}, seed ${SEED}, ${seconds} s`,
      )
    }
  },
  60_000 + FRAMES * 20,
)
