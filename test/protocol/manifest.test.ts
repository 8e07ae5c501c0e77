import { describe, expect, it } from 'vitest'
import { addProof, eddsaJcs2022HashData } from '../../protocol/dataintegrity.ts'
import { fromBase58btc, toBase58btc } from '../../protocol/encoding.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import { canonicalBytes, canonicalize } from '../../protocol/jcs.ts'
import { didKeyFromPublicKey, generateKey, peerIdString, sign } from '../../protocol/keys.ts'
import { manifestDigest, verifyManifest } from '../../protocol/manifest.ts'
import { inclusionProof, verifyInclusion } from '../../protocol/merkle.ts'
import { verifyRevocation } from '../../protocol/revocation.ts'
import {
  custodianKey,
  digestOf,
  makeManifest,
  makeRevocation,
  manifestItems,
  outsider,
  rightsHolder,
} from './fixtures.ts'

const now = new Date('2026-03-01T00:00:00Z')

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    if (error instanceof ProtocolError) return error.code
    throw error
  }
  return 'ACCEPTED'
}

describe('eddsa-jcs-2022 against the W3C published test vector (w3c/vc-di-eddsa TestVectors/)', () => {
  // keyPair.json: privateKeyMultibase is multicodec ed25519-priv (0x8026) + 32-byte seed.
  const key = generateKey(
    fromBase58btc('z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq', 'key').subarray(2),
  )
  const document = JSON.parse(
    '{"@context":["https://www.w3.org/ns/credentials/v2","https://www.w3.org/ns/credentials/examples/v2"],"credentialSubject":{"alumniOf":"The School of Examples","id":"did:example:abcdefgh"},"description":"A minimum viable example of an Alumni Credential.","id":"urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33","issuer":"https://vc.example/issuers/5678","name":"Alumni Credential","type":["VerifiableCredential","AlumniCredential"],"validFrom":"2023-01-01T00:00:00Z"}',
  )
  const proofConfig = (verificationMethod: string) => ({
    type: 'DataIntegrityProof',
    cryptosuite: 'eddsa-jcs-2022',
    created: '2023-02-24T23:36:38Z',
    verificationMethod,
    proofPurpose: 'assertionMethod',
    '@context': document['@context'],
  })

  it('derives the published public key', () => {
    expect(didKeyFromPublicKey(key.publicKey)).toBe(
      'did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2',
    )
  })

  it('reproduces canonDocJCS.txt, combinedHashJCS.txt and the proofValue of signedJCS.json', () => {
    const didVm =
      'did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2'
    expect(canonicalize(proofConfig(didVm))).toBe(
      '{"@context":["https://www.w3.org/ns/credentials/v2","https://www.w3.org/ns/credentials/examples/v2"],"created":"2023-02-24T23:36:38Z","cryptosuite":"eddsa-jcs-2022","proofPurpose":"assertionMethod","type":"DataIntegrityProof","verificationMethod":"did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"}',
    )
    expect(Buffer.from(eddsaJcs2022HashData(proofConfig(didVm), document)).toString('hex')).toBe(
      '66ab154f5c2890a140cb8388a22a160454f80575f6eae09e5a097cabe539a1db59b7cb6251b8991add1ce0bc83107e3db9dbbab5bd2c28f687db1a03abc92f19',
    )
    const httpsVm = 'https://vc.example/issuers/5678#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2'
    expect(toBase58btc(sign(key, eddsaJcs2022HashData(proofConfig(httpsVm), document)))).toBe(
      'z63t83Y53KfzJ5ZosfKTnqfMcKB2dmTrfjSaQjeNNjAD5srBowQfmWqeRb8rRjmeEuCBEsddF9LsVogtuTsijJKh4',
    )
  })
})

describe('ConsentManifest', () => {
  it('creates a VC 2.0 with an eddsa-jcs-2022 proof that verifies', () => {
    const manifest = makeManifest()
    expect(manifest['@context']).toEqual(['https://www.w3.org/ns/credentials/v2'])
    expect(manifest.proof.cryptosuite).toBe('eddsa-jcs-2022')
    expect(manifest.proof.proofValue.startsWith('z')).toBe(true)
    expect(manifest.issuer).toBe(didKeyFromPublicKey(rightsHolder.publicKey))
    const verified = verifyManifest(canonicalBytes(manifest), {
      now,
      acceptedLicenses: ['CC-BY-4.0'],
      custodian: peerIdString(custodianKey.publicKey),
    })
    expect(verified.digest).toBe(manifestDigest(manifest))
    expect(verified.items.map((i) => i.digest)).toEqual(manifestItems.map((i) => i.digest).sort())
    // Any listed item can be proven a member of the manifest by its Merkle root.
    const digests = verified.items.map((i) => i.digest)
    verifyInclusion(digests[3]!, inclusionProof(digests, 3), verified.merkleRoot)
  })

  it('enforces time, usage, custodian and license rules with their codes', () => {
    const bytes = canonicalBytes(makeManifest())
    expect(codeOf(() => verifyManifest(bytes, { now: new Date('2025-12-31T23:59:59Z') }))).toBe(
      'NOT_YET_VALID',
    )
    expect(codeOf(() => verifyManifest(bytes, { now: new Date('2027-01-01T00:00:00Z') }))).toBe('EXPIRED')
    expect(codeOf(() => verifyManifest(bytes, { now, custodian: peerIdString(outsider.publicKey) }))).toBe(
      'CUSTODIAN_MISMATCH',
    )
    expect(codeOf(() => verifyManifest(bytes, { now, acceptedLicenses: ['CC0-1.0'] }))).toBe(
      'LICENSE_NOT_ACCEPTED',
    )
    const constrained = makeManifest({
      usage: { 'cawg.ai_generative_training': { use: 'constrained', constraint_info: 'only on Sundays' } },
    })
    expect(codeOf(() => verifyManifest(constrained, { now }))).toBe('USAGE_NOT_ALLOWED')
    const notAllowed = makeManifest({ usage: { 'cawg.ai_generative_training': { use: 'notAllowed' } } })
    expect(codeOf(() => verifyManifest(notAllowed, { now }))).toBe('USAGE_NOT_ALLOWED')
    const either = makeManifest({ license: 'CC-BY-4.0 OR MIT' })
    expect(verifyManifest(either, { now, acceptedLicenses: ['MIT'] }).digest).toMatch(/^sha256:/)
    const both = makeManifest({ license: 'CC-BY-4.0 AND MIT' })
    expect(codeOf(() => verifyManifest(both, { now, acceptedLicenses: ['MIT'] }))).toBe(
      'LICENSE_NOT_ACCEPTED',
    )
    expect(codeOf(() => makeManifest({ license: 'Not A License' }))).toBe('INVALID_LICENSE')
  })

  it('refuses terminal controls and bidirectional overrides in text fields; free text keeps its lines', () => {
    const hostile = [
      'Ada\u001b]0;owned\u0007', // an escape sequence that retitles a terminal
      'Ada\rEve', // carriage return: overwrites the line on screen
      'Ada\u009b2J', // C1 control sequence introducer
      'Ada \u202eevE', // right-to-left override: displays reversed
      'Ada\u2066x\u2069',
    ]
    for (const name of hostile) {
      expect(codeOf(() => makeManifest({ attribution: { name } }))).toBe('SCHEMA')
      // Signed by other tools, with a valid proof: the verifier refuses it all the same.
      const { proof, ...unsecured } = structuredClone(makeManifest())
      unsecured.credentialSubject.attribution.name = name
      const forged = addProof(unsecured, rightsHolder, proof.created)
      expect(codeOf(() => verifyManifest(forged, { now }))).toBe('SCHEMA')
    }
    expect(codeOf(() => makeManifest({ attribution: { name: 'Ada', uri: 'https://x.org/\u001b[2J' } }))).toBe(
      'SCHEMA',
    )
    expect(codeOf(() => makeManifest({ attribution: { name: 'Ada', text: 'a\u001b[31mred' } }))).toBe(
      'SCHEMA',
    )
    const lines = makeManifest({ attribution: { name: 'أدا', text: 'Images by Ada\n\tCC-BY 4.0' } })
    expect(verifyManifest(lines, { now }).digest).toMatch(/^sha256:/)
  })

  it('rejects a manifest whose proof was made by a key other than the issuer', () => {
    const manifest = makeManifest()
    const forged = makeManifest({ issuerKey: outsider })
    const mixed = { ...manifest, proof: forged.proof }
    expect(codeOf(() => verifyManifest(mixed, { now }))).toBe('ISSUER_MISMATCH')
    const reissued = { ...forged, issuer: manifest.issuer }
    expect(codeOf(() => verifyManifest(reissued, { now }))).toBe('ISSUER_MISMATCH')
  })

  it('applies revocations: some items, then all items', () => {
    const manifest = makeManifest()
    const digest = manifestDigest(manifest)
    const some = makeRevocation(digest, [manifestItems[1]!.digest, digestOf('not in manifest')])
    const verifiedSome = verifyRevocation(canonicalBytes(some))
    expect(verifiedSome.items).toHaveLength(2)
    const result = verifyManifest(manifest, { now, revocations: [canonicalBytes(some)] })
    expect([...result.revokedItems]).toEqual([manifestItems[1]!.digest])
    expect(result.appliedRevocations).toEqual([verifiedSome.digest])
    expect(
      codeOf(() => verifyManifest(manifest, { now, revocations: [makeRevocation(digest, 'all')] })),
    ).toBe('REVOKED')
    // A verified result is reused; a look-alike object is not trusted, it is verified (and fails).
    expect(verifyManifest(manifest, { now, revocations: [verifiedSome] }).revokedItems.size).toBe(1)
    const lookAlike = { ...verifiedSome, items: manifestItems.map((i) => i.digest).sort() }
    expect(codeOf(() => verifyManifest(manifest, { now, revocations: [lookAlike] }))).toBe('UNKNOWN_TYPE')
    const unrelated = makeRevocation(digestOf('other manifest'), 'all')
    expect(verifyManifest(manifest, { now, revocations: [unrelated] }).revokedItems.size).toBe(0)
    const byOutsider = { ...makeRevocation(digest, 'all') }
    const outsiderNotice = JSON.parse(JSON.stringify(byOutsider))
    const forged = makeManifest({ issuerKey: outsider })
    outsiderNotice.issuer = forged.issuer
    expect(codeOf(() => verifyRevocation(outsiderNotice))).toBe('ISSUER_MISMATCH')
  })
})
