// The simulator's data: the default Twemoji folder, per-peer subsets of one loaded dataset, and
// the held-out evaluation set that scores the federated model and the baseline alike.
import { existsSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256Digest } from '../../protocol/digest.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { twemojiPackageDir, twemojiRecords } from '../../trainer/quality/twemoji.ts'
import { Rng } from '../../trainer/rng.ts'
import { layoutTwemoji } from '../cli/commands/data.ts'

/** Written last by `layoutTwemoji`: its presence means the folder is complete. */
const TWEMOJI_COMPLETE_MARKER = 'LICENSE-ATTRIBUTION.txt'
/** Written after the marker: what the folder was laid out from (see twemojiLayoutStamp). */
export const TWEMOJI_STAMP_FILE = '.layout-stamp'
/** Bump when layoutTwemoji lays out the same package and split differently. */
const TWEMOJI_LAYOUT_FORMAT = 1

/** Where `coop simulate` keeps its Twemoji copy (without the quality hold-out) when --data is not given. */
export function defaultTwemojiDir(): string {
  return join(tmpdir(), 'diffusion-coop-twemoji-train')
}

/**
 * A digest of what the folder's contents follow from: the layout format, the package's emoji.json
 * and the quality hold-out (by image digest). A folder laid out by other code, another package
 * version or another split carries another stamp (~0.2 s: it hashes the package's images).
 */
export async function twemojiLayoutStamp(): Promise<string> {
  const emojiJson = sha256Digest(new Uint8Array(await readFile(join(twemojiPackageDir(), 'emoji.json'))))
  const heldOut: string[] = []
  for (const list of (await twemojiRecords()).values())
    for (const record of list) if (record.heldOut) heldOut.push(record.sha256)
  heldOut.sort()
  const text = JSON.stringify({ format: TWEMOJI_LAYOUT_FORMAT, emojiJson, heldOut })
  return sha256Digest(new TextEncoder().encode(text))
}

async function isCurrent(dir: string, stamp: string): Promise<boolean> {
  if (!existsSync(join(dir, TWEMOJI_COMPLETE_MARKER))) return false
  const written = await readFile(join(dir, TWEMOJI_STAMP_FILE), 'utf8').catch(() => undefined)
  return written === stamp
}

/**
 * Returns a complete Twemoji folder at `dir` laid out by this code from the installed package,
 * laying it out first if it is missing or stale (another stamp, or none: an older layout). Concurrent
 * callers are safe: each writes a private folder and renames it into place; a loser of the race
 * discards its copy.
 */
export async function ensureTwemoji(
  dir: string = defaultTwemojiDir(),
): Promise<{ dir: string; laidOut: boolean }> {
  const stamp = await twemojiLayoutStamp()
  if (await isCurrent(dir, stamp)) return { dir, laidOut: false }
  const staging = `${dir}.tmp-${process.pid}`
  await rm(staging, { recursive: true, force: true })
  // The quality metric's held-out images stay out, so the simulated models are scored on unseen images.
  await layoutTwemoji({ out: staging, withoutQualityHoldout: true })
  await writeFile(join(staging, TWEMOJI_STAMP_FILE), stamp)
  // A stale folder moves aside first (unless another caller has replaced it meanwhile).
  if (existsSync(dir) && !(await isCurrent(dir, stamp))) {
    const aside = `${dir}.stale-${process.pid}`
    await rename(dir, aside).catch(() => undefined)
    await rm(aside, { recursive: true, force: true })
  }
  try {
    await rename(staging, dir)
  } catch (error) {
    await rm(staging, { recursive: true, force: true })
    if (!(await isCurrent(dir, stamp))) throw error
  }
  return { dir, laidOut: true }
}

/** A dataset holding only `indices` of `dataset` (in that order), sharing its class list. */
export function subsetDataset(dataset: ImageDataset, indices: readonly number[]): ImageDataset {
  const row = dataset.size * dataset.size * 3
  const pixels = new Float32Array(indices.length * row)
  indices.forEach((index, position) =>
    pixels.set(dataset.pixels.subarray(index * row, (index + 1) * row), position * row),
  )
  return {
    items: indices.map((index) => dataset.items[index] as ImageDataset['items'][number]),
    classes: dataset.classes,
    pixels,
    size: dataset.size,
    skipped: [],
    notAllowed: 0,
    optedOut: [],
  }
}

/**
 * Splits item indices into a held-out evaluation set of `count` items (a seeded pick, stratified
 * by class so that every class is scored) and the training pool; both sorted ascending.
 */
export function holdOut(
  labels: readonly number[],
  count: number,
  seed: number,
): { evaluation: number[]; pool: number[] } {
  const rng = new Rng(seed)
  const byLabel = new Map<number, number[]>()
  labels.forEach((label, index) => {
    const list = byLabel.get(label) ?? []
    list.push(index)
    byLabel.set(label, list)
  })
  const queues = [...byLabel.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([, list]) => rng.permutation(list.length).map((k) => list[k] as number))
  const evaluation: number[] = []
  // Round-robin over classes: as even a share per class as `count` allows.
  for (let take = 0; evaluation.length < count; take++) {
    let added = false
    for (const queue of queues) {
      if (evaluation.length >= count) break
      if (take < queue.length) {
        evaluation.push(queue[take] as number)
        added = true
      }
    }
    if (!added) break
  }
  const held = new Set(evaluation)
  return {
    evaluation: evaluation.sort((a, b) => a - b),
    pool: labels.map((_, i) => i).filter((i) => !held.has(i)),
  }
}
