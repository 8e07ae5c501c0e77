// The seeded PRNG behind every random choice in training: a saved state continues the exact
// stream (what --resume relies on), and its draws have the distributions the trainer assumes.
import { describe, expect, it } from 'vitest'
import { Rng } from '../../trainer/rng.ts'

describe('Rng', () => {
  it('restoring a saved state continues the identical stream', () => {
    const a = new Rng(42)
    a.normals(7)
    a.permutation(10)
    const saved = a.state()
    const expected = [a.nextUint32(), a.int(1000), a.uniform(), ...a.normals(3)]
    const b = new Rng(saved)
    expect([b.nextUint32(), b.int(1000), b.uniform(), ...b.normals(3)]).toEqual(expected)
  })

  it('different seeds, including seeds above 2^32, give different streams', () => {
    const first = (seed: number) => new Rng(seed).nextUint32()
    expect(new Set([first(0), first(1), first(2 ** 32), first(2 ** 32 + 1)]).size).toBe(4)
  })

  it('int is within bounds and roughly uniform; permutation is a permutation', () => {
    const rng = new Rng(7)
    const counts = new Array(10).fill(0)
    for (let i = 0; i < 20_000; i++) counts[rng.int(10)]++
    for (const c of counts) expect(Math.abs(c - 2000)).toBeLessThan(200)
    expect(rng.permutation(50).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect(() => rng.int(0)).toThrow(RangeError)
  })

  it('normals have mean ~0 and variance ~1', () => {
    const values = new Rng(3).normals(100_001)
    let sum = 0
    let squares = 0
    for (const v of values) {
      sum += v
      squares += v * v
    }
    const mean = sum / values.length
    expect(Math.abs(mean)).toBeLessThan(0.02)
    expect(Math.abs(squares / values.length - mean * mean - 1)).toBeLessThan(0.02)
  })
})
