import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sha256Digest } from '../../protocol/digest.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import {
  inclusionProof,
  MerkleTree,
  merkleRoot,
  verifyInclusion,
  type InclusionProof,
} from '../../protocol/merkle.ts'

const h = (...parts: Uint8Array[]) => {
  const hash = createHash('sha256')
  for (const p of parts) hash.update(p)
  return new Uint8Array(hash.digest())
}

/** RFC 6962 MTH written directly from the RFC's recursive definition, as an oracle. */
function referenceRoot(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return h()
  if (leaves.length === 1) return h(Uint8Array.of(0), leaves[0]!)
  let k = 1
  while (k * 2 < leaves.length) k *= 2
  return h(Uint8Array.of(1), referenceRoot(leaves.slice(0, k)), referenceRoot(leaves.slice(k)))
}

const items = (n: number) =>
  Array.from({ length: n }, (_, i) => sha256Digest(Uint8Array.of(i & 0xff, i >> 8)))
const raw = (d: string) => Uint8Array.from(Buffer.from(d.slice(7), 'hex'))

function expectMismatch(fn: () => void): void {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError)
    expect(['MERKLE_MISMATCH', 'SCHEMA']).toContain((error as ProtocolError).code)
    return
  }
  throw new Error('altered proof accepted')
}

describe('RFC 6962 Merkle tree', () => {
  it('matches the recursive definition, including the empty tree', () => {
    expect(merkleRoot([])).toBe('sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    for (let n = 1; n <= 70; n++) {
      const d = items(n)
      expect(merkleRoot(d), `n=${n}`).toBe(`sha256:${Buffer.from(referenceRoot(d.map(raw))).toString('hex')}`)
    }
  })

  // Every size up to 130 (every shape of the last level up to depth 8), then sizes at and around
  // the next powers of two, where a level's last node goes from paired to carried up.
  const SIZES = [...Array.from({ length: 130 }, (_, i) => i + 1), 255, 256, 257, 300, 511, 512, 513]
  it('proves and verifies every leaf of every tree of size 1..130 and around 256 and 512; altered proofs fail', () => {
    for (const n of SIZES) {
      const d = items(n)
      const tree = new MerkleTree(d)
      const root = tree.root()
      expect(root).toBe(merkleRoot(d))
      const otherRoot = merkleRoot(items(n + 1))
      for (let i = 0; i < n; i++) {
        const proof = tree.proof(i)
        if (i === n - 1) expect(proof).toEqual(inclusionProof(d, i))
        verifyInclusion(d[i]!, proof, root)
        // One altered variant per leaf, cycling through the ways a proof can be wrong.
        const otherIndex = (i + 1) % n
        const variants: [string, InclusionProof, string][] = [
          [d[otherIndex]!, proof, root],
          [sha256Digest(Uint8Array.of(0xff, 0xff, 0xff)), proof, root],
          [d[i]!, { ...proof, leafIndex: otherIndex }, root],
          [d[i]!, proof, otherRoot],
        ]
        if (proof.path.length > 0) {
          const flipped = [...proof.path]
          const j = i % flipped.length
          flipped[j] = sha256Digest(Buffer.from(flipped[j]!))
          variants.push([d[i]!, { ...proof, path: flipped }, root])
          variants.push([d[i]!, { ...proof, path: proof.path.slice(0, -1) }, root])
          variants.push([d[i]!, { ...proof, path: [...proof.path].reverse() }, root])
        }
        variants.push([d[i]!, { ...proof, path: [...proof.path, root] }, root])
        // Every leaf gets two alterations, rotating through the kinds so all kinds hit all sizes.
        for (const [item, bad, r] of [variants[i % variants.length]!, variants[(i + 3) % variants.length]!]) {
          // In a 1-leaf tree "the other leaf" is the same leaf: that variant is not an alteration.
          const unaltered =
            item === d[i] && r === root && bad.leafIndex === i && bad.path.join() === proof.path.join()
          if (unaltered) continue
          expectMismatch(() => verifyInclusion(item, bad, r))
        }
      }
    }
    // ~11,000 proofs: seconds alone, tens of seconds on a 2-core machine shared with the multi-process tests.
  }, 600_000)

  it('property: random trees and leaves verify; any single-bit change to a path element fails', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 1000 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (n, leafSeed, elementSeed, bit) => {
          const d = items(n)
          const i = leafSeed % n
          const proof = inclusionProof(d, i)
          const root = merkleRoot(d)
          verifyInclusion(d[i]!, proof, root)
          const path = [...proof.path]
          const j = elementSeed % path.length
          const bytes = raw(path[j]!)
          bytes[bit >> 3]! ^= 1 << (bit & 7)
          path[j] = `sha256:${Buffer.from(bytes).toString('hex')}`
          expectMismatch(() => verifyInclusion(d[i]!, { ...proof, path }, root))
        },
      ),
      { numRuns: 100 },
    )
  })

  it('rejects malformed proofs with typed errors, never another exception', () => {
    const d = items(5)
    const root = merkleRoot(d)
    fc.assert(
      fc.property(fc.anything(), fc.anything(), (leafIndex, path) => {
        try {
          verifyInclusion(d[0]!, { leafIndex, treeSize: 5, path } as unknown as InclusionProof, root)
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError)
        }
      }),
    )
    expect(() => inclusionProof(d, 5)).toThrow(ProtocolError)
  })
})
