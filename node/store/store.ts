// The node's durable state: LevelDB (level 10) sublevels for signed records and round state,
// plus a content-addressed blob directory for payloads (deltas, checkpoints).
//
// Crash safety: every acknowledged record write is a synchronous LevelDB write (its log is
// fsynced before the promise resolves), and every blob is written to a temp file, fsynced,
// renamed into place and its directory fsynced. A SIGKILL at any point therefore loses at most
// writes that were never acknowledged; a torn temp file is never visible under its digest.
import { CodedError } from '../../protocol/coded-error.ts'
import { commitTempFile, removeTempEntries, writeFileDurable, writeNewFileSynced } from './durable.ts'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import type { Logger } from 'pino'
import { BLOB_MAX_BYTES } from '../constants.ts'
import type { StoredBlob } from '../p2p/blob-server.ts'
import { componentLogger } from '../log.ts'
import { describeFsError } from '../fs-errors.ts'
import { errorCode } from '../../protocol/coded-error.ts'

export const STORE_ERROR_CODES = [
  'BAD_DIGEST',
  'DIGEST_MISMATCH',
  'BAD_KEY',
  'LOCKED',
  'TOO_LARGE',
  'OPEN_FAILED',
  /** The store's folder cannot be created or written (read-only file system, permissions...). */
  'NOT_WRITABLE',
  /** A read-only command was given a store path that does not exist. */
  'NO_STORE',
  /** A read-only command was given a folder that is not a coop store. */
  'NOT_A_STORE',
] as const
export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number]

export class StoreError extends CodedError<StoreErrorCode> {}

export const TABLE_NAMES = [
  'manifests',
  'revocations',
  'contributions',
  'checkpoints',
  'rounds',
  'peers',
] as const
export type TableName = (typeof TABLE_NAMES)[number]

/** JSON-valued key/value table backed by one sublevel. Keys sort lexicographically (see roundKey). */
export interface RecordTable<V = unknown> {
  readonly name: TableName
  put(key: string, value: V): Promise<void>
  get(key: string): Promise<V | undefined>
  has(key: string): Promise<boolean>
  del(key: string): Promise<void>
  /** Entries in key order within [gte, lt), at most `limit`, newest first with `reverse`. */
  entries(range?: { gte?: string; lt?: string; limit?: number; reverse?: boolean }): Promise<[string, V][]>
  keys(range?: { gte?: string; lt?: string; limit?: number; reverse?: boolean }): Promise<string[]>
}

export interface BatchPut {
  type: 'put'
  table: TableName
  key: string
  value: unknown
}
export interface BatchDel {
  type: 'del'
  table: TableName
  key: string
}

export interface CoopStore {
  readonly dir: string
  readonly manifests: RecordTable
  readonly revocations: RecordTable
  readonly contributions: RecordTable
  readonly checkpoints: RecordTable
  readonly rounds: RecordTable
  readonly peers: RecordTable
  table(name: TableName): RecordTable
  /** Applies puts and deletes across tables atomically (all or none survive a crash). */
  batch(operations: (BatchPut | BatchDel)[]): Promise<void>
  /** Stores bytes under their SHA-256 digest; if `expectedDigest` is given and differs, throws DIGEST_MISMATCH. */
  putBlob(bytes: Uint8Array, expectedDigest?: string): Promise<string>
  /** Reads a blob and verifies its digest; a corrupt file is quarantined and reported missing. */
  getBlob(digest: string): Promise<Uint8Array | undefined>
  /**
   * Opens a blob for streaming (serving), one chunk in memory at a time: the digest is checked as
   * the chunks are read, and a corrupt file is quarantined and cut short before its last chunk.
   */
  openBlob(digest: string): Promise<StoredBlob | undefined>
  hasBlob(digest: string): Promise<boolean>
  blobPath(digest: string): string
  close(): Promise<void>
}

const DIGEST_PATTERN = /^sha256:([0-9a-f]{64})$/
/** Keys are printable and bounded so that a peer-supplied id can never smuggle a separator or blow up the index. */
const KEY_PATTERN = /^[\x21-\x7e]{1,512}$/

/** Zero-padded round number, so rounds sort numerically as keys. */
export function roundKey(round: number): string {
  if (!Number.isSafeInteger(round) || round < 0)
    throw new StoreError('BAD_KEY', `round must be a non-negative integer, got ${round}`)
  return round.toString().padStart(12, '0')
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || !KEY_PATTERN.test(key))
    throw new StoreError('BAD_KEY', 'record keys are 1-512 printable ASCII characters')
}

function hexOf(digest: string): string {
  const match = DIGEST_PATTERN.exec(digest)
  if (match === null)
    throw new StoreError('BAD_DIGEST', `not a sha256 digest: ${String(digest).slice(0, 80)}`)
  return match[1] as string
}

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

// Every acknowledged write is synced: "acknowledged" must mean "on disk". classic-level reads
// `sync` from the options that sublevels forward to it; abstract-level's types do not declare it.
const SYNC: object = { sync: true }

export async function openStore(dir: string, options: { log?: Logger } = {}): Promise<CoopStore> {
  const log = options.log ?? componentLogger('store')
  const blobDir = join(dir, 'blobs', 'sha256')
  const tempDir = join(dir, 'blobs', 'tmp')
  const quarantineDir = join(dir, 'blobs', 'corrupt')
  try {
    await mkdir(blobDir, { recursive: true })
    await mkdir(quarantineDir, { recursive: true })
    // Temp files left by a crash were never acknowledged: drop them.
    await rm(tempDir, { recursive: true, force: true })
    await mkdir(tempDir, { recursive: true })
    await removeTempEntries(join(dir, 'snapshots'))
  } catch (err) {
    throw new StoreError('NOT_WRITABLE', `cannot write to store ${dir}: ${describeFsError(err)}`, {
      cause: err,
    })
  }

  const db = new Level<string, unknown>(join(dir, 'db'), { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED')
      throw new StoreError('LOCKED', `store ${dir} is in use by another process`, { cause: err })
    const reason =
      cause instanceof Error ? describeFsError(cause) : err instanceof Error ? err.message : String(err)
    throw new StoreError('OPEN_FAILED', `cannot open store ${dir}: ${reason}`, { cause: err })
  }

  const sublevels = new Map(
    TABLE_NAMES.map((name) => [name, db.sublevel<string, unknown>(name, { valueEncoding: 'json' })]),
  )
  const sublevel = (name: TableName) => sublevels.get(name) as ReturnType<typeof db.sublevel<string, unknown>>

  const makeTable = (name: TableName): RecordTable => {
    const level = sublevel(name)
    const iteratorOptions = (
      range: { gte?: string; lt?: string; limit?: number; reverse?: boolean } = {},
    ) => ({
      ...(range.gte === undefined ? {} : { gte: range.gte }),
      ...(range.lt === undefined ? {} : { lt: range.lt }),
      limit: range.limit ?? -1,
      reverse: range.reverse ?? false,
    })
    return {
      name,
      async put(key, value) {
        checkKey(key)
        await level.put(key, value, SYNC)
      },
      async get(key) {
        checkKey(key)
        return await level.get(key)
      },
      async has(key) {
        checkKey(key)
        return (await level.get(key)) !== undefined
      },
      async del(key) {
        checkKey(key)
        await level.del(key, SYNC)
      },
      async entries(range) {
        return await level.iterator(iteratorOptions(range)).all()
      },
      async keys(range) {
        return await level.keys(iteratorOptions(range)).all()
      },
    }
  }
  const tables = new Map(TABLE_NAMES.map((name) => [name, makeTable(name)]))
  const table = (name: TableName) => tables.get(name) as RecordTable

  const blobPath = (digest: string) => join(blobDir, hexOf(digest))

  const store: CoopStore = {
    dir,
    manifests: table('manifests'),
    revocations: table('revocations'),
    contributions: table('contributions'),
    checkpoints: table('checkpoints'),
    rounds: table('rounds'),
    peers: table('peers'),
    table,

    async batch(operations) {
      for (const op of operations) checkKey(op.key)
      await db.batch(
        operations.map((op) =>
          op.type === 'put'
            ? { type: 'put' as const, sublevel: sublevel(op.table), key: op.key, value: op.value }
            : { type: 'del' as const, sublevel: sublevel(op.table), key: op.key },
        ),
        SYNC,
      )
    },

    async putBlob(bytes, expectedDigest) {
      if (bytes.byteLength > BLOB_MAX_BYTES)
        throw new StoreError('TOO_LARGE', `blob of ${bytes.byteLength} bytes exceeds ${BLOB_MAX_BYTES}`)
      const digest = sha256(bytes)
      if (expectedDigest !== undefined) {
        hexOf(expectedDigest)
        if (expectedDigest !== digest)
          throw new StoreError('DIGEST_MISMATCH', `bytes hash to ${digest}, not ${expectedDigest}`)
      }
      const path = blobPath(digest)
      // Content addressing makes a second write a no-op, unless the file on disk is damaged.
      const existing = await stat(path).catch(() => undefined)
      if (existing?.isFile() === true && existing.size === bytes.byteLength) return digest
      const temp = join(tempDir, `${hexOf(digest)}.${randomBytes(6).toString('hex')}`)
      await writeNewFileSynced(temp, bytes)
      await commitTempFile(temp, path)
      return digest
    },

    async getBlob(digest) {
      const path = blobPath(digest)
      let bytes: Uint8Array
      try {
        bytes = new Uint8Array(await readFile(path))
      } catch (err) {
        if (errorCode(err) === 'ENOENT') return undefined
        throw err
      }
      if (sha256(bytes) !== digest) {
        // Bit rot or tampering: move it aside so it is refetched, and keep it for inspection.
        log.warn({ digest, path }, 'stored blob does not match its digest; quarantined')
        await rename(path, join(quarantineDir, `${hexOf(digest)}.${Date.now()}`)).catch(() => undefined)
        return undefined
      }
      return bytes
    },

    async openBlob(digest) {
      const path = blobPath(digest)
      let handle: Awaited<ReturnType<typeof open>>
      try {
        handle = await open(path, 'r')
      } catch (err) {
        if (errorCode(err) === 'ENOENT') return undefined
        throw err
      }
      let size: number
      try {
        size = (await handle.stat()).size
      } catch (err) {
        await handle.close()
        throw err
      }
      const quarantine = async (): Promise<void> => {
        log.warn({ digest, path }, 'stored blob does not match its digest; quarantined')
        await rename(path, join(quarantineDir, `${hexOf(digest)}.${Date.now()}`)).catch(() => undefined)
      }
      let closed = false
      const close = async (): Promise<void> => {
        if (closed) return
        closed = true
        await handle.close()
      }
      return {
        size,
        async *chunks(chunkBytes) {
          const hash = createHash('sha256')
          let offset = 0
          // Empty blobs have one (empty) chunk so the digest is still checked.
          do {
            const length = Math.min(chunkBytes, size - offset)
            // A fresh buffer per chunk: the previous one may still sit in the muxer's queue.
            const chunk = new Uint8Array(length)
            let filled = 0
            while (filled < length) {
              const { bytesRead } = await handle.read(chunk, filled, length - filled, offset + filled)
              if (bytesRead === 0) {
                await quarantine()
                throw new StoreError('DIGEST_MISMATCH', `${digest} is shorter than when opened`)
              }
              filled += bytesRead
            }
            hash.update(chunk)
            offset += length
            // The last chunk goes out only if the whole file hashed to its name.
            if (offset === size && `sha256:${hash.digest('hex')}` !== digest) {
              await quarantine()
              throw new StoreError('DIGEST_MISMATCH', `${digest} does not match its bytes`)
            }
            yield chunk
          } while (offset < size)
        },
        close,
      }
    },

    async hasBlob(digest) {
      try {
        const info = await stat(blobPath(digest))
        return info.isFile()
      } catch (err) {
        if (errorCode(err) === 'ENOENT') return false
        throw err
      }
    },

    blobPath,

    async close() {
      await db.close()
    },
  }
  return store
}

/** Lists the digests of all stored blobs (for status and tests). */
export async function listBlobs(store: CoopStore): Promise<string[]> {
  const names = await readdir(join(store.dir, 'blobs', 'sha256'))
  return names.filter((name) => /^[0-9a-f]{64}$/.test(name)).map((hex) => `sha256:${hex}`)
}

const SNAPSHOT_NAME = /^[a-z][a-z0-9-]{0,63}$/

/**
 * LevelDB allows one process per database, so readers such as `coop status` cannot open the
 * store while the node runs. The node therefore also writes small JSON snapshots next to the
 * database (atomically), and readers use readSnapshot without taking the lock.
 */
export async function writeSnapshot(dir: string, name: string, value: unknown): Promise<void> {
  if (!SNAPSHOT_NAME.test(name)) throw new StoreError('BAD_KEY', 'snapshot names are lowercase words')
  await writeFileDurable(join(dir, 'snapshots', `${name}.json`), `${JSON.stringify(value, null, 2)}\n`)
}

export async function readSnapshot(dir: string, name: string): Promise<unknown | undefined> {
  if (!SNAPSHOT_NAME.test(name)) throw new StoreError('BAD_KEY', 'snapshot names are lowercase words')
  try {
    return JSON.parse(await readFile(join(dir, 'snapshots', `${name}.json`), 'utf8')) as unknown
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined
    throw err
  }
}
