import { describe, expect, it } from 'vitest'
import { SimulateError } from '../../node/simulate/errors.ts'
import { parseSplit, splitDataset } from '../../node/simulate/split.ts'

/** `classes` classes of `perClass` items each, interleaved as a real folder listing would not be. */
function labelsOf(classes: number, perClass: number): number[] {
  return Array.from({ length: classes * perClass }, (_, i) => (i * 7) % classes)
}

function expectAllOnce(split: number[][], count: number): void {
  const all = split.flat().sort((a, b) => a - b)
  expect(all).toEqual(Array.from({ length: count }, (_, i) => i))
}

/** For each class, its items' shares across peers. */
function classShares(labels: number[], split: number[][]): number[][] {
  const classes = Math.max(...labels) + 1
  const counts = Array.from({ length: classes }, () => new Array<number>(split.length).fill(0))
  split.forEach((list, peer) => list.forEach((index) => (counts[labels[index]!]![peer]! += 1)))
  return counts.map((row) => {
    const total = row.reduce((a, b) => a + b, 0)
    return row.map((c) => c / total)
  })
}

/** Method-of-moments alpha of a symmetric Dirichlet over K outcomes: E[sum p^2] = (alpha + 1) / (K alpha + 1). */
function estimateAlpha(shares: number[][], peers: number): number {
  const m = shares.reduce((s, row) => s + row.reduce((a, p) => a + p * p, 0), 0) / shares.length
  return (1 - m) / (peers * m - 1)
}

function meanPeerEntropy(labels: number[], split: number[][]): number {
  const classes = Math.max(...labels) + 1
  let total = 0
  for (const list of split) {
    const counts = new Array<number>(classes).fill(0)
    for (const index of list) counts[labels[index]!]! += 1
    let h = 0
    for (const c of counts) if (c > 0) h -= (c / list.length) * Math.log(c / list.length)
    total += h
  }
  return total / split.length
}

describe('splitDataset', () => {
  it('iid deals every item once, sizes within one, every peer sees every class', () => {
    const labels = labelsOf(9, 40)
    const split = splitDataset(labels, 4, 'iid', 7)
    expectAllOnce(split, labels.length)
    const sizes = split.map((l) => l.length)
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
    for (const list of split) expect(new Set(list.map((i) => labels[i])).size).toBe(9)
  })

  it('category gives each peer whole classes, disjoint from every other peer, sizes balanced', () => {
    const labels = [...labelsOf(9, 30), ...Array.from({ length: 60 }, () => 3)]
    const split = splitDataset(labels, 4, 'category', 1)
    expectAllOnce(split, labels.length)
    const classSets = split.map((list) => new Set(list.map((i) => labels[i])))
    for (let a = 0; a < 4; a++)
      for (let b = a + 1; b < 4; b++) for (const c of classSets[a]!) expect(classSets[b]!.has(c)).toBe(false)
    for (const set of classSets) expect(set.size).toBeGreaterThanOrEqual(1)
    const sizes = split.map((l) => l.length)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(90)
  })

  it('category refuses more peers than classes', () => {
    expect(() => splitDataset(labelsOf(3, 10), 4, 'category', 1)).toThrow(SimulateError)
  })

  it('Dirichlet shares follow the requested alpha (method-of-moments estimate, fixed seed)', () => {
    const labels = labelsOf(60, 200)
    const peers = 10
    for (const alpha of [0.1, 1, 10]) {
      const split = splitDataset(labels, peers, { dirichlet: alpha }, 42)
      expectAllOnce(split, labels.length)
      const estimate = estimateAlpha(classShares(labels, split), peers)
      expect(estimate).toBeGreaterThan(alpha / 1.5)
      expect(estimate).toBeLessThan(alpha * 1.5)
    }
  })

  it('small alpha concentrates each peer on few classes, large alpha approaches iid', () => {
    const labels = labelsOf(10, 200)
    const entropy = (alpha: number) =>
      meanPeerEntropy(labels, splitDataset(labels, 8, { dirichlet: alpha }, 3))
    const iid = meanPeerEntropy(labels, splitDataset(labels, 8, 'iid', 3))
    expect(entropy(0.05)).toBeLessThan(1)
    expect(entropy(0.05)).toBeLessThan(entropy(1))
    expect(entropy(1)).toBeLessThan(entropy(100))
    expect(Math.abs(entropy(100) - iid)).toBeLessThan(0.05)
    expect(iid).toBeGreaterThan(Math.log(10) - 0.02)
  })

  it('is deterministic in the seed and honours the minimum per peer', () => {
    const labels = labelsOf(10, 50)
    const a = splitDataset(labels, 5, { dirichlet: 0.3 }, 9, 4)
    expect(splitDataset(labels, 5, { dirichlet: 0.3 }, 9, 4)).toEqual(a)
    expect(splitDataset(labels, 5, { dirichlet: 0.3 }, 10, 4)).not.toEqual(a)
    for (const list of a) expect(list.length).toBeGreaterThanOrEqual(4)
  })

  it('parses split spellings', () => {
    expect(parseSplit('iid')).toBe('iid')
    expect(parseSplit('dirichlet:0.5')).toEqual({ dirichlet: 0.5 })
    expect(() => parseSplit('dirichlet:0')).toThrow(SimulateError)
    expect(() => parseSplit('shards')).toThrow(SimulateError)
  })
})
