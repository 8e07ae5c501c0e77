// The media type of an image file by its first bytes (magic numbers), never by its name: the
// types a consent manifest may list (MANIFEST_MEDIA_TYPES). `coop consent create` labels items
// with it, and the trainer decodes only files it recognises, so an SVG, TIFF or anything else
// the image library could also read never reaches training under a .png or .jpg name.
import type { MANIFEST_MEDIA_TYPES } from './constants.ts'

export type ImageMediaType = (typeof MANIFEST_MEDIA_TYPES)[number]

/** The bytes needed to tell the types apart. */
export const MEDIA_TYPE_HEAD_BYTES = 12

export function sniffMediaType(head: Uint8Array): ImageMediaType | undefined {
  const at = (i: number) => head[i] ?? -1
  if (
    at(0) === 0x89 &&
    at(1) === 0x50 &&
    at(2) === 0x4e &&
    at(3) === 0x47 &&
    at(4) === 0x0d &&
    at(5) === 0x0a &&
    at(6) === 0x1a &&
    at(7) === 0x0a
  )
    return 'image/png'
  if (at(0) === 0xff && at(1) === 0xd8 && at(2) === 0xff) return 'image/jpeg'
  const ascii = Buffer.from(head.subarray(0, MEDIA_TYPE_HEAD_BYTES)).toString('latin1')
  if (ascii.startsWith('GIF87a') || ascii.startsWith('GIF89a')) return 'image/gif'
  if (ascii.startsWith('RIFF') && ascii.slice(8, 12) === 'WEBP') return 'image/webp'
  return undefined
}
