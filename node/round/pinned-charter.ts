// Which charter a read-only check trusts. A checkpoint directory carries a charter.json, but that
// copy proves nothing: whoever wrote the directory chose it, and a forger ships a charter naming
// themselves as publisher. The charter comes from what the user vouches for: an explicit file, a
// coop id (then a copy whose digest is that id, found in the store or the directory, is the same
// document), or the node store's own charter.json. The directory's copy must then agree.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { verifyCharter, type VerifiedCharter } from '../../protocol/charter.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { CHECKPOINT_FILE_MAX_BYTES } from './constants.ts'
import { RoundError } from './errors.ts'
import { CHECKPOINT_FILES, charterPath } from './layout.ts'

export interface CharterChoice {
  /** An explicit charter file's bytes (`--charter`). */
  charter?: Uint8Array
  /** The coop id the user expects (`--coop`): the sha256 of the charter payload. */
  coopId?: string
  /** A node store whose charter.json the user trusts (`--store`). */
  storeDir?: string
}

export type CharterSource = 'explicit' | 'coop-id' | 'store'

export interface PinnedCharter extends VerifiedCharter {
  source: CharterSource
}

async function readOptional(path: string): Promise<Uint8Array | undefined> {
  try {
    const bytes = new Uint8Array(await readFile(path))
    if (bytes.byteLength > CHECKPOINT_FILE_MAX_BYTES)
      throw new RoundError('BAD_CHARTER', `${path} exceeds ${CHECKPOINT_FILE_MAX_BYTES} bytes`)
    return bytes
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined
    throw err
  }
}

function verified(bytes: Uint8Array, where: string): VerifiedCharter {
  try {
    return verifyCharter(bytes)
  } catch (err) {
    if (isProtocolError(err))
      throw new RoundError('BAD_CHARTER', `${where} does not verify: ${err.code}: ${err.message}`, {
        cause: err,
      })
    throw err
  }
}

/** The charter of a node store (`<store>/charter.json`), verified; CHARTER_REQUIRED when absent. */
export async function storeCharter(storeDir: string): Promise<VerifiedCharter> {
  const bytes = await readOptional(charterPath(storeDir))
  if (bytes === undefined)
    throw new RoundError('CHARTER_REQUIRED', `${storeDir} has no charter.json: pass --charter <file>`)
  return verified(bytes, charterPath(storeDir))
}

/**
 * The charter to verify `dir` against, from the user's choice, never from `dir` alone; then
 * `dir`'s own charter.json, when present, must be the same coop's (CHARTER_MISMATCH otherwise).
 */
export async function pinCharter(dir: string, choice: CharterChoice): Promise<PinnedCharter> {
  const ownBytes = await readOptional(join(dir, CHECKPOINT_FILES.charter))
  let pinned: PinnedCharter
  if (choice.charter !== undefined) {
    pinned = { ...verified(choice.charter, 'the charter given'), source: 'explicit' }
    if (choice.coopId !== undefined && pinned.coopId !== choice.coopId)
      throw new RoundError(
        'CHARTER_MISMATCH',
        `the charter given is coop ${pinned.coopId}, not ${choice.coopId}`,
      )
  } else if (choice.coopId !== undefined) {
    // A copy is as good as the original when its digest is the coop id the user named.
    const copies = [
      ...(choice.storeDir === undefined ? [] : [await readOptional(charterPath(choice.storeDir))]),
      ownBytes,
    ]
    const match = copies
      .filter((bytes): bytes is Uint8Array => bytes !== undefined)
      .map((bytes) => {
        try {
          return verifyCharter(bytes)
        } catch {
          return undefined
        }
      })
      .find((charter) => charter?.coopId === choice.coopId)
    if (match === undefined)
      throw new RoundError(
        'CHARTER_MISMATCH',
        `no charter of coop ${choice.coopId} in ${dir}${choice.storeDir === undefined ? '' : ` or ${choice.storeDir}`}: pass --charter <file>`,
      )
    pinned = { ...match, source: 'coop-id' }
  } else if (choice.storeDir !== undefined) {
    pinned = { ...(await storeCharter(choice.storeDir)), source: 'store' }
  } else {
    throw new RoundError(
      'CHARTER_REQUIRED',
      "the charter inside a checkpoint directory is not trusted on its own: pass --charter <file>, --coop <id> or --store <the node's store>",
    )
  }
  if (ownBytes !== undefined) {
    let own: VerifiedCharter | undefined
    try {
      own = verifyCharter(ownBytes)
    } catch {
      own = undefined
    }
    if (own?.coopId !== pinned.coopId)
      throw new RoundError(
        'CHARTER_MISMATCH',
        own === undefined
          ? `${dir} carries a charter.json that does not verify`
          : `${dir} carries the charter of coop ${own.coopId}, not ${pinned.coopId}`,
      )
  }
  return pinned
}

/**
 * The directory's own charter.json, verified, for reads that claim nothing about who published
 * the checkpoint (sampling from a folder the user chose, with no store at hand). Verification
 * never uses it alone: see pinCharter.
 */
export async function directoryCharter(dir: string): Promise<VerifiedCharter> {
  const bytes = await readOptional(join(dir, CHECKPOINT_FILES.charter))
  if (bytes === undefined)
    throw new RoundError('MISSING_FILE', `${dir} has no ${CHECKPOINT_FILES.charter}; pass --store`)
  return verified(bytes, join(dir, CHECKPOINT_FILES.charter))
}
