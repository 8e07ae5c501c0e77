// The non-IID split: whole categories go to peers, so each peer sees only some kinds of emoji,
// the hard case for federated training and the one the demo is meant to show.

export interface CategoryImages {
  category: string
  /** Image file names inside the category folder, in any order. */
  files: string[]
}

export interface PeerShare {
  categories: string[]
  /** Selected files per category, sorted. */
  files: Map<string, string[]>
  items: number
}

/** mulberry32: a tiny seeded PRNG so the same seed selects the same images on every machine. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function sample(files: string[], count: number, random: () => number): string[] {
  const pool = [...files].sort()
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = pool[i] as string
    pool[i] = pool[j] as string
    pool[j] = tmp
  }
  return pool.slice(0, count).sort()
}

/**
 * Picks up to `imagesPerCategory` images from each category with at least `minImages`, then gives
 * each category whole to the peer holding the fewest images so far (largest first), so shares are
 * balanced in size but disjoint in content. Deterministic for a given seed.
 */
export function splitByCategory(
  categories: CategoryImages[],
  peers: number,
  options: { imagesPerCategory: number; minImages: number; seed: number },
): PeerShare[] {
  const random = seededRandom(options.seed)
  const usable = categories
    .filter((c) => c.files.length >= options.minImages)
    .sort((a, b) => (a.category < b.category ? -1 : 1))
    .map((c) => ({ category: c.category, files: sample(c.files, options.imagesPerCategory, random) }))
  if (usable.length < peers) {
    throw new RangeError(`only ${usable.length} categories have at least ${options.minImages} images; ${peers} peers need one each`)
  }
  const shares: PeerShare[] = Array.from({ length: peers }, () => ({ categories: [], files: new Map(), items: 0 }))
  const bySize = [...usable].sort((a, b) => b.files.length - a.files.length || (a.category < b.category ? -1 : 1))
  for (const category of bySize) {
    let target = shares[0] as PeerShare
    for (const share of shares) if (share.items < target.items) target = share
    target.categories.push(category.category)
    target.files.set(category.category, category.files)
    target.items += category.files.length
  }
  for (const share of shares) share.categories.sort()
  return shares
}
