// Durable writes: after a crash (SIGKILL, power loss) a path holds either its old content or the
// complete new content, never a torn file. Every file and directory the node, the CLI and the
// demo write goes through these helpers, so there is one definition of "written".
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/** Prefix of temp files and folders; a crash may leave them behind, removeTempEntries drops them. */
export const TEMP_PREFIX = '.tmp-'

/** fsync of a file or a directory (a directory's fsync makes a rename inside it durable). */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Creates `path` (which must not exist), writes `bytes` and fsyncs it before resolving. */
export async function writeNewFileSynced(
  path: string,
  bytes: Uint8Array | string,
  mode = 0o644,
): Promise<void> {
  const handle = await open(path, 'wx', mode)
  try {
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Replaces the file at `path` atomically and durably: temp file in the same directory, fsync,
 * rename, fsync of the directory. Readers see the old or the new content, never half of one.
 */
export async function writeFileDurable(
  path: string,
  bytes: Uint8Array | string,
  options: { mode?: number } = {},
): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true })
  const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`)
  try {
    await writeNewFileSynced(temp, bytes, options.mode)
    await rename(temp, path)
  } catch (err) {
    await rm(temp, { force: true })
    throw err
  }
  await fsyncPath(dir)
}

/**
 * Moves a fully written temp file (in another folder of the same filesystem) to `path` and makes
 * the rename durable. Used where temp files live apart from the final folder (the blob store).
 */
export async function commitTempFile(temp: string, path: string): Promise<void> {
  await rename(temp, path)
  await fsyncPath(dirname(path))
}

/**
 * Replaces the directory `final` with one holding exactly `files`, atomically: a temp folder in
 * the same parent, every file fsynced (a rename does not sync the files inside), then one rename.
 * File names must be plain names; the caller owns their meaning.
 */
export async function writeDirDurable(
  final: string,
  files: Record<string, Uint8Array | string>,
): Promise<void> {
  const parent = dirname(final)
  await mkdir(parent, { recursive: true })
  const temp = join(parent, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`)
  await mkdir(temp)
  try {
    await Promise.all(
      Object.entries(files).map(([name, bytes]) => writeNewFileSynced(join(temp, name), bytes)),
    )
    await fsyncPath(temp)
    await rm(final, { recursive: true, force: true })
    await rename(temp, final)
  } catch (err) {
    await rm(temp, { recursive: true, force: true })
    throw err
  }
  await fsyncPath(parent)
}

/** Removes the temp files and folders a crash left in `dir` (they were never referenced). */
export async function removeTempEntries(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  await Promise.all(
    names
      .filter((name) => name.startsWith(TEMP_PREFIX))
      .map((name) => rm(join(dir, name), { recursive: true, force: true })),
  )
}
