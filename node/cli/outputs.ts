// Outputs are never overwritten by accident: a command refuses an --out that exists unless
// --force is given (the behaviour `coop keys new` has always had, without a --force for keys).
import { readdir } from 'node:fs/promises'
import { sniffFileKind, withArticle } from '../file-kind.ts'
import { CliError } from './command.ts'

/** A file output: refused when anything exists at `path`, unless `force`. */
export async function assertFileOutputFree(path: string, force: boolean, flag = '--out'): Promise<void> {
  const kind = await sniffFileKind(path)
  if (kind === 'missing') return
  if (kind === 'folder') throw new CliError('OUTPUT_EXISTS', `${flag} ${path} is a folder; give a file path`)
  if (!force)
    throw new CliError(
      'OUTPUT_EXISTS',
      `${flag} ${path} exists (${withArticle(kind)}); refusing to overwrite it: choose another path, or pass --force`,
    )
}

/** A folder output: a missing or empty folder is fine; one with files is refused unless `force`. */
export async function assertFolderOutputFree(path: string, force: boolean, flag = '--out'): Promise<void> {
  const kind = await sniffFileKind(path)
  if (kind === 'missing') return
  if (kind !== 'folder')
    throw new CliError('OUTPUT_EXISTS', `${flag} ${path} is ${withArticle(kind)}, not a folder`)
  const names = (await readdir(path)).filter((name) => !name.startsWith('.'))
  if (names.length > 0 && !force)
    throw new CliError(
      'OUTPUT_EXISTS',
      `${flag} ${path} is not empty (${names.length} entries, e.g. ${names.slice(0, 3).join(', ')}); refusing to add to it: choose a new folder, or pass --force`,
    )
}
