import { execFileSync, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { verifyAudit } from '../../protocol/audit.ts'
import { verifyCharter } from '../../protocol/charter.ts'
import { verifyContribution } from '../../protocol/contribution.ts'
import { identifyDocument } from '../../protocol/document.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import { verifyManifest } from '../../protocol/manifest.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import { verifyReceipt } from '../../protocol/receipt.ts'
import { verifyRevocation } from '../../protocol/revocation.ts'
import { buildVectors, type VectorExpectation } from '../vectors/generate.ts'

const dir = join(import.meta.dirname, '..', 'vectors')
const read = (file: string) => new Uint8Array(readFileSync(join(dir, file)))
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as {
  verifyAt: string
  vectors: VectorExpectation[]
}

function verifyVector(vector: VectorExpectation): void {
  const bytes = read(vector.file)
  const now = new Date(expected.verifyAt)
  switch (vector.kind) {
    case 'manifest':
      verifyManifest(bytes, {
        now,
        revocations: (vector.options?.revocations ?? []).map(read),
        ...(vector.options?.acceptedLicenses ? { acceptedLicenses: vector.options.acceptedLicenses } : {}),
      })
      return
    case 'revocation':
      verifyRevocation(bytes)
      return
    case 'charter':
      verifyCharter(bytes)
      return
    case 'contribution':
      verifyContribution(bytes)
      return
    case 'provenance': {
      const charter = verifyCharter(read(vector.options?.charter ?? 'charter.valid.json'))
      verifyProvenance(bytes, {
        publishers: charter.charter.publishers,
        threshold: charter.charter.threshold,
        coopId: charter.coopId,
      })
      return
    }
    case 'audit':
      verifyAudit(bytes)
      return
    case 'receipt': {
      const charter = verifyCharter(read(vector.options?.charter ?? 'charter.valid.json'))
      verifyReceipt(bytes, {
        publishers: charter.charter.publishers,
        threshold: charter.charter.threshold,
        coopId: charter.coopId,
      })
      return
    }
  }
}

describe('committed test vectors', () => {
  it('are exactly what the generator produces from the TEST-ONLY keys', () => {
    const { files } = buildVectors()
    const committed = readdirSync(dir).filter((f) => f.endsWith('.json'))
    expect(committed.sort()).toEqual([...files.keys()].sort())
    for (const [name, content] of files) expect(readFileSync(join(dir, name), 'utf8'), name).toBe(content)
  })

  it('has one valid file per document kind', () => {
    const valid = expected.vectors
      .filter((v) => v.expect === 'VALID' && v.file.endsWith('.valid.json'))
      .map((v) => v.kind)
    expect(valid.sort()).toEqual([
      'audit',
      'charter',
      'contribution',
      'manifest',
      'provenance',
      'receipt',
      'revocation',
    ])
  })

  for (const vector of expected.vectors) {
    it(`${vector.file}: ${vector.expect} (${vector.description})`, () => {
      let outcome = 'VALID'
      try {
        verifyVector(vector)
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error
        outcome = error.code
      }
      expect(outcome).toBe(vector.expect)
      // Every vector that parses as a document is routed to the right verifier by content.
      if (vector.expect === 'VALID') expect(identifyDocument(read(vector.file))).toBe(vector.kind)
    })
  }

  // A second implementation, in Python from docs/PROTOCOL.md alone, must reach the same verdicts.
  const hasPythonCrypto =
    spawnSync('python3', ['-c', 'import cryptography'], { stdio: 'ignore' }).status === 0
  it.skipIf(!hasPythonCrypto)(
    'an independent Python verifier reaches the same verdict on every vector',
    () => {
      const out = execFileSync('python3', [join(dir, 'independent_verify.py'), dir], { encoding: 'utf8' })
      expect(out).toContain(`${expected.vectors.length}/${expected.vectors.length} vectors agree`)
    },
  )
})
