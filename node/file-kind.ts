// What a file given on the command line actually is, from its first bytes, so that a command
// handed the wrong file (a manifest as a key, a charter as consent, a folder as a file) says so
// in one line instead of failing later with an unrelated message.
import { open, stat } from 'node:fs/promises'
import { CHARTER_PAYLOAD_TYPE, IN_TOTO_PAYLOAD_TYPE } from '../protocol/constants.ts'
import { looksLikeManifest } from '../protocol/manifest.ts'
import { looksLikeRevocation } from '../protocol/revocation.ts'

export type FileKind =
  | 'missing'
  | 'folder'
  | 'empty file'
  | 'consent manifest'
  | 'revocation notice'
  | 'charter'
  | 'signed statement'
  | 'JSON document'
  | 'image'
  | 'key file'
  | 'file'

/** Enough to tell the kinds apart; a whole signed document up to this size is parsed. */
const SNIFF_MAX_BYTES = 4 * 1024 * 1024
/** A libp2p protobuf Ed25519 key: field 1 (key type) = 1, field 2 (data) of 64 bytes. */
const KEY_FILE_PREFIX = [0x08, 0x01, 0x12, 0x40]

/** Names the kind of a JSON value: a signed document of ours, or plain JSON. */
export function jsonKind(value: unknown): FileKind {
  if (looksLikeManifest(value)) return 'consent manifest'
  if (looksLikeRevocation(value)) return 'revocation notice'
  const payloadType = (value as { payloadType?: unknown } | null)?.payloadType
  if (payloadType === CHARTER_PAYLOAD_TYPE) return 'charter'
  if (payloadType === IN_TOTO_PAYLOAD_TYPE) return 'signed statement'
  return 'JSON document'
}

/** Names the kind of the file at `path` without trusting or verifying it. */
export async function sniffFileKind(path: string): Promise<FileKind> {
  let size: number
  try {
    const info = await stat(path)
    if (info.isDirectory()) return 'folder'
    size = info.size
  } catch {
    return 'missing'
  }
  if (size === 0) return 'empty file'
  const handle = await open(path, 'r')
  let head: Buffer
  try {
    const buffer = Buffer.alloc(Math.min(size, SNIFF_MAX_BYTES))
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0)
    head = buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
  if (KEY_FILE_PREFIX.every((byte, i) => head[i] === byte) && size === 68) return 'key file'
  if (head[0] === 0x89 && head.subarray(1, 4).toString('latin1') === 'PNG') return 'image'
  if (head[0] === 0xff && head[1] === 0xd8) return 'image'
  const magic = head.subarray(0, 12).toString('latin1')
  if (magic.startsWith('GIF87a') || magic.startsWith('GIF89a')) return 'image'
  if (magic.startsWith('RIFF') && magic.slice(8, 12) === 'WEBP') return 'image'
  const text = head.toString('utf8').trimStart()
  if (text.startsWith('{') || text.startsWith('[')) {
    try {
      return jsonKind(JSON.parse(text))
    } catch {
      return 'JSON document'
    }
  }
  return 'file'
}

/** "a consent manifest", "an image": the kind with its article, for messages. */
export function withArticle(kind: FileKind): string {
  if (kind === 'missing') return 'missing'
  return /^[aeiouAEIOU]/.test(kind) ? `an ${kind}` : `a ${kind}`
}
