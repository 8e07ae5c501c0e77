// The rules of unlearning by rollback (docs/PROTOCOL.md §9d), as pure functions over a minimal
// view of checkpoints, so the same code decides for the publisher (adopted records), checks for
// verifiers, and answers `coop checkpoint verify` and `coop trace` (checkpoint directories).
//
// "Used" is the trace rule of trace.ts: a contribution used item X if it lists a manifest holding
// X and no checkpoint up to the one it trained from had recorded X as excluded. A rollback
// checkpoint is the one kind of non-genesis checkpoint without contributions: its parent is the
// new base, its files are the base's weights and momentum, and it lists the signed receipt.

/** The receipt's file name in a rollback checkpoint's directory and provenance subject. */
export const RECEIPT_FILE = 'unlearning-receipt.json'

/** What the rules read of a checkpoint. */
export interface LineageNode {
  id: string
  round: number
  /** Parent checkpoint id, null at a genesis. */
  parent: string | null
  /** Checkpoint ids of components (the autoencoder of a U-Net checkpoint). */
  components: readonly string[]
  /** Each listed contribution's manifests. */
  contributions: readonly { manifests: readonly string[] }[]
  /** Items this checkpoint recorded as revoked. */
  excludedItems: readonly string[]
}

export type NodeLookup = (id: string) => LineageNode | undefined

export interface ItemUse {
  /** The checkpoint whose listed contribution used the item. */
  checkpoint: string
  round: number
  manifest: string
  item: string
}

/** A rollback checkpoint: a parent, no contributions, and the receipt among its signed files. */
export function isRollbackShape(
  predicate: { parent: unknown; contributions: readonly unknown[] },
  files: ReadonlyMap<string, string>,
): boolean {
  return predicate.parent !== null && predicate.contributions.length === 0 && files.has(RECEIPT_FILE)
}

/** The same-phase chain ending at `id`, genesis first; stops at a missing parent, never loops. */
export function chainOf(lookup: NodeLookup, id: string): LineageNode[] {
  const out: LineageNode[] = []
  const seen = new Set<string>()
  for (let node = lookup(id); node !== undefined && !seen.has(node.id);) {
    seen.add(node.id)
    out.push(node)
    node = node.parent === null ? undefined : lookup(node.parent)
  }
  return out.reverse()
}

/**
 * The first use, in the whole lineage of `id` (components first, then its chain from genesis), of
 * an item of `itemsByManifest` (manifest id -> the watched items it holds). Undefined: none.
 */
export function firstUse(
  lookup: NodeLookup,
  id: string,
  itemsByManifest: ReadonlyMap<string, ReadonlySet<string>>,
  visited = new Set<string>(),
): ItemUse | undefined {
  const recorded = new Set<string>()
  for (const node of chainOf(lookup, id)) {
    for (const component of node.components) {
      if (visited.has(component)) continue
      visited.add(component)
      const inComponent = firstUse(lookup, component, itemsByManifest, visited)
      if (inComponent !== undefined) return inComponent
    }
    for (const contribution of node.contributions)
      for (const manifest of contribution.manifests)
        for (const item of itemsByManifest.get(manifest) ?? [])
          if (!recorded.has(item)) return { checkpoint: node.id, round: node.round, manifest, item }
    // Recorded here: the rounds training from this checkpoint on no longer see these items.
    for (const item of node.excludedItems) recorded.add(item)
  }
  return undefined
}

/** Items recorded as revoked anywhere in the lineage of `id` (its chain and its components'). */
export function recordedInLineage(lookup: NodeLookup, id: string, visited = new Set<string>()): Set<string> {
  const out = new Set<string>()
  for (const node of chainOf(lookup, id)) {
    for (const item of node.excludedItems) out.add(item)
    for (const component of node.components) {
      if (visited.has(component)) continue
      visited.add(component)
      for (const item of recordedInLineage(lookup, component, visited)) out.add(item)
    }
  }
  return out
}

/** Restricts manifests (id -> items) to the watched items: the map firstUse() takes. */
export function watchedItemsByManifest(
  manifests: Iterable<{ id: string; items: Iterable<string> }>,
  watched: ReadonlySet<string>,
): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const m of manifests) {
    const hit = new Set<string>()
    for (const item of m.items) if (watched.has(item)) hit.add(item)
    if (hit.size > 0) out.set(m.id, hit)
  }
  return out
}

export interface RollbackTarget {
  /** The newest checkpoint of the chain whose whole lineage never used a watched item. */
  base: LineageNode
  /** The chain's checkpoints after `base`, oldest first: what the rollback abandons. */
  superseded: LineageNode[]
}

/**
 * Where a rollback from `head` lands: walking back from `head`, the first checkpoint whose whole
 * lineage uses none of the watched items. Undefined when even the genesis (through its
 * components) used one: the rollback cannot be done within the phase.
 */
export function rollbackTarget(
  lookup: NodeLookup,
  head: string,
  itemsByManifest: ReadonlyMap<string, ReadonlySet<string>>,
): RollbackTarget | undefined {
  const chain = chainOf(lookup, head)
  for (let i = chain.length - 1; i >= 0; i--) {
    const node = chain[i] as LineageNode
    if (firstUse(lookup, node.id, itemsByManifest) === undefined)
      return { base: node, superseded: chain.slice(i + 1) }
  }
  return undefined
}

/**
 * `coop checkpoint verify` under a rollback charter: no item recorded as revoked anywhere in the
 * lineage of `id` was used by that lineage. Returns the first violation, or undefined.
 */
export function rollbackViolation(
  lookup: NodeLookup,
  id: string,
  manifests: Iterable<{ id: string; items: Iterable<string> }>,
): ItemUse | undefined {
  const revoked = recordedInLineage(lookup, id)
  if (revoked.size === 0) return undefined
  return firstUse(lookup, id, watchedItemsByManifest(manifests, revoked))
}
