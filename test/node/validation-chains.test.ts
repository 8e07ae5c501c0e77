// The consent, contribution and checkpoint chains on real signed documents, with tables of bad inputs.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { ConsentBook } from '../../node/consent/book.ts'
import { addProof } from '../../protocol/dataintegrity.ts'
import {
  type ConsentManifest,
  canonicalBytes,
  type Ed25519PrivateKey,
  manifestDigest,
  manifestSchema,
  type VerifiedRevocation,
} from '../../protocol/index.ts'
import type { ChainValidator } from '../../node/validation/chain.ts'
import { type ConsentPolicy, createConsentValidator } from '../../node/validation/consent.ts'
import { ignore } from '../../node/p2p/gossip-errors.ts'
import { encodeGossipMessage, GOSSIP_KINDS, type GossipKind } from '../../node/validation/messages.ts'
import { createCheckpointValidator, createContributionValidator } from '../../node/validation/statements.ts'
import {
  contributionBy,
  generateKey,
  manifestFor,
  openConsentBook,
  peerOf,
  provenanceBy,
  revocationOf,
  TEST_COOP,
} from './helpers/consent.ts'

const rightsHolder = generateKey()
const otherHolder = generateKey()
const nodeKey = generateKey()
const otherNode = generateKey()
const node = peerOf(nodeKey)

function message(kind: GossipKind, document: unknown, from = node) {
  const topic = GOSSIP_KINDS[kind].topic
  return { from, propagationSource: from, topic, data: encodeGossipMessage(kind, document) }
}

/** Raw bytes with a kind byte, for documents that are deliberately not canonical. */
function rawMessage(kind: GossipKind, text: string, from = node) {
  const body = new TextEncoder().encode(text)
  const data = new Uint8Array(body.byteLength + 1)
  data[0] = GOSSIP_KINDS[kind].tag
  data.set(body, 1)
  return { from, propagationSource: from, topic: GOSSIP_KINDS[kind].topic, data }
}

function tamper<T>(document: T, edit: (copy: T) => void): T {
  const copy = structuredClone(document)
  edit(copy)
  return copy
}

/** Edits a Data Integrity document and signs it again with `key`: only the edited rule is broken. */
function resigned<T extends { proof: { created: string } }>(
  document: T,
  key: Ed25519PrivateKey,
  edit: (copy: Record<string, unknown>) => void,
): unknown {
  const { proof, ...body } = structuredClone(document) as T & Record<string, unknown>
  edit(body)
  return addProof(body as unknown as { '@context': string[] }, key, proof.created)
}

describe('consent chain', () => {
  let opened: Awaited<ReturnType<typeof openConsentBook>>
  let book: ConsentBook
  let validate: ChainValidator
  const policy: ConsentPolicy = {
    acceptedLicenses: ['CC-BY-4.0', 'CC0-1.0'],
    admission: { mode: 'open' },
    intendedUse: { commercialUse: false, weightRedistribution: false },
  }
  let revokedManifest: ConsentManifest
  let partlyRevoked: ConsentManifest

  beforeAll(async () => {
    opened = await openConsentBook(peerOf(otherNode))
    book = opened.book
    validate = createConsentValidator(policy, book)
    revokedManifest = manifestFor(rightsHolder, node)
    await book.addManifest(revokedManifest, false)
    await book.addRevocation(revocationOf(rightsHolder, revokedManifest))
    partlyRevoked = manifestFor(rightsHolder, node)
    await book.addManifest(partlyRevoked, false)
    await book.addRevocation(
      revocationOf(rightsHolder, partlyRevoked, [partlyRevoked.credentialSubject.items[0]?.digest as string]),
    )
  })

  afterAll(async () => {
    await opened.close()
  })

  it('accepts a valid manifest from its custodian and exposes the verified form', async () => {
    const input = message('manifest', manifestFor(rightsHolder, node))
    await expect(validate(input)).resolves.toBeUndefined()
    const accepted = validate.verified(input.data)
    expect(accepted?.kind).toBe('manifest')
    expect((accepted?.verified as { custodian: string }).custodian).toBe(node)
  })

  it('accepts a partly revoked manifest', async () => {
    await expect(validate(message('manifest', partlyRevoked))).resolves.toBeUndefined()
  })

  it('parses each message once and runs its closed schema once', async () => {
    const input = message('manifest', manifestFor(rightsHolder, node))
    const parse = vi.spyOn(JSON, 'parse')
    const schema = vi.spyOn(manifestSchema, 'safeParse')
    try {
      await expect(validate(input)).resolves.toBeUndefined()
      expect(parse).toHaveBeenCalledTimes(1)
      expect(schema).toHaveBeenCalledTimes(1)
    } finally {
      parse.mockRestore()
      schema.mockRestore()
    }
  })

  it('refuses a forged manifest before its closed schema runs: one parse, no schema', async () => {
    const forged = tamper(manifestFor(rightsHolder, node), (m) => {
      m.credentialSubject.license = 'CC0-1.0'
    })
    const parse = vi.spyOn(JSON, 'parse')
    const schema = vi.spyOn(manifestSchema, 'safeParse')
    try {
      await expect(validate(message('manifest', forged))).rejects.toMatchObject({ code: 'BAD_SIGNATURE' })
      expect(parse).toHaveBeenCalledTimes(1)
      expect(schema).not.toHaveBeenCalled()
    } finally {
      parse.mockRestore()
      schema.mockRestore()
    }
  })

  // Faults of the document itself: every honest peer sees them the same way, so the sender is charged.
  const badManifests: [string, () => ReturnType<typeof message>, string][] = [
    [
      'a forged signature (license changed after signing)',
      () =>
        message(
          'manifest',
          tamper(manifestFor(rightsHolder, node), (m) => {
            m.credentialSubject.license = 'CC0-1.0'
          }),
        ),
      'BAD_SIGNATURE',
    ],
    [
      'a proof copied from another manifest',
      () =>
        message(
          'manifest',
          tamper(manifestFor(rightsHolder, node), (m) => {
            m.proof = manifestFor(rightsHolder, node).proof
          }),
        ),
      'BAD_SIGNATURE',
    ],
    [
      'an issuer swapped for another did:key',
      () =>
        message(
          'manifest',
          tamper(manifestFor(rightsHolder, node), (m) => {
            m.issuer = manifestFor(otherHolder, node).issuer
          }),
        ),
      'NOT_ISSUER',
    ],
    [
      'a custodian other than the sender',
      () => message('manifest', manifestFor(rightsHolder, peerOf(otherNode))),
      'FOREIGN_CUSTODIAN',
    ],
    [
      'a license the charter does not accept',
      () => message('manifest', manifestFor(rightsHolder, node, { license: 'CC-BY-NC-4.0' })),
      'LICENSE_NOT_ACCEPTED',
    ],
    [
      'an item license the charter does not accept',
      () =>
        message(
          'manifest',
          manifestFor(rightsHolder, node, {
            items: [
              {
                digest: 'sha256:' + '1'.repeat(64),
                mediaType: 'image/png',
                byteLength: 9,
                license: 'GPL-3.0-only',
              },
            ],
          }),
        ),
      'LICENSE_NOT_ACCEPTED',
    ],
    [
      'usage notAllowed',
      () =>
        message(
          'manifest',
          manifestFor(rightsHolder, node, {
            usage: { 'cawg.ai_generative_training': { use: 'notAllowed' } },
          }),
        ),
      'USAGE_NOT_ALLOWED',
    ],
    [
      'usage constrained',
      () =>
        message(
          'manifest',
          manifestFor(rightsHolder, node, {
            usage: { 'cawg.ai_generative_training': { use: 'constrained', constraint_info: 'ask first' } },
          }),
        ),
      'USAGE_NOT_ALLOWED',
    ],
    [
      'a missing credentialSubject',
      () =>
        message(
          'manifest',
          resigned(manifestFor(rightsHolder, node), rightsHolder, (m) => {
            delete m.credentialSubject
          }),
        ),
      'SCHEMA',
    ],
    [
      'an unknown extra field',
      () =>
        message(
          'manifest',
          resigned(manifestFor(rightsHolder, node), rightsHolder, (m) => {
            m.extra = 1
          }),
        ),
      'SCHEMA',
    ],
    [
      // The signature is checked before the closed schema: a forgery costs one hash and one check.
      'a malformed document whose signature does not cover it',
      () => message('manifest', { ...manifestFor(rightsHolder, node), extra: 1 }),
      'BAD_SIGNATURE',
    ],
    [
      'a revocation sent on the manifest kind',
      () => message('manifest', revocationOf(rightsHolder, revokedManifest)),
      'SCHEMA',
    ],
    [
      'non-canonical JSON bytes',
      () => rawMessage('manifest', JSON.stringify(manifestFor(rightsHolder, node), null, 2)),
      'SCHEMA',
    ],
  ]

  it.each(badManifests)('rejects %s', async (_, build, code) => {
    await expect(validate(build())).rejects.toMatchObject({ action: 'REJECT', code })
  })

  // What depends on our clock or on what we hold: refused, but no one is charged.
  const ignoredManifests: [string, () => ReturnType<typeof message>, string][] = [
    ['a manifest whose issuer revoked every item', () => message('manifest', revokedManifest), 'REVOKED'],
    [
      'an expired manifest',
      () =>
        message(
          'manifest',
          manifestFor(rightsHolder, node, {
            validFrom: new Date(Date.now() - 7200_000),
            validUntil: new Date(Date.now() - 3600_000),
          }),
        ),
      'EXPIRED',
    ],
    [
      'a manifest valid only from tomorrow',
      () =>
        message(
          'manifest',
          manifestFor(rightsHolder, node, { validFrom: new Date(Date.now() + 86_400_000) }),
        ),
      'NOT_YET_VALID',
    ],
  ]

  it.each(ignoredManifests)('ignores %s without charging the sender', async (_, build, code) => {
    await expect(validate(build())).rejects.toMatchObject({ action: 'IGNORE', code })
  })

  it('rejects a manifest from a custodian outside an allowlist charter', async () => {
    const allowlisted = createConsentValidator(
      { ...policy, admission: { mode: 'allowlist', peers: [peerOf(otherNode)] } },
      book,
    )
    await expect(allowlisted(message('manifest', manifestFor(rightsHolder, node)))).rejects.toMatchObject({
      code: 'ADMISSION_DENIED',
    })
  })

  it.each([
    [
      'commercial use',
      { commercialUse: true, weightRedistribution: false },
      { commercialUse: false, weightRedistribution: true },
    ],
    [
      'weight redistribution',
      { commercialUse: false, weightRedistribution: true },
      { commercialUse: true, weightRedistribution: false },
    ],
  ])("rejects a manifest whose scope forbids the charter's %s", async (_, intendedUse, scope) => {
    const strict = createConsentValidator({ ...policy, intendedUse }, book)
    await expect(
      strict(message('manifest', manifestFor(rightsHolder, node, { scope }))),
    ).rejects.toMatchObject({
      action: 'REJECT',
      code: 'SCOPE_NOT_ALLOWED',
    })
    // The same charter admits a manifest that allows that use.
    await expect(
      strict(
        message(
          'manifest',
          manifestFor(rightsHolder, node, { scope: { commercialUse: true, weightRedistribution: true } }),
        ),
      ),
    ).resolves.toBeUndefined()
  })

  it('accepts a revocation by the issuer of a manifest it holds, and again as a re-announcement', async () => {
    const target = manifestFor(rightsHolder, node)
    await book.addManifest(target, false)
    const revocation = message('revocation', revocationOf(rightsHolder, target))
    await expect(validate(revocation)).resolves.toBeUndefined()
    await book.addVerifiedRevocation(validate.verified(revocation.data)?.verified as VerifiedRevocation)
    await expect(validate(revocation)).resolves.toBeUndefined()
  })

  it('holds a revocation for a manifest it does not hold, without relaying it, and applies it when the manifest arrives', async () => {
    const later = manifestFor(rightsHolder, node)
    const before = book.heldRevocations().count
    await expect(validate(message('revocation', revocationOf(rightsHolder, later)))).rejects.toMatchObject({
      action: 'IGNORE',
      code: 'UNKNOWN_MANIFEST',
    })
    expect(book.heldRevocations().count).toBe(before + 1)
    await book.addManifest(later, false)
    expect(book.heldRevocations().count).toBe(before)
    expect(book.fullyRevokedBy(manifestDigest(later), new Set(book.revocations().map((r) => r.digest)))).toBe(
      true,
    )
  })

  it('drops a held revocation by a non-issuer when the manifest arrives and reports its sender', async () => {
    const later = manifestFor(rightsHolder, node)
    const refused: { sender: string; code: string }[] = []
    const unsubscribe = book.onRefusedRevocation((r) => refused.push(r))
    try {
      const forged = message('revocation', revocationOf(otherHolder, later), peerOf(otherNode))
      await expect(validate(forged)).rejects.toMatchObject({ action: 'IGNORE', code: 'UNKNOWN_MANIFEST' })
      await book.addManifest(later, false)
      expect(refused).toEqual([expect.objectContaining({ sender: peerOf(otherNode), code: 'NOT_ISSUER' })])
      expect(
        book.fullyRevokedBy(manifestDigest(later), new Set(book.revocations().map((r) => r.digest))),
      ).toBe(false)
      // Once the manifest is here, the same forgery is a REJECT.
      await expect(validate(forged)).rejects.toMatchObject({ action: 'REJECT', code: 'NOT_ISSUER' })
    } finally {
      unsubscribe()
    }
  })

  const badRevocations: [string, () => ReturnType<typeof message>, string][] = [
    [
      'a revocation by someone other than the issuer',
      () => message('revocation', revocationOf(otherHolder, revokedManifest)),
      'NOT_ISSUER',
    ],
    [
      'a revocation naming items its manifest does not list',
      () => message('revocation', revocationOf(rightsHolder, partlyRevoked, [`sha256:${'3'.repeat(64)}`])),
      'UNKNOWN_ITEM',
    ],
    [
      'a forged revocation signature',
      () =>
        message(
          'revocation',
          tamper(revocationOf(rightsHolder, revokedManifest), (r) => {
            r.credentialSubject.manifest = 'sha256:' + '2'.repeat(64)
          }),
        ),
      'BAD_SIGNATURE',
    ],
    [
      'a revocation with unsorted items',
      () =>
        message(
          'revocation',
          resigned(revocationOf(rightsHolder, revokedManifest), rightsHolder, (r) => {
            ;(r.credentialSubject as { items: string[] }).items = [
              `sha256:${'b'.repeat(64)}`,
              `sha256:${'a'.repeat(64)}`,
            ]
          }),
        ),
      'SCHEMA',
    ],
  ]

  it.each(badRevocations)('rejects %s', async (_, build, code) => {
    await expect(validate(build())).rejects.toMatchObject({ action: 'REJECT', code })
  })
})

describe('contribution chain', () => {
  const validate = createContributionValidator({
    coopId: TEST_COOP,
    admission: { mode: 'open' },
    // A stand-in for the round engine's window check: round 99 is outside it.
    semantics: (verified) => {
      if (verified.predicate.round === 99) throw ignore('ROUND_OUT_OF_WINDOW')
    },
  })

  it('accepts a contribution published by its signer and exposes the verified statement', async () => {
    const input = message('contribution', contributionBy(nodeKey))
    await expect(validate(input)).resolves.toBeUndefined()
    expect((validate.verified(input.data)?.verified as { contributor: string }).contributor).toBe(node)
  })

  const bad: [string, () => ReturnType<typeof message>, string, string][] = [
    [
      'published by someone other than its signer',
      () => message('contribution', contributionBy(otherNode)),
      'REJECT',
      'SENDER_MISMATCH',
    ],
    [
      'for another coop',
      () => message('contribution', contributionBy(nodeKey, { coop: 'sha256:' + 'cd'.repeat(32) })),
      'REJECT',
      'WRONG_COOP',
    ],
    [
      'with a forged signature',
      () =>
        message(
          'contribution',
          tamper(contributionBy(nodeKey), (e) => {
            e.signatures[0] = contributionBy(nodeKey).signatures[0] as (typeof e.signatures)[0]
          }),
        ),
      'REJECT',
      'BAD_SIGNATURE',
    ],
    [
      'with its payload swapped',
      () =>
        message(
          'contribution',
          tamper(contributionBy(nodeKey), (e) => {
            e.payload = contributionBy(nodeKey).payload
          }),
        ),
      'REJECT',
      'BAD_SIGNATURE',
    ],
    [
      'with no signature',
      () =>
        message(
          'contribution',
          tamper(contributionBy(nodeKey), (e) => {
            e.signatures = []
          }),
        ),
      'REJECT',
      'SCHEMA',
    ],
    [
      'that is not an envelope',
      () => message('contribution', { payload: 'x', pad: 'y'.repeat(80) }),
      'REJECT',
      'SCHEMA',
    ],
    [
      'outside the round window (semantic hook)',
      () => message('contribution', contributionBy(nodeKey, { round: 99 })),
      'IGNORE',
      'ROUND_OUT_OF_WINDOW',
    ],
  ]

  it.each(bad)('refuses a contribution %s', async (_, build, action, code) => {
    await expect(validate(build())).rejects.toMatchObject({ action, code })
  })

  it('rejects contributors outside an allowlist charter', async () => {
    const allowlisted = createContributionValidator({
      coopId: TEST_COOP,
      admission: { mode: 'allowlist', peers: [peerOf(otherNode)] },
    })
    await expect(allowlisted(message('contribution', contributionBy(nodeKey)))).rejects.toMatchObject({
      code: 'ADMISSION_DENIED',
    })
  })
})

describe('checkpoint chain', () => {
  const publisherKey = generateKey()
  const secondPublisher = generateKey()
  const publishers = [peerOf(publisherKey), peerOf(secondPublisher)].sort()
  const validate = createCheckpointValidator({ coopId: TEST_COOP, publishers, threshold: 1 })

  it('accepts provenance signed and published by a publisher', async () => {
    await expect(
      validate(message('checkpoint', provenanceBy([publisherKey]), peerOf(publisherKey))),
    ).resolves.toBeUndefined()
  })

  const bad: [string, () => ReturnType<typeof message>, string][] = [
    [
      'published by a non-publisher',
      () => message('checkpoint', provenanceBy([publisherKey]), node),
      'NOT_PUBLISHER',
    ],
    [
      'signed by a non-publisher',
      () => message('checkpoint', provenanceBy([nodeKey]), peerOf(publisherKey)),
      'NOT_ISSUER',
    ],
    [
      'for another coop',
      () =>
        message(
          'checkpoint',
          provenanceBy([publisherKey], { coop: 'sha256:' + 'cd'.repeat(32) }),
          peerOf(publisherKey),
        ),
      'WRONG_COOP',
    ],
    [
      'with a forged signature',
      () =>
        message(
          'checkpoint',
          tamper(provenanceBy([publisherKey]), (e) => {
            e.payload = provenanceBy([publisherKey]).payload
          }),
          peerOf(publisherKey),
        ),
      'BAD_SIGNATURE',
    ],
  ]

  it.each(bad)('rejects provenance %s', async (_, build, code) => {
    await expect(validate(build())).rejects.toMatchObject({ action: 'REJECT', code })
  })

  it('rejects provenance below the signing threshold', async () => {
    const twoOfTwo = createCheckpointValidator({ coopId: TEST_COOP, publishers, threshold: 2 })
    await expect(
      twoOfTwo(message('checkpoint', provenanceBy([publisherKey]), peerOf(publisherKey))),
    ).rejects.toMatchObject({ code: 'BAD_SIGNATURE' })
    await expect(
      twoOfTwo(message('checkpoint', provenanceBy([publisherKey, secondPublisher]), peerOf(publisherKey))),
    ).resolves.toBeUndefined()
  })
})

describe('message encoding', () => {
  it('puts canonical JSON after the kind byte', () => {
    const doc = { b: 1, a: [1, 2] }
    const data = encodeGossipMessage('contribution', { ...doc, pad: 'x'.repeat(80) })
    expect(data[0]).toBe(GOSSIP_KINDS.contribution.tag)
    expect(
      Buffer.from(data.subarray(1)).equals(Buffer.from(canonicalBytes({ ...doc, pad: 'x'.repeat(80) }))),
    ).toBe(true)
  })
})
