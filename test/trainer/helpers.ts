// Shared fixtures for trainer tests.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { layoutTwemoji } from '../../node/cli/commands/data.ts'
import { loadConfig } from '../../configs/index.ts'
import type { CoopConfig } from '../../configs/index.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { loadImageFolder } from '../../trainer/data.ts'

/** tiny with small batches, so a step costs milliseconds. */
export function smallConfig(overrides: Record<string, unknown> = {}): CoopConfig {
  return loadConfig('tiny', {
    'autoencoder.batchSize': 4,
    'unet.batchSize': 4,
    'training.evalBatch': 4,
    ...overrides,
  })
}

/** A real Twemoji subset laid out by `coop data twemoji`, loaded at `size`. */
export async function twemojiDataset(
  perCategory: number,
  size: number,
  categories?: string[],
): Promise<{ dir: string; dataset: ImageDataset }> {
  const dir = join(mkdtempSync(join(tmpdir(), 'coop-twemoji-')), 'data')
  await layoutTwemoji({ out: dir, perCategory, ...(categories === undefined ? {} : { categories }) })
  return { dir, dataset: await loadImageFolder({ dir, size }) }
}

export function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  let max = 0
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)))
  return max
}
