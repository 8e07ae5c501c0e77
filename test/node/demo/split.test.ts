import { describe, expect, it } from 'vitest'
import { splitByCategory } from '../../../node/demo/split.ts'

const category = (name: string, n: number) => ({
  category: name,
  files: Array.from({ length: n }, (_, i) => `${name}-${i}.png`),
})
// Twemoji's category sizes (emoji-datasource-twitter 16).
const twemoji = [
  category('activities', 85),
  category('animals-nature', 159),
  category('component', 5),
  category('flags', 270),
  category('food-drink', 131),
  category('objects', 264),
  category('people-body', 386),
  category('smileys-emotion', 169),
  category('symbols', 224),
  category('travel-places', 218),
]

describe('non-IID split by category', () => {
  it('gives each usable category whole to exactly one peer, and skips tiny ones', () => {
    const shares = splitByCategory(twemoji, 4, { minImages: 40 })
    const all = shares.flatMap((s) => s.categories)
    expect([...all].sort()).toEqual(twemoji.filter((c) => c.category !== 'component').map((c) => c.category))
    expect(new Set(all).size).toBe(all.length)
    for (const share of shares) expect(share.categories.length).toBeGreaterThan(0)
  })

  it('balances the peers by image count', () => {
    const shares = splitByCategory(twemoji, 4, { minImages: 40 })
    const sizes = shares.map((s) => s.items)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1906)
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThan(100)
  })

  it('is deterministic whatever the input order', () => {
    expect(splitByCategory([...twemoji].reverse(), 4, { minImages: 40 })).toEqual(
      splitByCategory(twemoji, 4, { minImages: 40 }),
    )
  })

  it('refuses more peers than usable categories', () => {
    expect(() => splitByCategory(twemoji.slice(0, 3), 4, { minImages: 40 })).toThrow(RangeError)
  })
})
