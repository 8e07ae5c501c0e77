// The simulator's data: the default Twemoji folder, per-peer subsets of one loaded dataset, and
// the held-out evaluation set that scores the federated model and the baseline alike.
import { existsSync } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ImageDataset } from '../../trainer/data.ts'
import { Rng } from '../../trainer/rng.ts'
import { layoutTwemoji } from '../cli/commands/data.ts'

/** Written last by `layoutTwemoji`: its presence means the folder is complete. */
const TWEMOJI_COMPLETE_MARKER = 'LICENSE-ATTRIBUTION.txt'

/** Where `coop simulate` keeps its Twemoji copy (without the quality hold-out) when --data is not given. */
export function defaultTwemojiDir(): string {
  return join(tmpdir(), 'diffusion-coop-twemoji-train')
}

/**
 * Returns a complete Twemoji folder at `dir`, laying it out first if needed. Concurrent callers
 * are safe: each writes a private folder and renames it into place; a loser of the race discards its copy.
 */
export async function ensureTwemoji(
  dir: string = defaultTwemojiDir(),
): Promise<{ dir: string; laidOut: boolean }> {
  if (existsSync(join(dir, TWEMOJI_COMPLETE_MARKER))) return { dir, laidOut: false }
  const staging = `${dir}.tmp-${process.pid}`
  await rm(staging, { recursive: true, force: true })
  // The quality metric's held-out images stay out, so the simulated models are scored on unseen images.
  await layoutTwemoji({ out: staging, withoutQualityHoldout: true })
  try {
    await rename(staging, dir)
  } catch (error) {
    await rm(staging, { recursive: true, force: true })
    if (!existsSync(join(dir, TWEMOJI_COMPLETE_MARKER))) throw error
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
