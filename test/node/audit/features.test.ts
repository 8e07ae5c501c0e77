// The audit's feature space (issue 11): the quality classifier's penultimate features for a model
// whose classes are all classifier categories, the autoencoder's latents for anything else; and
// the classifier space does what the audit needs: an image is its own nearest neighbour there,
// and a copy with its pixels shifted a little stays nearer to it than other images are.
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../../configs/index.ts'
import { TWEMOJI_CLASSES } from '../../../configs/presets.ts'
import type { AuditSource } from '../../../node/audit/source.ts'
import { CLASSIFIER_EXTRACTOR, classifierApplies, defaultFeatures } from '../../../node/audit/features.ts'
import { nearestMatches } from '../../../node/audit/nearest.ts'
import { createAutoencoder } from '../../../trainer/autoencoder.ts'
import { initBackend } from '../../../trainer/backend.ts'
import { CLASSIFIER_WEIGHTS_SHA256 } from '../../../trainer/quality/digest.ts'
import { loadTwemojiSplit } from '../../../trainer/quality/index.ts'

async function sourceWith(classes: string[]): Promise<AuditSource> {
  const config = loadConfig('tiny', { classes })
  const ae = createAutoencoder(config, 1)
  const autoencoder = await ae.read()
  ae.dispose()
  return {
    kind: 'local',
    dir: '/nowhere',
    config,
    unet: [],
    autoencoder,
    files: {},
    checkpoint: null,
    coop: null,
    round: null,
  }
}

describe('the audit feature space', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it.each([
    { classes: [...TWEMOJI_CLASSES], applies: true },
    { classes: ['flags', 'symbols'], applies: true },
    { classes: [], applies: false },
    { classes: ['flags', 'cats'], applies: false },
    { classes: ['Flags'], applies: false },
  ])('classes $classes: classifier applies = $applies', async ({ classes, applies }) => {
    const source = await sourceWith(classes)
    expect(classifierApplies(source.config, TWEMOJI_CLASSES)).toBe(applies)
    const extractor = await defaultFeatures(source)
    try {
      if (applies) {
        expect(extractor.name).toBe(`${CLASSIFIER_EXTRACTOR}@${CLASSIFIER_WEIGHTS_SHA256}`)
        expect(extractor.dims).toBe(96)
      } else expect(extractor.name).toBe('autoencoder-latent-mean')
    } finally {
      extractor.dispose()
    }
  })

  it('classifier features: each held-out image (16 px, shifted by a pixel) finds its original first', async () => {
    const source = await sourceWith([...TWEMOJI_CLASSES])
    const size = source.config.image.size
    const images = await loadTwemojiSplit('heldout', size, TWEMOJI_CLASSES)
    const n = 48
    const row = size * size * 3
    const originals = images.pixels.subarray(0, n * row)
    // The same images moved one pixel right (white fills the gap): a near copy, not the same bytes.
    const shifted = new Float32Array(n * row).fill(1)
    for (let i = 0; i < n; i++)
      for (let y = 0; y < size; y++)
        for (let x = 1; x < size; x++)
          for (let c = 0; c < 3; c++)
            shifted[i * row + (y * size + x) * 3 + c] = originals[
              i * row + (y * size + x - 1) * 3 + c
            ] as number
    const extractor = await defaultFeatures(source)
    try {
      const a = extractor.extract(originals, n)
      const b = extractor.extract(shifted, n)
      expect(a.length).toBe(n * extractor.dims)
      expect(extractor.extract(originals, n)).toEqual(a)
      const matches = nearestMatches(a, n, b, n, extractor.dims)
      const hits = matches.filter((m, i) => m.sample === i).length
      expect(hits / n).toBeGreaterThan(0.8)
    } finally {
      extractor.dispose()
    }
  }, 120_000)
})
