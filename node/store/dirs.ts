// Creating the store's folder with an error that names the real cause. Node's
// `mkdir(path, {recursive: true})` spins forever where the kernel answers ENOENT for a folder
// whose parent exists (under /proc), and its messages repeat the code ("ENOENT: ENOENT: ...");
// so the missing components are created one by one, each with a plain mkdir.
import { mkdir, readdir, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { errorCode } from '../../protocol/coded-error.ts'
import { describeFsError } from '../fs-errors.ts'
import { StoreError } from './store.ts'

/**
 * Makes sure `path` is a folder, creating what is missing; throws StoreError NOT_WRITABLE naming
 * the cause. Returns whether it created the folder (so a failed start can remove what it made).
 */
export async function ensureFolder(path: string, what = 'store'): Promise<{ created: string | undefined }> {
  const target = resolve(path)
  const missing: string[] = []
  let existing = target
  for (;;) {
    try {
      const info = await stat(existing)
      if (!info.isDirectory())
        throw new StoreError(
          'NOT_WRITABLE',
          `cannot create the ${what} folder ${path}: ${existing} is a file`,
        )
      break
    } catch (err) {
      if (err instanceof StoreError) throw err
      const code = errorCode(err)
      if (code !== 'ENOENT')
        throw new StoreError(
          'NOT_WRITABLE',
          `cannot use the ${what} folder ${path}: ${describeFsError(err)}`,
          {
            cause: err,
          },
        )
      missing.unshift(existing)
      const parent = dirname(existing)
      if (parent === existing) break
      existing = parent
    }
  }
  for (const folder of missing) {
    try {
      await mkdir(folder)
    } catch (err) {
      if (errorCode(err) === 'EEXIST') continue
      // The parent exists (it was just checked or made), so ENOENT means the file system refuses the name.
      if (errorCode(err) === 'ENOENT')
        throw new StoreError(
          'NOT_WRITABLE',
          `cannot create the ${what} folder ${path}: this file system does not allow new folders there (a virtual file system such as /proc?)`,
          { cause: err },
        )
      throw new StoreError(
        'NOT_WRITABLE',
        `cannot create the ${what} folder ${path}: ${describeFsError(err)}`,
        {
          cause: err,
        },
      )
    }
  }
  return { created: missing[0] }
}

/** Entries only a coop store has: one of them marks a folder as a store. */
const STORE_MARKERS = ['charter.json', 'db', 'snapshots', 'checkpoints', 'addrs.json']

/**
 * For the read-only commands (status, trace, checkpoint verify): `dir` must be an existing coop
 * store. A typo must not read as "not used" or "not run yet".
 */
export async function assertStoreFolder(dir: string): Promise<void> {
  let names: string[]
  try {
    if (!(await stat(dir)).isDirectory())
      throw new StoreError('NOT_A_STORE', `--store ${dir} is a file, not a store folder`)
    names = await readdir(dir)
  } catch (err) {
    if (err instanceof StoreError) throw err
    if (errorCode(err) === 'ENOENT')
      throw new StoreError('NO_STORE', `--store ${dir}: no such folder (check the path)`)
    throw new StoreError('NOT_A_STORE', `--store ${dir}: ${describeFsError(err)}`, { cause: err })
  }
  if (!STORE_MARKERS.some((marker) => names.includes(marker)))
    throw new StoreError(
      'NOT_A_STORE',
      `--store ${dir} is not a coop store (no charter.json, db/ or checkpoints/): give the folder passed to coop start --store`,
    )
}
