// CheckpointProvenance: an in-toto Statement v1 in DSSE, signed by at least `threshold` of the
// charter's publishers. Subject: the checkpoint's files. Predicate: everything needed to
// trace the checkpoint back to consent and to recompute it from its contributions.
import { z } from 'zod'
import {
  IN_TOTO_STATEMENT_TYPE,
  PROVENANCE_MAX_BYTES,
  PROVENANCE_MAX_CONTRIBUTIONS,
  PROVENANCE_MAX_FILES,
  PROVENANCE_MAX_LIST,
  PROVENANCE_PREDICATE_TYPE,
  CONTRIBUTION_MAX_MANIFESTS,
} from './constants.ts'
import { type DocumentInput, parseSchema } from './decode.ts'
import { isDigest, sha256Digest } from './digest.ts'
import { exclusionSummarySchema } from './exclusions.ts'
import { type DsseEnvelope, openEnvelope } from './dsse.ts'
import { ProtocolError } from './errors.ts'
import type { Ed25519PrivateKey } from './keys.ts'
import { parseLicense } from './license.ts'
import { attributionSchema, digestSchema, isPlainFileName, nonNegativeInt, peerIdSchema } from './schemas.ts'
import {
  isSortedUnique,
  parseStatement,
  readStatement,
  requirePublisherSignatures,
  signStatement,
  subjectDigest,
  subjectFor,
  statementSchema,
  type Statement,
} from './statement.ts'

const sortedDigests = (max: number) =>
  z
    .array(digestSchema)
    .max(max)
    .refine((list) => isSortedUnique(list), 'must be sorted and unique')

export const provenancePredicateSchema = z
  .strictObject({
    coop: digestSchema,
    round: nonNegativeInt,
    phase: z.enum(['autoencoder', 'unet']),
    parent: z.strictObject({ checkpoint: digestSchema, provenance: digestSchema }).nullable(),
    contributions: z
      .array(
        z.strictObject({
          statement: digestSchema,
          contributor: peerIdSchema,
          delta: digestSchema,
          manifests: sortedDigests(CONTRIBUTION_MAX_MANIFESTS),
        }),
      )
      .max(PROVENANCE_MAX_CONTRIBUTIONS),
    manifests: sortedDigests(PROVENANCE_MAX_LIST),
    // What is excluded since the parent: counts, items root and the details document's digest.
    exclusions: exclusionSummarySchema,
    components: z
      .array(
        z.strictObject({
          role: z.literal('autoencoder'),
          checkpoint: digestSchema,
          provenance: digestSchema,
        }),
      )
      .max(1),
    license: z.string().min(1).max(1024),
    attribution: z.array(attributionSchema).max(PROVENANCE_MAX_LIST),
  })
  .refine((p) => isSortedUnique(p.contributions.map((c) => c.statement)), {
    message: 'contributions must be sorted by statement digest and unique',
    path: ['contributions'],
  })
  .refine(
    (p) => {
      // The manifest list is exactly the union of what the contributions used.
      const union = new Set(p.contributions.flatMap((c) => c.manifests))
      return union.size === p.manifests.length && p.manifests.every((m) => union.has(m))
    },
    { message: 'manifests must be the union of the contributions manifests', path: ['manifests'] },
  )

export type ProvenancePredicate = z.output<typeof provenancePredicateSchema>

const provenanceStatementSchema = statementSchema(
  PROVENANCE_PREDICATE_TYPE,
  provenancePredicateSchema,
  PROVENANCE_MAX_FILES,
)
  // File names are joined to directories by every verifier: plain names only, never a path.
  .refine((s) => s.subject.every((f) => isPlainFileName(f.name)), {
    message: 'checkpoint file names must be plain names (letters, digits, . _ -; no separators or ..)',
    path: ['subject'],
  })
  .refine((s) => isSortedUnique(s.subject.map((f) => f.name)), {
    message: 'checkpoint files must be sorted by name and unique',
    path: ['subject'],
  })

export type CheckpointProvenance = Statement<ProvenancePredicate>

export interface CreateProvenanceInput extends ProvenancePredicate {
  /** Checkpoint file name -> sha256 digest of its bytes. */
  files: Record<string, string>
}

/** Builds the statement and signs it with each publisher key given. */
export function createProvenance(
  input: CreateProvenanceInput,
  signers: readonly Ed25519PrivateKey[],
): DsseEnvelope {
  const { files, ...predicate } = input
  const names = Object.keys(files).sort()
  for (const name of names)
    if (!isDigest(files[name])) throw new ProtocolError('SCHEMA', `file ${name} needs a sha256 digest`)
  parseLicense(predicate.license)
  const sorted = (values: readonly string[]) => [...new Set(values)].sort()
  // Sets are written in their canonical order, so callers need not sort them.
  const normalized: ProvenancePredicate = {
    ...predicate,
    contributions: [...predicate.contributions]
      .map((c) => ({ ...c, manifests: sorted(c.manifests) }))
      .sort((a, b) => (a.statement < b.statement ? -1 : a.statement > b.statement ? 1 : 0)),
    manifests: sorted(predicate.manifests),
  }
  const statement: CheckpointProvenance = {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: names.map((name) => subjectFor(name, files[name] as string)),
    predicateType: PROVENANCE_PREDICATE_TYPE,
    predicate: normalized,
  }
  parseSchema(provenanceStatementSchema, statement, 'provenance')
  return signStatement(statement, signers)
}

export interface VerifiedProvenance {
  statement: CheckpointProvenance
  predicate: ProvenancePredicate
  /** File name -> `sha256:` digest. */
  files: Map<string, string>
  /** Publisher PeerIds whose signatures verified. */
  signers: string[]
  /** sha256 of the statement bytes: how children and components name this provenance. */
  digest: string
}

export interface VerifyProvenanceOptions {
  /** The charter's publisher PeerIds. */
  publishers: readonly string[]
  threshold: number
  coopId?: string
}

/**
 * Verifies a provenance envelope. Order: size, canonical JSON, envelope schema, every
 * signature (BAD_SIGNATURE), types (UNKNOWN_TYPE), statement schema (SCHEMA), license
 * (INVALID_LICENSE), every signer is a publisher (ISSUER_MISMATCH), threshold distinct
 * publishers signed (THRESHOLD_NOT_MET), coop matches (SCHEMA).
 */
export function verifyProvenance(input: DocumentInput, options: VerifyProvenanceOptions): VerifiedProvenance {
  if (!Number.isSafeInteger(options.threshold) || options.threshold < 1)
    throw new ProtocolError('SCHEMA', 'threshold must be a positive integer')
  const opened = openEnvelope(input, PROVENANCE_MAX_BYTES, 'provenance')
  const statement = readStatement(
    opened,
    PROVENANCE_PREDICATE_TYPE,
    provenanceStatementSchema,
    PROVENANCE_MAX_BYTES,
    'provenance',
  ) as CheckpointProvenance
  parseLicense(statement.predicate.license)
  requirePublisherSignatures('provenance', opened.signers, statement.predicate.coop, options)
  const files = new Map(statement.subject.map((s) => [s.name, subjectDigest(s)] as const))
  return {
    statement,
    predicate: statement.predicate,
    files,
    signers: opened.signers,
    digest: opened.payloadDigest,
  }
}

/** A provenance statement read from its bytes alone (no signatures), named by their digest. */
export interface ProvenanceStatementBody {
  statement: CheckpointProvenance
  predicate: ProvenancePredicate
  files: Map<string, string>
  digest: string
}

/**
 * Reads the statement bytes of a checkpoint provenance, as stored and served by digest: size,
 * canonical JSON, types, schema (plain file names included), license. Authentic only through a
 * signed document that lists the digest (a child checkpoint's `parent.provenance`).
 */
export function readProvenanceStatement(bytes: Uint8Array): ProvenanceStatementBody {
  const statement = parseStatement(
    bytes,
    PROVENANCE_PREDICATE_TYPE,
    provenanceStatementSchema,
    PROVENANCE_MAX_BYTES,
    'provenance',
  ) as CheckpointProvenance
  parseLicense(statement.predicate.license)
  return {
    statement,
    predicate: statement.predicate,
    files: new Map(statement.subject.map((s) => [s.name, subjectDigest(s)] as const)),
    digest: sha256Digest(bytes),
  }
}
