// The audit's distance maths on hand-made vectors: the normalised l2 distance and the ratio test.
import { describe, expect, it } from 'vitest'
import { nearestMatches, rowDistance } from '../../../node/audit/nearest.ts'

const rows = (...values: number[][]) => Float32Array.from(values.flat())

describe('rowDistance', () => {
  it('is sqrt(mean squared difference): 0 for equal rows, 1 for opposite corners of [0, 1]^d', () => {
    const a = rows([0, 0, 0, 0], [1, 1, 1, 1])
    const b = rows([0, 0, 0, 0], [1, 1, 0, 0])
    expect([
      rowDistance(a, 0, b, 0, 4),
      rowDistance(a, 0, b, 1, 4),
      rowDistance(a, 1, b, 0, 4),
      rowDistance(a, 1, b, 1, 4),
    ]).toEqual([0, Math.sqrt(0.5), 1, Math.sqrt(0.5)])
  })

  it('with scale 1/2 on [-1, 1] pixels equals the distance on [0, 1] pixels', () => {
    expect(rowDistance(rows([-1, -1]), 0, rows([1, 1]), 0, 2, 0.5)).toBe(1)
  })
})

describe('nearestMatches', () => {
  it.each([
    {
      what: 'a sample that copies image 0 and is far from image 1: small ratio for image 0',
      images: [
        [0, 0],
        [1, 1],
      ],
      samples: [
        [0.02, 0],
        [0.5, 0.5],
      ],
      expected: [
        { sample: 0, ratioBelow: 0.1 },
        { sample: 1, ratioAbove: 0.99 },
      ],
    },
    {
      what: 'a sample halfway between two images: ratio 1 for both',
      images: [
        [0, 0],
        [1, 1],
      ],
      samples: [[0.5, 0.5]],
      expected: [
        { sample: 0, ratioAbove: 0.99 },
        { sample: 0, ratioAbove: 0.99 },
      ],
    },
    {
      what: 'one training image: no second image, ratio 1',
      images: [[0, 0]],
      samples: [[0, 0]],
      expected: [{ sample: 0, ratioAbove: 0.99 }],
    },
  ])('$what', ({ images, samples, expected }) => {
    const n = images.length
    const m = samples.length
    const matches = nearestMatches(rows(...images), n, rows(...samples), m, 2)
    expected.forEach((e, i) => {
      expect(matches[i]!.sample).toBe(e.sample)
      if ('ratioBelow' in e) expect(matches[i]!.ratio).toBeLessThan(e.ratioBelow as number)
      if ('ratioAbove' in e) expect(matches[i]!.ratio).toBeGreaterThan(e.ratioAbove as number)
    })
  })

  it("uses the nearest *other* image as the denominator when the image is not its sample's nearest", () => {
    // Image 1 is nearest to the only sample; for image 0 the ratio is d(0, s) / d(1, s) > 1, capped above 1.
    const matches = nearestMatches(rows([0, 0], [0.9, 0.9]), 2, rows([1, 1]), 1, 2)
    expect(matches[0]!.ratio).toBeGreaterThan(1)
    expect(matches[1]!.ratio).toBeCloseTo(0.1 / 1, 5)
  })
})
