// The image loader: a folder of PNG, JPEG, GIF or WebP files (told by their bytes, not their
// names), decoded with sharp, turned upright by their EXIF orientation, composited on white,
// centre-cropped to a square (a photo is cropped, not squashed) and resized, held as float32 in
// [-1, 1]. `<dir>/<class>/*` gives labels; a flat folder is unconditional (label -1). With an
// allowlist, a file whose bytes' digest is not listed is never decoded and never reaches a
// batch. A file whose own metadata forbids AI or generative training
// (trainer/embedded-metadata.ts) is refused even when listed: the most restrictive signal wins.
// Corrupt files are skipped, by path, not fatal.
import { readdir, readFile, stat } from 'node:fs/promises'
import { extname, join } from 'node:path'
import sharp from 'sharp'
import { describeSignals } from '../protocol/data-mining.ts'
import { sha256Digest } from '../protocol/digest.ts'
import { sniffMediaType } from '../protocol/media-type.ts'
import { readEmbeddedOptOut } from './embedded-metadata.ts'
import {
  DATA_BACKGROUND,
  DATA_DECODE_CONCURRENCY,
  DATA_IMAGE_EXTENSIONS,
  DATA_MAX_CLASSES,
  DATA_MAX_FILE_BYTES,
  DATA_MAX_FILES,
  DATA_MAX_INPUT_PIXELS,
} from './constants.ts'
import { TrainerError } from './errors.ts'
import type { Logger } from './types.ts'
import { errorCode } from '../protocol/coded-error.ts'

export interface ImageItem {
  /** Path of the file as found under `dir`. */
  path: string
  /** 'sha256:<hex>' of the file's exact bytes: the image's identity in consent manifests. */
  sha256: string
  /** Index into `classes`, or -1 for an unconditional (flat) folder. */
  label: number
}

export interface ImageDataset {
  /** Loaded images in a fixed order (class, then path), index-aligned with `pixels`. */
  items: ImageItem[]
  /** Class folder names in label order (sorted); empty for a flat folder. */
  classes: string[]
  /** items.length * size * size * 3 floats in [-1, 1], row-major HWC per image. */
  pixels: Float32Array
  /** Side of every image in `pixels`. */
  size: number
  /** Files that could not be used, with the reason (corrupt, unreadable, too large). */
  skipped: { path: string; reason: string }[]
  /** Image files left out because their digest is not on the allowlist. */
  notAllowed: number
  /** Files refused because their own metadata forbids AI or generative training, with the signals. */
  optedOut: { path: string; sha256: string; reason: string }[]
}

export interface LoadImageFolderOptions {
  dir: string
  size: number
  /** Digests ('sha256:<hex>') of the file bytes allowed to train on; absent = every file. */
  allowlist?: ReadonlySet<string>
  log?: Logger
}

interface Candidate {
  path: string
  label: number
  /** Sort key: class then path, so the order does not depend on readdir. */
  key: string
}

function isImageFile(name: string): boolean {
  return !name.startsWith('.') && DATA_IMAGE_EXTENSIONS.includes(extname(name).toLowerCase())
}

async function listCandidates(dir: string): Promise<{ candidates: Candidate[]; classes: string[] }> {
  let entries
  try {
    const info = await stat(dir)
    if (!info.isDirectory()) throw new TrainerError('DATA_MISSING', `data path ${dir} is not a directory`)
    entries = await readdir(dir, { withFileTypes: true })
  } catch (error) {
    if (error instanceof TrainerError) throw error
    throw new TrainerError(
      'DATA_MISSING',
      `data folder ${dir} cannot be read: ${errorCode(error) ?? String(error)}`,
    )
  }
  const classDirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name)
  classDirs.sort()
  if (classDirs.length > DATA_MAX_CLASSES)
    throw new TrainerError('DATA_TOO_LARGE', `${classDirs.length} class folders (limit ${DATA_MAX_CLASSES})`)
  const candidates: Candidate[] = []
  const push = (candidate: Candidate) => {
    if (candidates.length >= DATA_MAX_FILES)
      throw new TrainerError('DATA_TOO_LARGE', `more than ${DATA_MAX_FILES} image files under ${dir}`)
    candidates.push(candidate)
  }
  if (classDirs.length === 0) {
    for (const e of entries)
      if (e.isFile() && isImageFile(e.name)) push({ path: join(dir, e.name), label: -1, key: e.name })
  } else {
    // Class layout: images directly in `dir` have no class and are not used.
    for (let label = 0; label < classDirs.length; label++) {
      const className = classDirs[label] as string
      const classEntries = await readdir(join(dir, className), { withFileTypes: true })
      for (const e of classEntries)
        if (e.isFile() && isImageFile(e.name))
          push({
            path: join(dir, className, e.name),
            label,
            key: `${String(label).padStart(6, '0')}/${e.name}`,
          })
    }
  }
  candidates.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  return { candidates, classes: classDirs }
}

/** Decodes one image file to `size`x`size` RGB floats in [-1, 1]; throws with a user-readable reason. */
export async function decodeImage(bytes: Uint8Array, size: number): Promise<Float32Array> {
  const { data, info } = await sharp(bytes, {
    limitInputPixels: DATA_MAX_INPUT_PIXELS,
    failOn: 'error',
    autoOrient: true,
  })
    .flatten({ background: DATA_BACKGROUND })
    .resize(size, size, { fit: 'cover', position: 'centre' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true })
  if (info.channels !== 3 || info.width !== size || info.height !== size || data.length !== size * size * 3)
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`)
  const out = new Float32Array(data.length)
  for (let i = 0; i < data.length; i++) out[i] = (data[i] as number) / 127.5 - 1
  return out
}

/** Loads an image folder; see the module comment. Throws DATA_MISSING / DATA_EMPTY / DATA_TOO_LARGE. */
export async function loadImageFolder(options: LoadImageFolderOptions): Promise<ImageDataset> {
  const { dir, size, allowlist, log } = options
  if (!Number.isInteger(size) || size < 1 || size > 4096)
    throw new TrainerError('INVALID_ARGUMENT', `image size ${size} out of range`)
  const { candidates, classes } = await listCandidates(dir)
  const decoded: ({ item: ImageItem; pixels: Float32Array } | undefined)[] = new Array(candidates.length)
  const skipped: { path: string; reason: string }[] = []
  const optedOut: { path: string; sha256: string; reason: string }[] = []
  let notAllowed = 0
  let next = 0
  const worker = async () => {
    for (;;) {
      const index = next++
      if (index >= candidates.length) return
      const candidate = candidates[index] as Candidate
      let bytes: Uint8Array
      try {
        const info = await stat(candidate.path)
        if (info.size > DATA_MAX_FILE_BYTES) {
          skipped.push({ path: candidate.path, reason: `file larger than ${DATA_MAX_FILE_BYTES} bytes` })
          continue
        }
        bytes = await readFile(candidate.path)
      } catch (error) {
        skipped.push({
          path: candidate.path,
          reason: `unreadable: ${errorCode(error) ?? String(error)}`,
        })
        continue
      }
      const sha256 = sha256Digest(bytes)
      // The consent gate: a file not on the list is not even decoded.
      if (allowlist !== undefined && !allowlist.has(sha256)) {
        notAllowed++
        continue
      }
      // Decoded only if its bytes are an image type a manifest may list: an SVG or TIFF under an
      // image name is not rendered (an SVG could pull in other files).
      if (sniffMediaType(bytes) === undefined) {
        skipped.push({ path: candidate.path, reason: 'not a PNG, JPEG, GIF or WebP file by its first bytes' })
        continue
      }
      try {
        // The file's own word beats any manifest: it is read before the pixels are decoded.
        const verdict = await readEmbeddedOptOut(bytes)
        if (!verdict.allowed) {
          optedOut.push({ path: candidate.path, sha256, reason: describeSignals(verdict.refusing) })
          continue
        }
        const pixels = await decodeImage(bytes, size)
        decoded[index] = { item: { path: candidate.path, sha256, label: candidate.label }, pixels }
      } catch (error) {
        skipped.push({ path: candidate.path, reason: `cannot decode: ${(error as Error).message}` })
      }
    }
  }
  await Promise.all(Array.from({ length: DATA_DECODE_CONCURRENCY }, worker))
  skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  for (const s of skipped) log?.warn({ path: s.path, reason: s.reason }, 'image skipped')
  optedOut.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  for (const o of optedOut)
    log?.warn({ path: o.path, sha256: o.sha256, reason: o.reason }, 'image refused by its embedded opt-out')
  const loaded = decoded.filter((d) => d !== undefined)
  if (loaded.length === 0) {
    const detail = [`${candidates.length} image files found`]
    if (skipped.length > 0) detail.push(`${skipped.length} skipped as unusable`)
    if (notAllowed > 0) detail.push(`${notAllowed} not on the allowlist`)
    if (optedOut.length > 0) detail.push(`${optedOut.length} refused by their embedded opt-out metadata`)
    throw new TrainerError('DATA_EMPTY', `no usable images in ${dir} (${detail.join(', ')})`)
  }
  const stride = size * size * 3
  const pixels = new Float32Array(loaded.length * stride)
  loaded.forEach((d, i) => pixels.set(d.pixels, i * stride))
  log?.info(
    {
      dir,
      images: loaded.length,
      classes: classes.length,
      skipped: skipped.length,
      notAllowed,
      optedOut: optedOut.length,
    },
    'image folder loaded',
  )
  return { items: loaded.map((d) => d.item), classes, pixels, size, skipped, notAllowed, optedOut }
}
