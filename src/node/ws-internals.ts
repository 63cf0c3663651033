/**
 * Everything listenjs uses of `ws` beyond its documented API, in one place, each with a fallback
 * through the public API. `test/ws-internals.test.ts` fails loudly when a `ws` release changes them.
 *
 * - `Sender.frame` (exported by ws, not declared by @types/ws): builds a frame's bytes once, so one
 *   state is framed once however many sockets it goes to.
 * - `WebSocket#_socket` (private): the TCP socket, so a pre-framed buffer is written as it is and
 *   its `drain` tells when a full socket can take more. Its `writableLength` is then what
 *   `ws.bufferedAmount` reports: ws adds what its sender holds back, and its sender holds nothing
 *   back without compression (off on the hub's sockets) or Blob data (never sent by the hub).
 */
import type { Socket } from 'node:net'
import * as wsModule from 'ws'
import type { WebSocket } from 'ws'

type FrameBuilder = (
  data: Buffer,
  options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean },
) => Buffer[]

const sender = (wsModule as unknown as { Sender?: { frame?: unknown } }).Sender
/** ws's frame builder, or undefined when this ws version does not export it. */
export const frameBuilder: FrameBuilder | undefined =
  typeof sender?.frame === 'function' ? (sender.frame as FrameBuilder).bind(sender) : undefined

/**
 * A text frame as it goes on the wire from a server (unmasked, header and payload in one buffer),
 * or undefined without {@link frameBuilder}.
 */
export function textFrame(payload: Buffer): Buffer | undefined {
  if (!frameBuilder) return undefined
  return Buffer.concat(
    frameBuilder(payload, { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false }),
  )
}

/**
 * The TCP socket under `ws`, when this ws version keeps it where listenjs expects (and frames can be
 * built): writing to it directly is then safe. Otherwise undefined, and frames go through `ws.send`.
 */
export function rawSocketOf(ws: WebSocket): Socket | undefined {
  if (!frameBuilder) return undefined
  const raw = (ws as unknown as { _socket?: unknown })._socket
  return raw !== null && typeof raw === 'object' && typeof (raw as Socket).write === 'function'
    ? (raw as Socket)
    : undefined
}
