// The Twemoji images of the npm package emoji-datasource-twitter (CC-BY 4.0) as the quality
// metric sees them: every category's base images (no skin-tone variants, no 'Component'
// swatches) in the package's sort order, and one fixed split of them:
//   - held out: every QUALITY_HOLDOUT_EVERY-th image of each category (from position
//     QUALITY_HOLDOUT_OFFSET): the classifier's test set and the real reference of the Fréchet
//     distance. `coop data twemoji --without-quality-holdout` (the demo and the simulator's
//     default data) leaves these out, so the cooperative never trains on them;
//   - training: the rest, which the classifier learns from.
// Twemoji draws some emoji identically (family variants, flags of territories sharing a flag):
// a held-out position whose image bytes equal a training image or an earlier held-out one is
// left out of both sides ('duplicate'), so no held-out image is also seen in training.
// Taking every n-th image in sort order stratifies the split over the subcategories (sort
// order groups them: faces, hands, animals, ...), so the test set covers each category's range.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { sha256Digest } from '../../protocol/digest.ts'
import { decodeImage } from '../data.ts'
import { QUALITY_HOLDOUT_EVERY, QUALITY_HOLDOUT_OFFSET, TWEMOJI_IMAGE_DIR } from './constants.ts'

/** Categories never used: 'component' holds five skin-tone swatches, not emoji. */
export const TWEMOJI_EXCLUDED_CATEGORIES: ReadonlySet<string> = new Set(['component'])

export interface TwemojiRecord {
  shortName: string
  /** File name under img/twitter/64 of the package. */
  image: string
  /** Category slug ('smileys-emotion'). */
  category: string
  /** Position of the image in its category's sort order (0-based). */
  position: number
  /** True for the quality hold-out (see the module comment). */
  heldOut: boolean
  /** Which side of the split: 'duplicate' is a held-out position whose bytes occur elsewhere. */
  split: 'train' | 'heldout' | 'duplicate'
  /** 'sha256:<hex>' of the image file's bytes. */
  sha256: string
}

interface RawRecord {
  short_name: string
  image: string
  category: string
  sort_order: number
  has_img_twitter: boolean
}

/** 'Smileys & Emotion' -> 'smileys-emotion'. */
export function categorySlug(category: string): string {
  return category
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
}

/** Whether position `position` of a category (in sort order) belongs to the quality hold-out. */
export function isQualityHoldout(position: number): boolean {
  return position % QUALITY_HOLDOUT_EVERY === QUALITY_HOLDOUT_OFFSET
}

/** The package folder of emoji-datasource-twitter. */
export function twemojiPackageDir(): string {
  const require = createRequire(import.meta.url)
  return dirname(require.resolve('emoji-datasource-twitter/package.json'))
}

/** Every base Twemoji image by category slug, each category in sort order, with its split. */
export async function twemojiRecords(): Promise<Map<string, TwemojiRecord[]>> {
  const raw = JSON.parse(await readFile(join(twemojiPackageDir(), 'emoji.json'), 'utf8')) as RawRecord[]
  const byCategory = new Map<string, RawRecord[]>()
  for (const record of raw) {
    if (!record.has_img_twitter || typeof record.category !== 'string' || typeof record.image !== 'string')
      continue
    const slug = categorySlug(record.category)
    const list = byCategory.get(slug) ?? []
    list.push(record)
    byCategory.set(slug, list)
  }
  const dir = join(twemojiPackageDir(), TWEMOJI_IMAGE_DIR)
  const out = new Map<string, TwemojiRecord[]>()
  for (const slug of [...byCategory.keys()].sort()) {
    const sorted = (byCategory.get(slug) as RawRecord[]).slice().sort((a, b) => a.sort_order - b.sort_order)
    const records: TwemojiRecord[] = []
    for (const [position, r] of sorted.entries())
      records.push({
        shortName: r.short_name,
        image: r.image,
        category: slug,
        position,
        heldOut: false,
        split: isQualityHoldout(position) ? 'heldout' : 'train',
        sha256: sha256Digest(new Uint8Array(await readFile(join(dir, r.image)))),
      })
    out.set(slug, records)
  }
  const trainDigests = new Set<string>()
  for (const list of out.values()) for (const r of list) if (r.split === 'train') trainDigests.add(r.sha256)
  const heldDigests = new Set<string>()
  for (const list of out.values())
    for (const r of list) {
      if (r.split !== 'heldout') continue
      if (trainDigests.has(r.sha256) || heldDigests.has(r.sha256)) r.split = 'duplicate'
      else {
        heldDigests.add(r.sha256)
        r.heldOut = true
      }
    }
  return out
}

export interface LabelledImages {
  /** count * size * size * 3 floats in [-1, 1], HWC per image. */
  pixels: Float32Array
  /** Class index per image, into `classes`. */
  labels: number[]
  /** Position in the category's sort order per image (for sub-splits). */
  positions: number[]
  /** 'sha256:<hex>' of each image file's bytes. */
  digests: string[]
  count: number
  size: number
  classes: string[]
}

/**
 * Decodes the images of one side of the split ('train' or 'heldout') at `size`, labelled by
 * `classes` (categories not listed are skipped). Same decoding as the trainer's loader
 * (composited on white, resized by sharp), so real and generated images are compared alike.
 */
export async function loadTwemojiSplit(
  split: 'train' | 'heldout',
  size: number,
  classes: readonly string[],
): Promise<LabelledImages> {
  const records = await twemojiRecords()
  const dir = join(twemojiPackageDir(), TWEMOJI_IMAGE_DIR)
  const chosen: TwemojiRecord[] = []
  const labels: number[] = []
  classes.forEach((name, label) => {
    for (const record of records.get(name) ?? [])
      if (record.split === split) {
        chosen.push(record)
        labels.push(label)
      }
  })
  const row = size * size * 3
  const pixels = new Float32Array(chosen.length * row)
  const digests: string[] = []
  for (let i = 0; i < chosen.length; i++) {
    const bytes = new Uint8Array(await readFile(join(dir, (chosen[i] as TwemojiRecord).image)))
    digests.push(sha256Digest(bytes))
    pixels.set(await decodeImage(bytes, size), i * row)
  }
  return {
    pixels,
    labels,
    positions: chosen.map((r) => r.position),
    digests,
    count: chosen.length,
    size,
    classes: [...classes],
  }
}
