// Key files: one libp2p protobuf-encoded Ed25519 private key per file (the format libp2p's
// `privateKeyToProtobuf` writes and go-libp2p's `crypto.MarshalPrivateKey` reads), so the same
// file is a rights holder's signing key and a node's peer identity. Files are created with
// mode 0600, never overwritten, and refused when readable by group or others (as ssh does).
// Key bytes are never logged or put in error messages.
import { CodedError } from '../protocol/coded-error.ts'
import { constants } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { ProtocolError } from '../protocol/errors.ts'
import { marshalPrivateKey, unmarshalPrivateKey, type Ed25519PrivateKey } from '../protocol/keys.ts'
import { errorCode } from '../protocol/coded-error.ts'
import { sniffFileKind, withArticle } from './file-kind.ts'

export const KEYSTORE_ERROR_CODES = [
  'KEY_FILE_EXISTS',
  'KEY_FILE_NOT_FOUND',
  'KEY_FILE_PERMISSIONS',
  'KEY_FILE_INVALID',
] as const
export type KeystoreErrorCode = (typeof KEYSTORE_ERROR_CODES)[number]

export class KeystoreError extends CodedError<KeystoreErrorCode> {}

/** A libp2p Ed25519 protobuf key is 68 bytes; anything near 1 KiB is not a key file. */
const KEY_FILE_MAX_BYTES = 1024
const KEY_FILE_MODE = 0o600

/** Creates `path` (failing if it exists) holding `key`, mode 0600, flushed to disk. */
export async function writeKeyFile(path: string, key: Ed25519PrivateKey): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, KEY_FILE_MODE)
  } catch (error) {
    if (errorCode(error) === 'EEXIST')
      throw new KeystoreError('KEY_FILE_EXISTS', `${path} already exists; refusing to overwrite a key`)
    throw error
  }
  try {
    // The umask may have cleared bits but never adds them; chmod makes 0600 exact regardless.
    await handle.chmod(KEY_FILE_MODE)
    await handle.writeFile(marshalPrivateKey(key))
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Reads a key file written by writeKeyFile (or by libp2p tools using the same encoding). */
export async function readKeyFile(path: string): Promise<Ed25519PrivateKey> {
  let info: Awaited<ReturnType<typeof stat>>
  try {
    info = await stat(path)
  } catch (error) {
    if (errorCode(error) === 'ENOENT') throw new KeystoreError('KEY_FILE_NOT_FOUND', `no key file at ${path}`)
    throw error
  }
  if (!info.isFile()) throw new KeystoreError('KEY_FILE_INVALID', `${path} is not a regular file`)
  // Named before the permission check: a manifest or a charter passed as a key is the wrong file,
  // and advising chmod 600 on it would be misleading.
  const kind = await sniffFileKind(path)
  if (kind !== 'key file' && kind !== 'file')
    throw new KeystoreError(
      'KEY_FILE_INVALID',
      `${path} is ${withArticle(kind)}, not a key file (key files are made by coop keys new)`,
    )
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0)
    throw new KeystoreError(
      'KEY_FILE_PERMISSIONS',
      `${path} is accessible by group or others (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${path}`,
    )
  if (info.size > KEY_FILE_MAX_BYTES)
    throw new KeystoreError('KEY_FILE_INVALID', `${path} is too large to be a key file`)
  const handle = await open(path, 'r')
  let bytes: Buffer
  try {
    bytes = await handle.readFile()
  } finally {
    await handle.close()
  }
  try {
    return unmarshalPrivateKey(new Uint8Array(bytes))
  } catch (error) {
    if (error instanceof ProtocolError)
      throw new KeystoreError('KEY_FILE_INVALID', `${path} does not hold a libp2p Ed25519 private key`, {
        cause: error,
      })
    throw error
  }
}
