// Builds the committed test vectors from fixed TEST-ONLY keys. Run to rewrite the files:
//   node_modules/.bin/node test/vectors/generate.ts
// Everything is deterministic (fixed seeds, fixed times, Ed25519 is deterministic), so the
// vectors test re-runs this and requires byte-identical output.
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createAudit } from '../../protocol/audit.ts'
import { createCharter, type CoopCharter } from '../../protocol/charter.ts'
import { CHARTER_PAYLOAD_TYPE } from '../../protocol/constants.ts'
import { createContribution } from '../../protocol/contribution.ts'
import { addProof } from '../../protocol/dataintegrity.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { addSignature, createEnvelope, type DsseEnvelope } from '../../protocol/dsse.ts'
import { toBase64 } from '../../protocol/encoding.ts'
import { canonicalize } from '../../protocol/jcs.ts'
import { didKeyFromPublicKey, generateKey, marshalPrivateKey, peerIdString, type Ed25519PrivateKey } from '../../protocol/keys.ts'
import { createManifest, manifestDigest, type ConsentManifest } from '../../protocol/manifest.ts'
import { summarizeExclusions } from '../../protocol/exclusions.ts'
import { createProvenance } from '../../protocol/provenance.ts'
import { createReceipt } from '../../protocol/receipt.ts'
import { createRevocation } from '../../protocol/revocation.ts'
import { signStatement } from '../../protocol/statement.ts'

/** Seeds are SHA-256 of a public label: anyone can re-derive them, which is the point: TEST ONLY. */
function testKey(label: string): { label: string; key: Ed25519PrivateKey } {
  const seed = Buffer.from(sha256Digest(new TextEncoder().encode(`diffusion-coop TEST-ONLY key: ${label}`)).slice(7), 'hex')
  return { label, key: generateKey(new Uint8Array(seed)) }
}

export const TEST_KEYS = {
  rightsHolder: testKey('rights holder'),
  custodian: testKey('custodian node'),
  publisherA: testKey('publisher A'),
  publisherB: testKey('publisher B'),
  outsider: testKey('outsider'),
}

export const VERIFY_AT = '2026-06-15T12:00:00Z'

export type VectorKind = 'manifest' | 'revocation' | 'charter' | 'contribution' | 'provenance' | 'audit' | 'receipt'

export interface VectorExpectation {
  file: string
  kind: VectorKind
  /** 'VALID' or the ProtocolError code the verifier must throw. */
  expect: string
  description: string
  /** Verifier options, by file name where they refer to other vectors. */
  options?: { acceptedLicenses?: string[]; revocations?: string[]; charter?: string }
}

const text = (value: unknown) => canonicalize(value)
const digestOf = (label: string) => sha256Digest(new TextEncoder().encode(label))
const b64json = (value: unknown) => toBase64(new TextEncoder().encode(canonicalize(value)))
const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

function resignEnvelope(envelope: DsseEnvelope, mutate: (payload: Record<string, unknown>) => void, signers: Ed25519PrivateKey[], payloadType = envelope.payloadType): DsseEnvelope {
  const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Record<string, unknown>
  mutate(payload)
  return createEnvelope(payloadType, new TextEncoder().encode(canonicalize(payload)), signers)
}

/** Re-signs an altered manifest body with the issuer key, so only the intended rule is broken. */
function resignManifest(manifest: ConsentManifest, mutate: (doc: Record<string, any>) => void, key = TEST_KEYS.rightsHolder.key): Record<string, unknown> {
  const { proof, ...body } = clone(manifest) as ConsentManifest & Record<string, any>
  mutate(body)
  return addProof(body as { '@context': string[] }, key, proof.created)
}

export function buildVectors(): { files: Map<string, string>; expectations: VectorExpectation[] } {
  const { rightsHolder, custodian, publisherA, publisherB, outsider } = TEST_KEYS
  const files = new Map<string, string>()
  const expectations: VectorExpectation[] = []
  const add = (file: string, kind: VectorKind, expect: string, description: string, content: string, options?: VectorExpectation['options']) => {
    files.set(file, content)
    expectations.push({ file, kind, expect, description, ...(options === undefined ? {} : { options }) })
  }

  // --- ConsentManifest -------------------------------------------------------------------
  const manifest = createManifest({
    issuerKey: rightsHolder.key,
    custodian: peerIdString(custodian.key.publicKey),
    license: 'CC-BY-4.0',
    attribution: { name: 'Test Artist', uri: 'https://example.org/test-artist', text: 'Images by Test Artist, licensed under CC-BY 4.0' },
    scope: { commercialUse: false, weightRedistribution: true },
    items: [0, 1, 2, 3, 4].map((i) => ({ digest: digestOf(`test image ${i}`), mediaType: 'image/png' as const, byteLength: 2000 + i })),
    validFrom: new Date('2026-01-01T00:00:00Z'),
    validUntil: new Date('2027-01-01T00:00:00Z'),
  })
  const manifestText = text(manifest)
  add('manifest.valid.json', 'manifest', 'VALID', 'a consent manifest for 5 items', manifestText, { acceptedLicenses: ['CC-BY-4.0'] })
  add('manifest.pretty-printed.json', 'manifest', 'NOT_CANONICAL', 'the valid manifest, indented: only the canonical bytes are accepted', JSON.stringify(manifest, null, 2))
  add('manifest.truncated.json', 'manifest', 'INVALID_JSON', 'the valid manifest cut short', manifestText.slice(0, manifestText.length - 10))
  {
    const m = clone(manifest)
    m.credentialSubject.custodian = peerIdString(outsider.key.publicKey)
    add('manifest.custodian-changed.json', 'manifest', 'BAD_SIGNATURE', 'custodian replaced after signing', text(m))
  }
  {
    const m = clone(manifest)
    const last = m.proof.proofValue.at(-1) === '1' ? '2' : '1'
    m.proof.proofValue = m.proof.proofValue.slice(0, -1) + last
    add('manifest.proof-value-changed.json', 'manifest', 'BAD_SIGNATURE', 'last character of proofValue changed', text(m))
  }
  {
    const m = clone(manifest)
    m.proof.created = '2026-01-01T00:00:01Z'
    add('manifest.proof-created-changed.json', 'manifest', 'BAD_SIGNATURE', 'proof.created changed (the proof configuration is signed too)', text(m))
  }
  {
    const m = clone(manifest) as Record<string, any>
    m.proof.cryptosuite = 'eddsa-rdfc-2022'
    add('manifest.unknown-cryptosuite.json', 'manifest', 'UNSUPPORTED_CRYPTOSUITE', 'cryptosuite is not eddsa-jcs-2022', text(m))
  }
  add('manifest.merkle-root-wrong.json', 'manifest', 'MERKLE_MISMATCH', 'validly signed, but merkleRoot does not match the items', text(resignManifest(manifest, (d) => (d.credentialSubject.merkleRoot = digestOf('wrong root')))))
  add('manifest.item-count-wrong.json', 'manifest', 'MERKLE_MISMATCH', 'validly signed, but itemCount is 4 for 5 items', text(resignManifest(manifest, (d) => (d.credentialSubject.itemCount = 4))))
  add('manifest.items-unsorted.json', 'manifest', 'MERKLE_MISMATCH', 'validly signed, items not in digest order', text(resignManifest(manifest, (d) => d.credentialSubject.items.reverse())))
  add('manifest.extra-field.json', 'manifest', 'SCHEMA', 'validly signed, with a field the closed schema does not define', text(resignManifest(manifest, (d) => (d.credentialSubject.note = 'extra'))))
  add('manifest.expired.json', 'manifest', 'EXPIRED', 'validly signed, validUntil before the verification time', text(resignManifest(manifest, (d) => (d.validUntil = '2026-06-01T00:00:00Z'))))
  add('manifest.not-yet-valid.json', 'manifest', 'NOT_YET_VALID', 'validly signed, validFrom after the verification time', text(resignManifest(manifest, (d) => (d.validFrom = '2026-07-01T00:00:00Z'))))
  add(
    'manifest.usage-constrained.json',
    'manifest',
    'USAGE_NOT_ALLOWED',
    'validly signed, generative training "constrained" (counts as not allowed)',
    text(resignManifest(manifest, (d) => (d.credentialSubject.usage['cawg.ai_generative_training'] = { use: 'constrained', constraint_info: 'non-commercial research only' }))),
  )
  add('manifest.license-invalid.json', 'manifest', 'INVALID_LICENSE', 'validly signed, license is not an SPDX expression', text(resignManifest(manifest, (d) => (d.credentialSubject.license = 'Creative Commons'))))
  add('manifest.license-not-accepted.json', 'manifest', 'LICENSE_NOT_ACCEPTED', 'the valid manifest checked against a coop accepting only CC0-1.0', manifestText, { acceptedLicenses: ['CC0-1.0'] })
  add('manifest.signed-by-other-key.json', 'manifest', 'ISSUER_MISMATCH', 'issuer is the rights holder, proof made with another did:key', text(resignManifest(manifest, () => {}, outsider.key)))

  // --- RevocationNotice ------------------------------------------------------------------
  const digest = manifestDigest(manifest)
  const revocation = createRevocation({ issuerKey: rightsHolder.key, manifest: digest, items: 'all', reason: 'consent withdrawn', revokedAt: new Date('2026-05-01T00:00:00Z') })
  add('revocation.valid.json', 'revocation', 'VALID', 'withdraws consent for every item of manifest.valid.json', text(revocation))
  add('manifest.revoked.json', 'manifest', 'REVOKED', 'the valid manifest with revocation.valid.json applied', manifestText, { revocations: ['revocation.valid.json'] })
  {
    const r = clone(revocation)
    r.credentialSubject.manifest = digestOf('another manifest')
    add('revocation.manifest-changed.json', 'revocation', 'BAD_SIGNATURE', 'target manifest replaced after signing', text(r))
  }
  {
    const r = clone(revocation)
    r.issuer = didKeyFromPublicKey(outsider.key.publicKey)
    add('revocation.issuer-changed.json', 'revocation', 'ISSUER_MISMATCH', 'issuer replaced; the proof is still by the rights holder', text(r))
  }
  const partial = createRevocation({ issuerKey: rightsHolder.key, manifest: digest, items: [digestOf('test image 1')], revokedAt: new Date('2026-05-01T00:00:00Z') })
  add('revocation.partial.json', 'revocation', 'VALID', 'withdraws consent for one item of manifest.valid.json', text(partial))

  // --- CoopCharter -----------------------------------------------------------------------
  const publishers = [peerIdString(publisherA.key.publicKey), peerIdString(publisherB.key.publicKey)].sort()
  const charterContent: CoopCharter = {
    name: 'test vectors coop',
    model: { name: 'tiny', image: { size: 32, channels: 3 }, latent: { size: 8, channels: 4 } },
    rounds: { innerSteps: 50, outerLr: 0.7, outerMomentum: 0.9, aggregator: { kind: 'mean' }, compression: { kind: 'int8' }, quorum: 2, deadlineSeconds: 300 },
    publishers,
    threshold: 2,
    admission: { mode: 'open' },
    acceptedLicenses: ['CC-BY-4.0', 'CC0-1.0'],
    intendedUse: { commercialUse: false, weightRedistribution: false },
    phases: { autoencoder: { mode: 'cooperative', rounds: 3 }, unet: { rounds: 10 } },
    createdAt: '2026-01-01T00:00:00Z',
  }
  const charter = createCharter(charterContent, [publisherA.key, publisherB.key])
  add('charter.valid.json', 'charter', 'VALID', 'a charter with two publishers, threshold 2, signed by both', text(charter.envelope))
  add('charter.one-signature.json', 'charter', 'THRESHOLD_NOT_MET', 'signed by one of the two required publishers', text({ ...charter.envelope, signatures: charter.envelope.signatures.slice(0, 1) }))
  add('charter.outsider-signature.json', 'charter', 'ISSUER_MISMATCH', 'an extra valid signature by a key that is not a publisher', text(addSignature(charter.envelope, outsider.key)))
  add('charter.payload-changed.json', 'charter', 'BAD_SIGNATURE', 'threshold changed to 1 in the payload after signing', text({ ...charter.envelope, payload: b64json({ ...charter.charter, threshold: 1 }) }))
  add('charter.payload-type-changed.json', 'charter', 'BAD_SIGNATURE', 'payloadType changed (PAE covers it)', text({ ...charter.envelope, payloadType: `${CHARTER_PAYLOAD_TYPE}x` }))
  add('charter.with-audit.json', 'charter', 'VALID', 'the valid charter plus a memorization audit every 5 U-Net rounds, 16 samples per class', text(createCharter({ ...charterContent, audit: { every: 5, samplesPerClass: 16 } }, [publisherA.key, publisherB.key]).envelope))
  add('charter.with-outer-schedule.json', 'charter', 'VALID', 'the valid charter plus an outer-lr schedule: 2 warm-up rounds, then linear decay to 0.25 of outerLr', text(createCharter({ ...charterContent, rounds: { ...charterContent.rounds, outerSchedule: { warmupRounds: 2, finalLrFraction: 0.25 } } }, [publisherA.key, publisherB.key]).envelope))
  add('charter.outer-schedule-final-zero.json', 'charter', 'SCHEMA', 'validly signed, an outer-lr schedule decaying to 0 (the last round would change nothing)', text(resignEnvelope(charter.envelope, (p) => ((p.rounds as Record<string, unknown>).outerSchedule = { warmupRounds: 0, finalLrFraction: 0 }), [publisherA.key, publisherB.key])))
  add('charter.threshold-too-high.json', 'charter', 'SCHEMA', 'validly signed, threshold 3 with 2 publishers', text(resignEnvelope(charter.envelope, (p) => (p.threshold = 3), [publisherA.key, publisherB.key])))

  // --- ContributionStatement ---------------------------------------------------------------
  const contribution = createContribution(
    {
      delta: digestOf('test delta'),
      coop: charter.coopId,
      round: 1,
      phase: 'unet',
      baseCheckpoint: digestOf('test base checkpoint'),
      manifests: [digest],
      itemsRoot: manifest.credentialSubject.merkleRoot,
      itemCount: 5,
      samples: 800,
      localSteps: 50,
      loss: 0.125,
      codec: { kind: 'int8' },
    },
    custodian.key,
  )
  add('contribution.valid.json', 'contribution', 'VALID', 'a contribution by the custodian node using manifest.valid.json', text(contribution))
  {
    const payload = JSON.parse(Buffer.from(contribution.payload, 'base64').toString('utf8'))
    payload.predicate.samples = 8000
    add('contribution.samples-changed.json', 'contribution', 'BAD_SIGNATURE', 'sample count inflated after signing', text({ ...contribution, payload: b64json(payload) }))
  }
  add('contribution.keyid-swapped.json', 'contribution', 'BAD_SIGNATURE', 'keyid replaced by another PeerId', text({ ...contribution, signatures: [{ keyid: peerIdString(outsider.key.publicKey), sig: contribution.signatures[0]!.sig }] }))
  add('contribution.two-signatures.json', 'contribution', 'SCHEMA', 'a second valid signature (a contribution has exactly one signer)', text(addSignature(contribution, outsider.key)))
  add('contribution.predicate-type-unknown.json', 'contribution', 'UNKNOWN_TYPE', 'validly signed, unknown predicateType', text(resignEnvelope(contribution, (p) => (p.predicateType = 'https://example.org/other/v1'), [custodian.key])))
  add('contribution.statement-type-old.json', 'contribution', 'UNKNOWN_TYPE', 'validly signed, _type is in-toto Statement v0.1', text(resignEnvelope(contribution, (p) => (p._type = 'https://in-toto.io/Statement/v0.1'), [custodian.key])))
  add('contribution.extra-predicate-field.json', 'contribution', 'SCHEMA', 'validly signed, predicate has an undefined field', text(resignEnvelope(contribution, (p) => ((p.predicate as Record<string, unknown>).extra = true), [custodian.key])))
  add(
    'contribution.payload-not-canonical.json',
    'contribution',
    'NOT_CANONICAL',
    'validly signed, payload JSON is indented rather than canonical',
    text(createEnvelope(contribution.payloadType, new TextEncoder().encode(JSON.stringify(JSON.parse(Buffer.from(contribution.payload, 'base64').toString('utf8')), null, 1)), [custodian.key])),
  )
  add('contribution.base64-unpadded.json', 'contribution', 'BAD_ENCODING', 'payload base64 without its padding', text({ ...contribution, payload: contribution.payload.replace(/=+$/, '') }))

  // --- CheckpointProvenance ----------------------------------------------------------------
  const contributionStatementDigest = sha256Digest(Buffer.from(contribution.payload, 'base64'))
  const provenance = createProvenance(
    {
      files: { 'config.json': digestOf('test config'), 'model.safetensors': digestOf('test model') },
      coop: charter.coopId,
      round: 1,
      phase: 'unet',
      parent: { checkpoint: digestOf('test base checkpoint'), provenance: digestOf('test base provenance') },
      contributions: [{ statement: contributionStatementDigest, contributor: peerIdString(custodian.key.publicKey), delta: digestOf('test delta'), manifests: [digest] }],
      manifests: [digest],
      exclusions: summarizeExclusions({ revocations: [], expiredManifests: [], items: [] }).summary,
      components: [{ role: 'autoencoder', checkpoint: digestOf('test autoencoder'), provenance: digestOf('test autoencoder provenance') }],
      license: 'CC-BY-4.0',
      attribution: [{ name: 'Test Artist', uri: 'https://example.org/test-artist', text: 'Images by Test Artist, licensed under CC-BY 4.0' }],
    },
    [publisherA.key, publisherB.key],
  )
  const withCharter = { charter: 'charter.valid.json' }
  add('provenance.valid.json', 'provenance', 'VALID', 'round 1 checkpoint signed by both publishers', text(provenance), withCharter)
  add('provenance.one-signature.json', 'provenance', 'THRESHOLD_NOT_MET', 'signed by one publisher; the charter requires two', text({ ...provenance, signatures: provenance.signatures.slice(0, 1) }), withCharter)
  add('provenance.outsider-signature.json', 'provenance', 'ISSUER_MISMATCH', 'an extra valid signature by a non-publisher', text(addSignature(provenance, outsider.key)), withCharter)
  {
    const payload = JSON.parse(Buffer.from(provenance.payload, 'base64').toString('utf8'))
    payload.subject[1].digest.sha256 = digestOf('another model').slice(7)
    add('provenance.file-digest-changed.json', 'provenance', 'BAD_SIGNATURE', 'model.safetensors digest replaced after signing', text({ ...provenance, payload: b64json(payload) }), withCharter)
  }
  add(
    'provenance.manifests-not-union.json',
    'provenance',
    'SCHEMA',
    'validly signed, manifests list is not the union of the contributions manifests',
    text(resignEnvelope(provenance, (p) => ((p.predicate as { manifests: string[] }).manifests = []), [publisherA.key, publisherB.key])),
    withCharter,
  )
  add(
    'provenance.file-name-traversal.json',
    'provenance',
    'SCHEMA',
    'validly signed, a checkpoint file named ../../etc/passwd (file names are plain names)',
    text(resignEnvelope(provenance, (p) => ((p.subject as { name: string }[])[0]!.name = '../../etc/passwd'), [publisherA.key, publisherB.key])),
    withCharter,
  )
  {
    const statement = JSON.parse(Buffer.from(provenance.payload, 'base64').toString('utf8'))
    add('provenance.signed-as-contribution-type.json', 'provenance', 'UNKNOWN_TYPE', 'validly signed, predicateType of a contribution on a provenance predicate', text(signStatement({ ...statement, predicateType: 'https://diffusion-coop.dev/attestation/contribution/v1' }, [publisherA.key, publisherB.key])), withCharter)
  }

  // --- MemorizationAudit ---------------------------------------------------------------------
  const flaggedImages = [digestOf('test image 2'), digestOf('test image 4')].sort()
  const audit = createAudit(
    {
      files: { 'config.json': digestOf('test config'), 'model.safetensors': digestOf('test model') },
      checkpoint: sha256Digest(Buffer.from(provenance.payload, 'base64')),
      coop: charter.coopId,
      round: 1,
      method: {
        sampler: { kind: 'ddim', steps: 25, guidance: 2, seed: 658711 },
        classes: ['flags', 'symbols'],
        samplesPerClass: 16,
        samples: 32,
        imageSize: 32,
        pixelMetric: 'normalised-l2',
        features: { extractor: 'autoencoder-latent-mean', dims: 256 },
      },
      thresholds: { l2: 0.15, ratio: 1 / 3 },
      images: 5,
      imagesRoot: manifest.credentialSubject.merkleRoot,
      flagged: flaggedImages,
      holders: [{ issuer: didKeyFromPublicKey(rightsHolder.key.publicKey), name: 'Test Artist', images: 5, flagged: 2, closestL2: 0.0625 }],
      report: digestOf('test audit.json'),
      createdAt: '2026-06-01T00:00:00Z',
    },
    publisherA.key,
  )
  add('audit.valid.json', 'audit', 'VALID', 'a memorization audit of provenance.valid.json by publisher A: 5 images, 2 flagged', text(audit))
  {
    const payload = JSON.parse(Buffer.from(audit.payload, 'base64').toString('utf8'))
    payload.predicate.flagged = []
    payload.predicate.holders[0].flagged = 0
    add('audit.flags-removed.json', 'audit', 'BAD_SIGNATURE', 'flagged images removed after signing', text({ ...audit, payload: b64json(payload) }))
  }
  add('audit.counts-inconsistent.json', 'audit', 'SCHEMA', 'validly signed, the holder counts 1 flagged image where 2 are listed', text(resignEnvelope(audit, (p) => ((p.predicate as { holders: { flagged: number }[] }).holders[0]!.flagged = 1), [publisherA.key])))
  add('audit.flagged-unsorted.json', 'audit', 'SCHEMA', 'validly signed, flagged digests not in sorted order', text(resignEnvelope(audit, (p) => (p.predicate as { flagged: string[] }).flagged.reverse(), [publisherA.key])))
  add('audit.ratio-above-one.json', 'audit', 'SCHEMA', 'validly signed, a ratio threshold above 1 (a ratio test that passes everything)', text(resignEnvelope(audit, (p) => ((p.predicate as { thresholds: { ratio: number } }).thresholds.ratio = 1.5), [publisherA.key])))
  add('audit.two-signatures.json', 'audit', 'SCHEMA', 'a second valid signature (an audit has exactly one signer)', text(addSignature(audit, outsider.key)))

  // --- UnlearningReceipt ---------------------------------------------------------------------
  const receipt = createReceipt(
    {
      files: { 'config.json': digestOf('test base config'), 'model.safetensors': digestOf('test base checkpoint') },
      coop: charter.coopId,
      phase: 'unet',
      round: 3,
      newBase: { checkpoint: digestOf('test base checkpoint'), provenance: digestOf('test base provenance'), round: 0 },
      superseded: [
        { provenance: sha256Digest(Buffer.from(provenance.payload, 'base64')), round: 1 },
        { provenance: digestOf('test round 2 provenance'), round: 2 },
      ],
      revocations: [digestOf('test revocation')],
      revokedItems: [digestOf('test image 2'), digestOf('test image 4')],
      createdAt: '2026-06-01T00:00:00Z',
    },
    [publisherA.key, publisherB.key],
  )
  add('receipt.valid.json', 'receipt', 'VALID', 'round 3 continues from round 0; rounds 1 and 2 superseded; 2 items revoked; both publishers signed', text(receipt), withCharter)
  add('receipt.one-signature.json', 'receipt', 'THRESHOLD_NOT_MET', 'signed by one publisher; the charter requires two', text({ ...receipt, signatures: receipt.signatures.slice(0, 1) }), withCharter)
  add('receipt.outsider-signature.json', 'receipt', 'ISSUER_MISMATCH', 'an extra valid signature by a non-publisher', text(addSignature(receipt, outsider.key)), withCharter)
  {
    const payload = JSON.parse(Buffer.from(receipt.payload, 'base64').toString('utf8'))
    payload.predicate.revokedItems = payload.predicate.revokedItems.slice(1)
    add('receipt.item-removed.json', 'receipt', 'BAD_SIGNATURE', 'a revoked item removed after signing', text({ ...receipt, payload: b64json(payload) }), withCharter)
  }
  add('receipt.superseded-past-round.json', 'receipt', 'SCHEMA', 'validly signed, a superseded checkpoint at the round that continues from the base', text(resignEnvelope(receipt, (p) => ((p.predicate as { superseded: { round: number }[] }).superseded[1]!.round = 3), [publisherA.key, publisherB.key])), withCharter)
  add('receipt.items-unsorted.json', 'receipt', 'SCHEMA', 'validly signed, revoked items not in sorted order', text(resignEnvelope(receipt, (p) => (p.predicate as { revokedItems: string[] }).revokedItems.reverse(), [publisherA.key, publisherB.key])), withCharter)

  const keys = Object.fromEntries(
    Object.entries(TEST_KEYS).map(([name, { label, key }]) => [
      name,
      {
        warning: 'TEST ONLY. This private key is public. Never use it for anything but these vectors.',
        label,
        seedHex: Buffer.from(key.raw.subarray(0, 32)).toString('hex'),
        libp2pProtobufHex: Buffer.from(marshalPrivateKey(key)).toString('hex'),
        publicKeyHex: Buffer.from(key.publicKey.raw).toString('hex'),
        didKey: didKeyFromPublicKey(key.publicKey),
        peerId: peerIdString(key.publicKey),
      },
    ]),
  )
  files.set('keys.TEST-ONLY.json', `${JSON.stringify(keys, null, 2)}\n`)
  files.set('expected.json', `${JSON.stringify({ verifyAt: VERIFY_AT, vectors: expectations }, null, 2)}\n`)
  return { files, expectations }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = dirname(fileURLToPath(import.meta.url))
  const { files } = buildVectors()
  for (const [name, content] of files) writeFileSync(join(dir, name), content)
  process.stdout.write(`wrote ${files.size} files to ${dir}\n`)
}
