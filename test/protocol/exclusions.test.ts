// Compact exclusions: a provenance signs counts, an items root and the digest of a details
// document; the details are checked against that summary. One row per code, in check order, and
// the scope check of verifyManifest against a charter's intended use.
import { describe, expect, it } from 'vitest'
import { canonicalize } from '../../protocol/jcs.ts'
import { summarizeExclusions, verifyExclusionDetails, NO_EXCLUSIONS } from '../../protocol/exclusions.ts'
import { verifyManifest } from '../../protocol/manifest.ts'
import { inclusionProof, merkleRoot, verifyInclusion } from '../../protocol/merkle.ts'
import { GOSSIP_MAX_MESSAGE_BYTES } from '../../node/constants.ts'
import { expectCode } from './expect-code.ts'
import { digestOf, makeManifest } from './fixtures.ts'

const digests = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => digestOf(`${prefix} ${i}`))

describe('exclusion details against the signed summary', () => {
  const input = { revocations: digests('r', 3), expiredManifests: digests('m', 1), items: digests('i', 5) }
  const built = summarizeExclusions(input)
  const text = new TextDecoder().decode(built.bytes)

  it('sorts and de-duplicates, counts, roots the items and names the details by digest', () => {
    const again = summarizeExclusions({ ...input, items: [...input.items].reverse().concat(input.items[0]!) })
    expect(again.summary).toEqual(built.summary)
    expect(built.summary).toMatchObject({ revocations: 3, expiredManifests: 1, items: 5 })
    expect(built.summary.itemsRoot).toBe(merkleRoot([...input.items].sort()))
    expect(verifyExclusionDetails(built.bytes, built.summary)).toEqual(built.details)
    // One excluded item can be proved from the summary alone.
    const sorted = built.details.items
    verifyInclusion(sorted[2]!, inclusionProof(sorted, 2), built.summary.itemsRoot)
  })

  it('needs no details when nothing is excluded', () => {
    const empty = summarizeExclusions({ revocations: [], expiredManifests: [], items: [] })
    expect(empty.bytes).toBeUndefined()
    expect(empty.summary.details).toBeNull()
    expect(verifyExclusionDetails(undefined, empty.summary)).toEqual(NO_EXCLUSIONS)
  })

  it('stays a few hundred bytes in the provenance however much is excluded', () => {
    const big = summarizeExclusions({
      revocations: digests('r', 2_000),
      expiredManifests: [],
      items: digests('i', 20_000),
    })
    expect(canonicalize(big.summary).length).toBeLessThan(400)
    // The details would not fit one gossip message (1 MiB); they move as a blob by digest.
    expect(big.bytes!.byteLength).toBeGreaterThan(GOSSIP_MAX_MESSAGE_BYTES)
  })

  const tampered = (edit: (d: Record<string, unknown>) => void) => {
    const doc = JSON.parse(text) as Record<string, unknown>
    edit(doc)
    return new TextEncoder().encode(canonicalize(doc))
  }
  const rows: [string, () => unknown, string][] = [
    [
      'counts signed but no details named',
      () => verifyExclusionDetails(undefined, { ...built.summary, details: null }),
      'SCHEMA',
    ],
    [
      'no items but a non-empty root',
      () =>
        verifyExclusionDetails(undefined, {
          revocations: 0,
          expiredManifests: 0,
          items: 0,
          itemsRoot: digestOf('x'),
          details: null,
        }),
      'MERKLE_MISMATCH',
    ],
    ['details named but missing', () => verifyExclusionDetails(undefined, built.summary), 'SCHEMA'],
    [
      'details not canonical',
      () =>
        verifyExclusionDetails(
          new TextEncoder().encode(JSON.stringify(JSON.parse(text), null, 1)),
          built.summary,
        ),
      'NOT_CANONICAL',
    ],
    [
      'an item dropped from the details',
      () =>
        verifyExclusionDetails(
          tampered((d) => (d.items as string[]).pop()),
          built.summary,
        ),
      'DIGEST_MISMATCH',
    ],
    [
      'an item dropped, summary re-pointed at the new digest',
      () => {
        const bytes = tampered((d) => (d.items as string[]).pop())
        return verifyExclusionDetails(bytes, { ...built.summary, details: digestOfBytes(bytes) })
      },
      'MERKLE_MISMATCH',
    ],
    [
      'an unknown member',
      () => {
        const bytes = tampered((d) => (d.extra = 1))
        return verifyExclusionDetails(bytes, { ...built.summary, details: digestOfBytes(bytes) })
      },
      'SCHEMA',
    ],
  ]
  it.each(rows)('%s', (_, fn, code) => expectCode(fn, code))
})

describe('a manifest’s scope against the cooperative’s intended use', () => {
  const now = new Date('2026-03-01T00:00:00Z')
  const noCommerce = makeManifest() // commercialUse false, weightRedistribution true
  const keepWeights = makeManifest({ scope: { commercialUse: true, weightRedistribution: false } })
  const rows: [string, object, { commercialUse: boolean; weightRedistribution: boolean }, string][] = [
    [
      'non-commercial coop, non-commercial manifest',
      noCommerce,
      { commercialUse: false, weightRedistribution: false },
      'ACCEPTED',
    ],
    [
      'commercial coop, non-commercial manifest',
      noCommerce,
      { commercialUse: true, weightRedistribution: false },
      'SCOPE_NOT_ALLOWED',
    ],
    [
      'redistributing coop, weights-stay manifest',
      keepWeights,
      { commercialUse: false, weightRedistribution: true },
      'SCOPE_NOT_ALLOWED',
    ],
    [
      'commercial coop keeping weights, commercial manifest',
      keepWeights,
      { commercialUse: true, weightRedistribution: false },
      'ACCEPTED',
    ],
  ]
  it.each(rows)('%s', (_, manifest, intendedUse, code) => {
    if (code === 'ACCEPTED') expect(verifyManifest(manifest, { now, intendedUse }).digest).toMatch(/^sha256:/)
    else expectCode(() => verifyManifest(manifest, { now, intendedUse }), code)
  })
})

function digestOfBytes(bytes: Uint8Array): string {
  return digestOf(new TextDecoder().decode(bytes))
}
