/**
 * Last states, for patches (`listenjs.v1.1`). While a group has a member that takes patches, its last
 * JSON body is kept, within `patches.memoryBytes` for the whole hub; the next change then goes to
 * each member that holds it as an RFC 6902 JSON Patch from it, with the checksum of the new state,
 * computed and framed once for the group (and once more, tagged, for the writer's connection).
 * A body that is not JSON, shorter than `patches.minBytes` or past the budget is not kept, and a
 * change whose patch is over half the new body goes as a full state: so does everything for members
 * holding another version, and for v1 sockets.
 */
import { checksum } from './checksum'
import { diff } from './diff'
import { isJsonType, patchFrame } from './frames'
import type { PatchOptions } from './options'
import type { Group } from './registry'

/** A group's last state: what its members that take patches were sent last. */
export interface LastState {
  readonly version: string
  readonly body: string
  /** The start number of the replay that answered it: an older answer never replaces it. */
  readonly seq: number
}

/** A patch from a group's last state to a new one, for the members that hold `from`. */
export interface Patch {
  /** The version it applies to. */
  readonly from: string
  /**
   * The `patch` frame (tagged with `origin` when given), computed on first use; `undefined` when the
   * full state is the better frame (no patch, or a patch over half its size).
   */
  frame(origin?: string): Buffer | undefined
}

interface Built {
  readonly ops: string
  readonly sum: number
}

export class States {
  /** Characters of last states kept now. */
  bytes = 0
  /** Patches computed (once per group and change), and those that went as full states instead. */
  computed = 0
  declined = 0

  constructor(private readonly options: PatchOptions | false) {}

  /**
   * Keeps `body` (version `version`, answered by replay `seq`) as the last state of `group`, in
   * place of an older one, when `patches` says a member takes patches and the rules above allow it;
   * otherwise the group keeps none.
   */
  keep(
    group: Group,
    version: string,
    body: string,
    contentType: string | undefined,
    seq: number,
    patches: boolean,
  ): void {
    const { last } = group
    if (last !== undefined && (last.seq > seq || last.version === version)) return
    this.release(group)
    const { options } = this
    if (!patches || options === false || body.length < options.minBytes) return
    if (this.bytes + body.length > options.memoryBytes || !isJsonType(contentType)) return
    group.last = { version, body, seq }
    this.bytes += body.length
  }

  /** Forgets `group`'s last state (it is gone, or has no member left). */
  release(group: Group): void {
    if (group.last === undefined) return
    this.bytes -= group.last.body.length
    group.last = undefined
  }

  /** The patch from `group`'s last state to `body` (version `version`) of `path`, if it has one. */
  patch(group: Group, path: string, version: string, body: string): Patch | undefined {
    const { last } = group
    if (last === undefined || last.version === version) return undefined
    let built: Built | null | undefined
    let plain: Buffer | undefined
    return {
      from: last.version,
      frame: (origin) => {
        if (built === undefined) built = this.build(last.body, body)
        if (built === null) return undefined
        if (origin !== undefined) return patchFrame(path, version, last.version, built.sum, built.ops, origin)
        return (plain ??= patchFrame(path, version, last.version, built.sum, built.ops))
      },
    }
  }

  /** The ops from `before` to `after` and the checksum of `after`, or null when a full state is better. */
  private build(before: string, after: string): Built | null {
    this.computed++
    try {
      const next: unknown = JSON.parse(after)
      const ops = diff(JSON.parse(before), next)
      const json = ops && JSON.stringify(ops)
      if (json !== undefined && json.length * 2 <= after.length) return { ops: json, sum: checksum(next) }
    } catch {
      // Not one JSON value after all (the frame carries it as text): a full state.
    }
    this.declined++
    return null
  }
}
