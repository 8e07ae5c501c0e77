import { describe, expect, it } from 'vitest'
import type { CollectedCheckpoint } from '../../../node/demo/collect.ts'
import { averagingRounds, meanWeights, samplingWindow } from '../../../node/demo/evaluate.ts'

function checkpoint(
  phase: 'autoencoder' | 'unet',
  round: number,
  genesis = false,
  ae = 'ae-3',
): CollectedCheckpoint {
  return {
    id: `${phase}-${round}${genesis ? '-genesis' : ''}`,
    phase,
    round,
    parentId: genesis ? null : 'parent',
    autoencoderId: phase === 'unet' ? ae : undefined,
  } as unknown as CollectedCheckpoint
}

describe('demo sample grids: mean of the last rounds', () => {
  const all = [
    checkpoint('autoencoder', 1),
    checkpoint('autoencoder', 3),
    checkpoint('unet', 3, true),
    ...[4, 5, 6, 7, 8, 9].map((r) => checkpoint('unet', r)),
  ]

  it('takes the same phase, non-genesis checkpoints in (round - window, round], oldest first', () => {
    expect(samplingWindow(all, checkpoint('unet', 9), 3).map((c) => c.round)).toEqual([7, 8, 9])
    expect(samplingWindow(all, checkpoint('unet', 5), 8).map((c) => c.round)).toEqual([4, 5])
    expect(samplingWindow(all, checkpoint('unet', 4), 1).map((c) => c.id)).toEqual(['unet-4'])
  })

  it('averages the last 30 % of the rounds so far, at least 1 and at most 8', () => {
    expect(averagingRounds(all, checkpoint('unet', 4))).toBe(1)
    expect(averagingRounds(all, checkpoint('unet', 7))).toBe(2)
    expect(averagingRounds(all, checkpoint('unet', 9))).toBe(2)
    const long = [...all, ...Array.from({ length: 40 }, (_, i) => checkpoint('unet', 10 + i))]
    expect(averagingRounds(long, checkpoint('unet', 12))).toBe(3)
    expect(averagingRounds(long, checkpoint('unet', 49))).toBe(8)
    const other = [...all, checkpoint('unet', 8, false, 'ae-other')]
    expect(averagingRounds(other, checkpoint('unet', 9))).toBe(2)
  })

  it('never mixes U-Net checkpoints built on another autoencoder', () => {
    const other = [...all, checkpoint('unet', 8, false, 'ae-other')]
    expect(samplingWindow(other, checkpoint('unet', 9), 3).map((c) => c.id)).toEqual([
      'unet-7',
      'unet-8',
      'unet-9',
    ])
  })

  it('averages element-wise and refuses weight sets of another layout', () => {
    const a = [{ name: 'w', shape: [2], data: new Float32Array([1, 2]) }]
    const b = [{ name: 'w', shape: [2], data: new Float32Array([3, 6]) }]
    expect(Array.from(meanWeights([a, b])[0]!.data)).toEqual([2, 4])
    expect(() => meanWeights([a, [{ name: 'v', shape: [2], data: new Float32Array(2) }]])).toThrow(/differ/)
  })
})
