import { describe, expect, it } from 'vitest'
import { coopId, createCharter, verifyCharter } from '../../protocol/charter.ts'
import { verifyContribution } from '../../protocol/contribution.ts'
import { addSignature, createEnvelope, envelopeBytes, pae, type DsseEnvelope } from '../../protocol/dsse.ts'
import { ProtocolError } from '../../protocol/errors.ts'
import { canonicalBytes } from '../../protocol/jcs.ts'
import { peerIdString } from '../../protocol/keys.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import {
  charterContent,
  digestOf,
  makeCharter,
  makeContribution,
  makeProvenance,
  nodeKey,
  outsider,
  publisherA,
  publisherB,
} from './fixtures.ts'

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    if (error instanceof ProtocolError) return error.code
    throw error
  }
  return 'ACCEPTED'
}

const publishers = [peerIdString(publisherA.publicKey), peerIdString(publisherB.publicKey)]

describe('DSSE', () => {
  it('encodes PAE exactly as the DSSE spec example', () => {
    // DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    const out = new TextDecoder().decode(
      pae('http://example.com/HelloWorld', new TextEncoder().encode('hello world')),
    )
    expect(out).toBe('DSSEv1 29 http://example.com/HelloWorld 11 hello world')
  })

  it('counts bytes, not characters, in LEN', () => {
    const out = pae('t', new TextEncoder().encode('é'))
    expect(new TextDecoder().decode(out)).toBe('DSSEv1 1 t 2 é')
  })
})

describe('CoopCharter', () => {
  it('creates and verifies; coop id is the digest of the canonical charter', () => {
    const { envelope, coopId: id, charter } = makeCharter()
    const verified = verifyCharter(envelopeBytes(envelope))
    expect(verified.coopId).toBe(id)
    expect(coopId(charter)).toBe(id)
    expect(verified.signers).toEqual([...publishers].sort())
    expect(verified.charter.rounds.aggregator).toEqual({ kind: 'trimmed', fraction: 0.2 })
  })

  it('rejects charters that break its rules with typed codes', () => {
    expect(codeOf(() => createCharter(charterContent(), [publisherA]))).toBe('THRESHOLD_NOT_MET')
    expect(codeOf(() => createCharter(charterContent(), [publisherA, outsider]))).toBe('ISSUER_MISMATCH')
    expect(codeOf(() => createCharter(charterContent({ threshold: 3 }), [publisherA, publisherB]))).toBe(
      'SCHEMA',
    )
    expect(
      codeOf(() =>
        createCharter(charterContent({ acceptedLicenses: ['CC-BY-4.0', 'NotALicense'] }), [
          publisherA,
          publisherB,
        ]),
      ),
    ).toBe('INVALID_LICENSE')
    // Sets are normalized: the same charter in any order has one coop id.
    const reversed = createCharter(
      charterContent({
        publishers: [...publishers].sort().reverse(),
        acceptedLicenses: ['CC0-1.0', 'CC-BY-4.0'],
      }),
      [publisherA, publisherB],
    )
    expect(reversed.coopId).toBe(makeCharter().coopId)
    expect(coopId(charterContent({ publishers: [...publishers].sort().reverse() }))).toBe(
      makeCharter().coopId,
    )
    expect(
      codeOf(() => createCharter({ ...charterContent(), extra: 1 } as never, [publisherA, publisherB])),
    ).toBe('SCHEMA')
  })
})

describe('ContributionStatement', () => {
  it('is an in-toto v1 statement in DSSE signed by the node', () => {
    const { coopId: coop } = makeCharter()
    const envelope = makeContribution(coop)
    expect(envelope.payloadType).toBe('application/vnd.in-toto+json')
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8'))
    expect(statement._type).toBe('https://in-toto.io/Statement/v1')
    expect(statement.subject).toEqual([
      { name: 'delta.safetensors', digest: { sha256: digestOf('delta bytes').slice(7) } },
    ])
    const verified = verifyContribution(envelopeBytes(envelope), {
      coopId: coop,
      round: 3,
      deltaDigest: digestOf('delta bytes'),
    })
    expect(verified.contributor).toBe(peerIdString(nodeKey.publicKey))
    expect(verified.predicate.manifests).toEqual([digestOf('m1'), digestOf('m2')].sort())
    expect(codeOf(() => verifyContribution(envelope, { round: 4 }))).toBe('SCHEMA')
    expect(codeOf(() => verifyContribution(envelope, { deltaDigest: digestOf('other') }))).toBe(
      'DIGEST_MISMATCH',
    )
  })

  it('rejects a payload re-signed by another key under the original keyid', () => {
    const { coopId: coop } = makeCharter()
    const envelope = makeContribution(coop)
    const forged = createEnvelope(envelope.payloadType, Buffer.from(envelope.payload, 'base64'), [outsider])
    const swapped: DsseEnvelope = {
      ...envelope,
      signatures: [{ keyid: envelope.signatures[0]!.keyid, sig: forged.signatures[0]!.sig }],
    }
    expect(codeOf(() => verifyContribution(swapped))).toBe('BAD_SIGNATURE')
    expect(codeOf(() => verifyContribution(addSignature(envelope, outsider)))).toBe('SCHEMA')
  })
})

describe('CheckpointProvenance', () => {
  it('verifies with the publisher threshold and names its files', () => {
    const { coopId: coop } = makeCharter()
    const contribution = verifyContribution(makeContribution(coop))
    const envelope = makeProvenance(coop, contribution.digest)
    const verified = verifyProvenance(canonicalBytes(envelope), { publishers, threshold: 2, coopId: coop })
    expect([...verified.files.keys()]).toEqual(['config.json', 'model.safetensors'])
    expect(verified.files.get('model.safetensors')).toBe(digestOf('model'))
    expect(verified.predicate.contributions[0]!.statement).toBe(contribution.digest)
    expect(codeOf(() => verifyProvenance(envelope, { publishers: [publishers[0]!], threshold: 1 }))).toBe(
      'ISSUER_MISMATCH',
    )
    expect(codeOf(() => verifyProvenance(envelope, { publishers, threshold: 3 }))).toBe('THRESHOLD_NOT_MET')
  })
})

describe('size limits', () => {
  it('reject oversized input before parsing it, for every document kind', async () => {
    const { verifyManifest } = await import('../../protocol/manifest.ts')
    const { verifyRevocation } = await import('../../protocol/revocation.ts')
    const limits = await import('../../protocol/constants.ts')
    const cases: [string, number, (input: Uint8Array | string) => unknown][] = [
      ['manifest', limits.MANIFEST_MAX_BYTES, (i) => verifyManifest(i, { now: new Date() })],
      ['revocation', limits.REVOCATION_MAX_BYTES, (i) => verifyRevocation(i)],
      ['charter', limits.CHARTER_MAX_BYTES, (i) => verifyCharter(i)],
      ['contribution', limits.CONTRIBUTION_MAX_BYTES, (i) => verifyContribution(i)],
      ['provenance', limits.PROVENANCE_MAX_BYTES, (i) => verifyProvenance(i, { publishers, threshold: 1 })],
    ]
    for (const [kind, limit, verify] of cases) {
      // Not JSON at all: only a size check that runs first can give TOO_LARGE here.
      const bytes = new Uint8Array(limit + 1).fill(0xff)
      expect(
        codeOf(() => verify(bytes)),
        kind,
      ).toBe('TOO_LARGE')
      expect(
        codeOf(() => verify('\u00e9'.repeat(Math.ceil((limit + 1) / 2)))),
        kind,
      ).toBe('TOO_LARGE')
      expect(
        codeOf(() => verify(new Uint8Array(limit).fill(0xff))),
        kind,
      ).toBe('INVALID_JSON')
    }
  })
})
