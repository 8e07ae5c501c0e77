import { describe, expect, it } from 'vitest'
import { splitByCategory } from '../../../node/demo/split.ts'

const category = (name: string, n: number) => ({ category: name, files: Array.from({ length: n }, (_, i) => `${name}-${String(i).padStart(3, '0')}.png`) })
const twemojiLike = [
  category('Activities', 85),
  category('Animals & Nature', 159),
  category('Component', 5),
  category('Flags', 270),
  category('Food & Drink', 131),
  category('Objects', 264),
  category('People & Body', 386),
  category('Smileys & Emotion', 169),
  category('Symbols', 224),
  category('Travel & Places', 218),
]

describe('non-IID split by category', () => {
  it('gives each usable category whole to exactly one peer, and skips tiny ones', () => {
    const shares = splitByCategory(twemojiLike, 4, { imagesPerCategory: 60, minImages: 40, seed: 1 })
    const all = shares.flatMap((s) => s.categories)
    expect(all.sort()).toEqual(twemojiLike.filter((c) => c.category !== 'Component').map((c) => c.category).sort())
    expect(new Set(all).size).toBe(all.length)
    for (const share of shares) {
      expect(share.categories.length).toBeGreaterThan(0)
      for (const [name, files] of share.files) {
        expect(files).toHaveLength(60)
        expect(files.every((f) => f.startsWith(`${name}-`))).toBe(true)
      }
    }
  })

  it('balances the peers by image count', () => {
    const shares = splitByCategory(twemojiLike, 4, { imagesPerCategory: 1000, minImages: 40, seed: 1 })
    const sizes = shares.map((s) => s.items)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1906)
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThan(200)
  })

  it('selects the same images for the same seed and other ones for another seed', () => {
    const a = splitByCategory(twemojiLike, 4, { imagesPerCategory: 20, minImages: 40, seed: 1 })
    const b = splitByCategory(twemojiLike, 4, { imagesPerCategory: 20, minImages: 40, seed: 1 })
    const c = splitByCategory(twemojiLike, 4, { imagesPerCategory: 20, minImages: 40, seed: 2 })
    const files = (s: typeof a) => s.map((x) => [...x.files.values()].flat())
    expect(files(a)).toEqual(files(b))
    expect(files(a)).not.toEqual(files(c))
  })

  it('refuses more peers than usable categories', () => {
    expect(() => splitByCategory(twemojiLike.slice(0, 3), 4, { imagesPerCategory: 20, minImages: 40, seed: 1 })).toThrow(RangeError)
  })
})
