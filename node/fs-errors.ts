// File-system errors in words. A system error's message repeats its code ("ENOENT: no such file
// or directory, open 'x'"), and printed after the code it reads "ENOENT: ENOENT: ..."; these
// helpers say the cause once, in words, with the operation and the path.
import { errorCode } from '../protocol/coded-error.ts'

/** Why a file-system operation failed, in words, by the system error code. */
const CAUSES: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'is a folder, not a file',
  EEXIST: 'a file of that name exists',
  ENOENT: 'no such file or folder',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'too many symbolic links in the path',
  EMFILE: 'too many open files',
  EIO: 'input/output error (failing disk?)',
}

/** The cause of a system error in words with its code, e.g. "read-only file system (EROFS)". */
export function describeFsError(err: unknown): string {
  const code = errorCode(err)
  const cause = code === undefined ? undefined : CAUSES[code]
  if (cause !== undefined) return `${cause} (${code})`
  return err instanceof Error ? err.message : String(err)
}

/** Whether `err` is a Node system error (it has a syscall), as opposed to a coded project error. */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string'
}

/** One line for a system error: the cause in words, then the operation and the path. */
export function systemErrorLine(err: NodeJS.ErrnoException): string {
  const cause = CAUSES[err.code ?? ''] ?? err.message.replace(/^[A-Z]+: /, '')
  const dest = (err as { dest?: unknown }).dest
  const where = [
    err.syscall,
    err.path === undefined ? undefined : `'${err.path}'`,
    typeof dest === 'string' ? `-> '${dest}'` : undefined,
  ]
  return `${cause}: ${where.filter((w) => w !== undefined).join(' ')}`
}
