// The non-IID split: whole categories go to peers, so each peer sees only some kinds of emoji,
// the hard case for federated training and the one the demo is meant to show.

export interface CategoryImages {
  category: string
  /** Image file names inside the category folder. */
  files: string[]
}

export interface PeerShare {
  categories: string[]
  items: number
}

/**
 * Gives each category with at least `minImages` images whole to the peer holding the fewest
 * images so far, largest categories first: shares balanced in size but disjoint in content.
 * Deterministic: ties go to the lower peer index and categories are ordered by name.
 */
export function splitByCategory(
  categories: CategoryImages[],
  peers: number,
  options: { minImages: number },
): PeerShare[] {
  const usable = categories.filter((c) => c.files.length >= options.minImages)
  if (usable.length < peers) {
    throw new RangeError(
      `only ${usable.length} categories have at least ${options.minImages} images; ${peers} peers need one each`,
    )
  }
  const shares: PeerShare[] = Array.from({ length: peers }, () => ({ categories: [], items: 0 }))
  const bySize = [...usable].sort(
    (a, b) => b.files.length - a.files.length || (a.category < b.category ? -1 : 1),
  )
  for (const category of bySize) {
    let target = shares[0] as PeerShare
    for (const share of shares) if (share.items < target.items) target = share
    target.categories.push(category.category)
    target.items += category.files.length
  }
  for (const share of shares) share.categories.sort()
  return shares
}
