// MemorizationAudit: an in-toto Statement v1 in DSSE, signed by the auditor's node key. Subject:
// the files of the checkpoint that was audited. Predicate: how it was sampled and compared, the
// thresholds, the audited images (as a Merkle root), the images flagged as near-copies, per rights
// holder the count and closest distance, and the digest of the full per-image report (audit.json).
// Anyone may audit any checkpoint; whose audit to trust is the reader's policy (a charter may
// require its publishers' audits), so the verifier checks form and signature, not the signer.
import { z } from 'zod'
import {
  AUDIT_MAX_BYTES,
  AUDIT_MAX_HOLDERS,
  AUDIT_MAX_LIST,
  AUDIT_PREDICATE_TYPE,
  IN_TOTO_STATEMENT_TYPE,
  PROVENANCE_MAX_FILES,
} from './constants.ts'
import { type DocumentInput, parseSchema } from './decode.ts'
import { isDigest } from './digest.ts'
import { type DsseEnvelope, openEnvelope } from './dsse.ts'
import { ProtocolError } from './errors.ts'
import type { Ed25519PrivateKey } from './keys.ts'
import {
  dateTimeSchema,
  didKeySchema,
  digestSchema,
  nonNegativeInt,
  positiveInt,
  shortText,
} from './schemas.ts'
import {
  isSortedUnique,
  readStatement,
  signStatement,
  statementSchema,
  subjectDigest,
  subjectFor,
  type Statement,
} from './statement.ts'

const finiteNonNegative = z.number().nonnegative()

export const auditHolderSchema = z.strictObject({
  /** The rights holder's did:key, or null for audited images no known manifest covers. */
  issuer: didKeySchema.nullable(),
  name: shortText,
  images: nonNegativeInt,
  flagged: nonNegativeInt,
  /** Smallest normalised ℓ2 distance between any of the holder's images and any sample. */
  closestL2: finiteNonNegative.nullable(),
})

export const auditPredicateSchema = z
  .strictObject({
    /** Checkpoint id (provenance digest) of a cooperative checkpoint; null for a local training output. */
    checkpoint: digestSchema.nullable(),
    coop: digestSchema.nullable(),
    round: nonNegativeInt.nullable(),
    method: z.strictObject({
      sampler: z.strictObject({
        kind: z.literal('ddim'),
        steps: positiveInt,
        guidance: finiteNonNegative,
        seed: nonNegativeInt,
      }),
      /** Class names sampled, in order; empty for an unconditional model. */
      classes: z.array(shortText).max(AUDIT_MAX_LIST),
      samplesPerClass: positiveInt,
      samples: positiveInt,
      imageSize: positiveInt,
      pixelMetric: z.literal('normalised-l2'),
      /** The feature space of the second search, e.g. `autoencoder-latent-mean`. */
      features: z.strictObject({ extractor: shortText, dims: positiveInt }),
    }),
    thresholds: z.strictObject({ l2: z.number().positive(), ratio: z.number().positive().max(1) }),
    images: nonNegativeInt,
    /** RFC 6962 root over the sorted digests of the audited images. */
    imagesRoot: digestSchema,
    /** Sorted digests of the images flagged as near-copies. */
    flagged: z.array(digestSchema).max(AUDIT_MAX_LIST),
    holders: z.array(auditHolderSchema).max(AUDIT_MAX_HOLDERS),
    /** sha256 of the audit.json bytes: the per-image table this statement summarises. */
    report: digestSchema,
    createdAt: dateTimeSchema,
  })
  .refine((p) => isSortedUnique(p.flagged), {
    message: 'flagged must be sorted and unique',
    path: ['flagged'],
  })
  .refine((p) => p.flagged.length <= p.images, {
    message: 'more images flagged than audited',
    path: ['flagged'],
  })
  .refine((p) => isSortedUnique(p.holders.map((h) => h.issuer ?? '')), {
    message: 'holders must be sorted by issuer (null first) and unique',
    path: ['holders'],
  })
  .refine(
    (p) =>
      p.holders.reduce((sum, h) => sum + h.images, 0) === p.images &&
      p.holders.reduce((sum, h) => sum + h.flagged, 0) === p.flagged.length &&
      p.holders.every((h) => h.flagged <= h.images),
    { message: 'holder counts must add up to the audited and flagged counts', path: ['holders'] },
  )

export type AuditPredicate = z.output<typeof auditPredicateSchema>

const auditStatementSchema = statementSchema(
  AUDIT_PREDICATE_TYPE,
  auditPredicateSchema,
  PROVENANCE_MAX_FILES,
).refine((s) => isSortedUnique(s.subject.map((f) => f.name)), {
  message: 'checkpoint files must be sorted by name and unique',
  path: ['subject'],
})

export type AuditStatement = Statement<AuditPredicate>

export interface CreateAuditInput extends AuditPredicate {
  /** Checkpoint file name -> sha256 digest of its bytes. */
  files: Record<string, string>
}

/** Builds and signs a MemorizationAudit with the auditor's node key. */
export function createAudit(input: CreateAuditInput, key: Ed25519PrivateKey): DsseEnvelope {
  const { files, ...predicate } = input
  const names = Object.keys(files).sort()
  for (const name of names)
    if (!isDigest(files[name])) throw new ProtocolError('SCHEMA', `file ${name} needs a sha256 digest`)
  const statement: AuditStatement = {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: names.map((name) => subjectFor(name, files[name] as string)),
    predicateType: AUDIT_PREDICATE_TYPE,
    predicate: {
      ...predicate,
      flagged: [...new Set(predicate.flagged)].sort(),
      holders: [...predicate.holders].sort((a, b) =>
        (a.issuer ?? '') < (b.issuer ?? '') ? -1 : (a.issuer ?? '') > (b.issuer ?? '') ? 1 : 0,
      ),
    },
  }
  parseSchema(auditStatementSchema, statement, 'audit')
  return signStatement(statement, [key])
}

export interface VerifiedAudit {
  statement: AuditStatement
  predicate: AuditPredicate
  /** PeerId of the auditor who signed it. */
  auditor: string
  /** File name -> `sha256:` digest of the audited checkpoint's files. */
  files: Map<string, string>
  /** sha256 of the statement bytes. */
  digest: string
}

/**
 * Verifies an audit envelope. Order: size, canonical JSON, envelope schema, every signature,
 * payloadType/_type/predicateType, closed statement schema (including the count rules), exactly
 * one signer (SCHEMA).
 */
export function verifyAudit(input: DocumentInput): VerifiedAudit {
  const opened = openEnvelope(input, AUDIT_MAX_BYTES, 'audit')
  const statement = readStatement(
    opened,
    AUDIT_PREDICATE_TYPE,
    auditStatementSchema,
    AUDIT_MAX_BYTES,
    'audit',
  ) as AuditStatement
  // One auditor per statement: an audit is one party's measurement.
  if (opened.signers.length !== 1) throw new ProtocolError('SCHEMA', 'an audit has exactly one signature')
  return {
    statement,
    predicate: statement.predicate,
    auditor: opened.signers[0] as string,
    files: new Map(statement.subject.map((s) => [s.name, subjectDigest(s)] as const)),
    digest: opened.payloadDigest,
  }
}
