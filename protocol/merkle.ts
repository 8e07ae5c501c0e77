// Merkle tree over item digests, exactly as RFC 6962 section 2.1 (and RFC 9162 2.1):
//   MTH({})      = SHA-256()
//   MTH({d0})    = SHA-256(0x00 || d0)
//   MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n
// A leaf's data is the 32 raw bytes of an item's SHA-256 (not its `sha256:` text).
// The level-by-level construction below (pair neighbours, promote an unpaired last node)
// builds the same tree as the recursive split, without recursion.
import { createHash } from 'node:crypto'
import { bytesToDigest, DIGEST_PREFIX, digestToBytes, isDigest } from './digest.ts'
import { ProtocolError } from './errors.ts'

const LEAF_PREFIX = Uint8Array.of(0x00)
const HASH_BYTES = 32

export function leafHash(data: Uint8Array): Uint8Array {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest()
}

// Levels are kept as one contiguous buffer of 32-byte hashes: a million-leaf tree is then a few
// large allocations instead of millions of small ones, which is what dominated the run time.
type Level = Buffer

function levelSize(level: Level): number {
  return level.length / HASH_BYTES
}

function leafLevelFromDigests(itemDigests: readonly string[]): Level {
  const level = Buffer.allocUnsafe(itemDigests.length * HASH_BYTES)
  const input = Buffer.alloc(1 + HASH_BYTES)
  input[0] = 0x00
  for (let i = 0; i < itemDigests.length; i++) {
    const digest = itemDigests[i] as string
    if (!isDigest(digest)) throw new ProtocolError('SCHEMA', `item ${i} is not a sha256:<64 hex> digest`)
    input.write(digest.slice(DIGEST_PREFIX.length), 1, 'hex')
    createHash('sha256')
      .update(input)
      .digest()
      .copy(level, i * HASH_BYTES)
  }
  return level
}

function nextLevel(level: Level): Level {
  const size = levelSize(level)
  const next = Buffer.allocUnsafe(Math.ceil(size / 2) * HASH_BYTES)
  const input = Buffer.alloc(1 + 2 * HASH_BYTES)
  input[0] = 0x01
  for (let i = 0; i + 1 < size; i += 2) {
    level.copy(input, 1, i * HASH_BYTES, (i + 2) * HASH_BYTES)
    createHash('sha256')
      .update(input)
      .digest()
      .copy(next, (i >> 1) * HASH_BYTES)
  }
  // An unpaired last node is promoted unchanged (RFC 6962's split puts it in the right subtree).
  if (size % 2 === 1) level.copy(next, next.length - HASH_BYTES, (size - 1) * HASH_BYTES)
  return next
}

function topOf(levels: Level[]): Uint8Array {
  const top = levels[levels.length - 1] as Level
  return top.length === 0
    ? new Uint8Array(createHash('sha256').digest())
    : new Uint8Array(top.subarray(0, HASH_BYTES))
}

function buildLevels(leafLevel: Level): Level[] {
  const levels = [leafLevel]
  while (levelSize(levels[levels.length - 1] as Level) > 1)
    levels.push(nextLevel(levels[levels.length - 1] as Level))
  return levels
}

/** The Merkle root, as a `sha256:` digest, of item digests in the given order. */
export function merkleRoot(itemDigests: readonly string[]): string {
  let level = leafLevelFromDigests(itemDigests)
  while (levelSize(level) > 1) level = nextLevel(level)
  return bytesToDigest(topOf([level]))
}

export interface InclusionProof {
  /** Zero-based index of the leaf. */
  leafIndex: number
  treeSize: number
  /** Sibling hashes from the leaf up, as `sha256:` digests (RFC 6962 audit path). */
  path: string[]
}

/** A tree built once over item digests, for many proofs (all levels kept in memory). */
export class MerkleTree {
  readonly size: number
  readonly #levels: Level[]
  constructor(itemDigests: readonly string[]) {
    this.size = itemDigests.length
    this.#levels = buildLevels(leafLevelFromDigests(itemDigests))
  }

  /** The RFC 6962 Merkle Tree Hash as a `sha256:` digest. */
  root(): string {
    return bytesToDigest(topOf(this.#levels))
  }

  /** RFC 6962 PATH(m, D[n]) for the leaf at `leafIndex`. */
  proof(leafIndex: number): InclusionProof {
    if (!Number.isSafeInteger(leafIndex) || leafIndex < 0 || leafIndex >= this.size)
      throw new ProtocolError('SCHEMA', `leaf index ${leafIndex} outside a tree of ${this.size}`)
    const path: string[] = []
    let index = leafIndex
    for (let depth = 0; depth < this.#levels.length - 1; depth++) {
      const level = this.#levels[depth] as Level
      const sibling = index ^ 1
      // The last node of an odd level has no sibling at this level: it is promoted unchanged.
      if (sibling < levelSize(level))
        path.push(bytesToDigest(level.subarray(sibling * HASH_BYTES, (sibling + 1) * HASH_BYTES)))
      index >>= 1
    }
    return { leafIndex, treeSize: this.size, path }
  }
}

/** RFC 6962 PATH(m, D[n]) for the leaf at `leafIndex` of the tree over `itemDigests`. */
export function inclusionProof(itemDigests: readonly string[], leafIndex: number): InclusionProof {
  return new MerkleTree(itemDigests).proof(leafIndex)
}

/**
 * Verifies an inclusion proof as RFC 9162 section 2.1.3.2 specifies. Returns normally when
 * `itemDigest` is the leaf at `proof.leafIndex` of the tree of `proof.treeSize` with root
 * `root`; throws MERKLE_MISMATCH otherwise, SCHEMA for malformed input.
 */
export function verifyInclusion(itemDigest: string, proof: InclusionProof, root: string): void {
  const { leafIndex, treeSize, path } = proof
  if (
    !Number.isSafeInteger(treeSize) ||
    !Number.isSafeInteger(leafIndex) ||
    leafIndex < 0 ||
    leafIndex >= treeSize ||
    !Array.isArray(path) ||
    path.length > 64
  )
    throw new ProtocolError('SCHEMA', 'malformed inclusion proof')
  const rootBytes = digestToBytes(root)
  let fn = leafIndex
  let sn = treeSize - 1
  let r = leafHash(digestToBytes(itemDigest))
  const input = Buffer.alloc(1 + 2 * HASH_BYTES)
  input[0] = 0x01
  const hashPair = (left: Uint8Array, right: Uint8Array): Uint8Array => {
    input.set(left, 1)
    input.set(right, 1 + HASH_BYTES)
    return createHash('sha256').update(input).digest()
  }
  for (const p of path) {
    const sibling = digestToBytes(p)
    if (sn === 0) throw new ProtocolError('MERKLE_MISMATCH', 'inclusion proof longer than the tree is deep')
    if (fn % 2 === 1 || fn === sn) {
      r = hashPair(sibling, r)
      if (fn % 2 === 0)
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2)
          sn = Math.floor(sn / 2)
        }
    } else {
      r = hashPair(r, sibling)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  if (sn !== 0) throw new ProtocolError('MERKLE_MISMATCH', 'inclusion proof shorter than the tree is deep')
  if (!Buffer.from(r).equals(Buffer.from(rootBytes)))
    throw new ProtocolError('MERKLE_MISMATCH', 'inclusion proof does not lead to the root')
}
