// The rollback rules (node/round/unlearning.ts) on hand-built lineages where the answer is known:
// where a rollback lands, when it cannot, and when a lineage breaks the rollback promise.
import { describe, expect, it } from 'vitest'
import {
  chainOf,
  firstUse,
  isRollbackShape,
  RECEIPT_FILE,
  recordedInLineage,
  rollbackTarget,
  rollbackViolation,
  watchedItemsByManifest,
  type LineageNode,
} from '../../../node/round/unlearning.ts'

const X = 'item-x'
const Y = 'item-y'
const Z = 'item-z'
const manifests = [
  { id: 'm-alice', items: [X, Y] },
  { id: 'm-bob', items: [Z] },
]

function node(
  id: string,
  round: number,
  parent: string | null,
  used: string[][],
  extra: Partial<LineageNode> = {},
): LineageNode {
  return {
    id,
    round,
    parent,
    components: [],
    contributions: used.map((m) => ({ manifests: m })),
    excludedItems: [],
    ...extra,
  }
}

function lookupOf(nodes: LineageNode[]) {
  const byId = new Map(nodes.map((n) => [n.id, n]))
  return (id: string) => byId.get(id)
}

// ae-0 -> ae-1 (bob only); unet genesis u-0 (component ae-1) -> u-1 (bob) -> u-2 (alice, bob) -> u-3 (alice, bob)
const ae = [node('ae-0', 0, null, []), node('ae-1', 1, 'ae-0', [['m-bob']])]
const unet = [
  node('u-0', 1, null, [], { components: ['ae-1'] }),
  node('u-1', 2, 'u-0', [['m-bob']]),
  node('u-2', 3, 'u-1', [['m-alice', 'm-bob']]),
  node('u-3', 4, 'u-2', [['m-alice'], ['m-bob']]),
]
const lookup = lookupOf([...ae, ...unet])
const watch = (items: string[]) => watchedItemsByManifest(manifests, new Set(items))

describe('rollback rules', () => {
  it('chains run genesis first and stop at a missing parent', () => {
    expect(chainOf(lookup, 'u-3').map((n) => n.id)).toEqual(['u-0', 'u-1', 'u-2', 'u-3'])
    expect(chainOf(lookupOf([unet[2]!, unet[3]!]), 'u-3').map((n) => n.id)).toEqual(['u-2', 'u-3'])
    expect(chainOf(lookup, 'nope')).toEqual([])
  })

  it('finds the first use through the chain and through components', () => {
    expect(firstUse(lookup, 'u-3', watch([X]))).toMatchObject({
      checkpoint: 'u-2',
      item: X,
      manifest: 'm-alice',
    })
    expect(firstUse(lookup, 'u-1', watch([X]))).toBeUndefined()
    // Bob's item reached the U-Net's genesis through the autoencoder component.
    expect(firstUse(lookup, 'u-0', watch([Z]))).toMatchObject({ checkpoint: 'ae-1', item: Z })
  })

  it('a rollback lands on the newest checkpoint whose whole lineage is clean', () => {
    const target = rollbackTarget(lookup, 'u-3', watch([X]))
    expect(target?.base.id).toBe('u-1')
    expect(target?.superseded.map((n) => n.id)).toEqual(['u-2', 'u-3'])
    // Nothing revoked was used: the head itself is the target, nothing superseded.
    expect(rollbackTarget(lookup, 'u-1', watch([X]))).toMatchObject({ base: { id: 'u-1' }, superseded: [] })
  })

  it('no rollback target when even the genesis used the items (through its autoencoder)', () => {
    expect(rollbackTarget(lookup, 'u-3', watch([Z]))).toBeUndefined()
  })

  it('uses after the item was recorded as revoked do not count', () => {
    // u-2 records X revoked: u-3 still lists m-alice but trained without X.
    const recorded = [...unet.slice(0, 2), { ...unet[2]!, excludedItems: [X] }, unet[3]!]
    const l = lookupOf([...ae, ...recorded])
    expect(firstUse(l, 'u-3', watch([X]))).toMatchObject({ checkpoint: 'u-2' })
    const clean = [unet[0]!, { ...unet[1]!, excludedItems: [X] }, unet[2]!, unet[3]!]
    expect(firstUse(lookupOf([...ae, ...clean]), 'u-3', watch([X]))).toBeUndefined()
  })

  it('a rollback lineage passes the check; an exclude-style record after use fails it', () => {
    // Rolled back: u-0 -> r-4 (rollback, records X) -> u-5 (alice without X, bob).
    const rolled = [
      ...ae,
      ...unet,
      node('r-4', 5, 'u-1', [], { excludedItems: [X] }),
      node('u-5', 6, 'r-4', [['m-alice'], ['m-bob']]),
    ]
    expect(recordedInLineage(lookupOf(rolled), 'u-5')).toEqual(new Set([X]))
    expect(rollbackViolation(lookupOf(rolled), 'u-5', manifests)).toBeUndefined()
    // Recorded by u-4 on top of u-3 (what exclude does): u-2 used X before the record.
    const excluded = [...ae, ...unet, node('u-4', 5, 'u-3', [['m-bob']], { excludedItems: [X] })]
    expect(rollbackViolation(lookupOf(excluded), 'u-4', manifests)).toMatchObject({
      checkpoint: 'u-2',
      item: X,
    })
    // The superseded u-3 recorded nothing: items revoked after its round do not count against it.
    expect(rollbackViolation(lookupOf(rolled), 'u-3', manifests)).toBeUndefined()
  })

  it('the rollback shape: a parent, no contributions, the receipt among the files', () => {
    const files = new Map([[RECEIPT_FILE, 'sha256:r']])
    expect(isRollbackShape({ parent: { provenance: 'p' }, contributions: [] }, files)).toBe(true)
    expect(isRollbackShape({ parent: null, contributions: [] }, files)).toBe(false)
    expect(isRollbackShape({ parent: { provenance: 'p' }, contributions: [{}] }, files)).toBe(false)
    expect(isRollbackShape({ parent: { provenance: 'p' }, contributions: [] }, new Map())).toBe(false)
  })
})
