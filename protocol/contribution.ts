// ContributionStatement: an in-toto Statement v1 in DSSE, signed by the contributing node's
// peer key. Subject: the delta payload (safetensors bytes). Predicate: what was trained on
// and how, so publishers and auditors can check consent and recompute the aggregate.
import { z } from 'zod'
import {
  CONTRIBUTION_MAX_BYTES,
  CONTRIBUTION_MAX_MANIFESTS,
  CONTRIBUTION_PREDICATE_TYPE,
  IN_TOTO_STATEMENT_TYPE,
} from './constants.ts'
import { compressionSchema } from './charter.ts'
import { type DocumentInput, parseSchema } from './decode.ts'
import { isDigest, sha256Digest } from './digest.ts'
import { type DsseEnvelope, openEnvelope } from './dsse.ts'
import { ProtocolError } from './errors.ts'
import type { Ed25519PrivateKey } from './keys.ts'
import { digestSchema, nonNegativeInt, positiveInt } from './schemas.ts'
import {
  isSortedUnique,
  parseStatement,
  readStatement,
  signStatement,
  subjectDigest,
  subjectFor,
  statementSchema,
  type Statement,
} from './statement.ts'

export const contributionPredicateSchema = z
  .strictObject({
    coop: digestSchema,
    round: nonNegativeInt,
    phase: z.enum(['autoencoder', 'unet']),
    baseCheckpoint: digestSchema,
    manifests: z.array(digestSchema).min(1).max(CONTRIBUTION_MAX_MANIFESTS),
    itemsRoot: digestSchema,
    itemCount: positiveInt,
    samples: positiveInt,
    localSteps: positiveInt,
    loss: z.number(),
    codec: compressionSchema,
  })
  .refine((p) => isSortedUnique(p.manifests), {
    message: 'manifests must be sorted and unique',
    path: ['manifests'],
  })

export type ContributionPredicate = z.output<typeof contributionPredicateSchema>

const contributionStatementSchema = statementSchema(
  CONTRIBUTION_PREDICATE_TYPE,
  contributionPredicateSchema,
  1,
)

export type ContributionStatement = Statement<ContributionPredicate>

/** The subject name of a contribution's delta payload. */
export const DELTA_SUBJECT_NAME = 'delta.safetensors'

export interface CreateContributionInput extends ContributionPredicate {
  /** sha256 digest of the delta safetensors bytes. */
  delta: string
}

/** Builds and signs a ContributionStatement with the node's peer key. */
export function createContribution(input: CreateContributionInput, key: Ed25519PrivateKey): DsseEnvelope {
  const { delta, ...predicate } = input
  if (!isDigest(delta)) throw new ProtocolError('SCHEMA', 'delta must be a sha256 digest')
  const statement: ContributionStatement = {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: [subjectFor(DELTA_SUBJECT_NAME, delta)],
    predicateType: CONTRIBUTION_PREDICATE_TYPE,
    predicate: { ...predicate, manifests: [...predicate.manifests].sort() },
  }
  parseSchema(contributionStatementSchema, statement, 'contribution')
  return signStatement(statement, [key])
}

export interface VerifiedContribution {
  statement: ContributionStatement
  predicate: ContributionPredicate
  /** PeerId of the node that signed it. */
  contributor: string
  /** sha256 of the statement bytes: how checkpoints and aggregation name this contribution. */
  digest: string
  /** sha256 of the delta payload the statement covers. */
  delta: string
}

export interface VerifyContributionOptions {
  coopId?: string
  round?: number
  /** When given, the delta bytes' digest must match the subject (DIGEST_MISMATCH). */
  deltaDigest?: string
}

/**
 * Verifies a contribution envelope. Order: size, canonical JSON, envelope schema, every
 * signature, payloadType/_type/predicateType, statement schema, exactly one signer, subject
 * name, then the caller's expectations (another coop or round: SCHEMA; delta bytes that do
 * not match the subject: DIGEST_MISMATCH).
 */
export function verifyContribution(
  input: DocumentInput,
  options: VerifyContributionOptions = {},
): VerifiedContribution {
  const opened = openEnvelope(input, CONTRIBUTION_MAX_BYTES, 'contribution')
  const statement = readStatement(
    opened,
    CONTRIBUTION_PREDICATE_TYPE,
    contributionStatementSchema,
    CONTRIBUTION_MAX_BYTES,
    'contribution',
  ) as ContributionStatement
  // Exactly one signer: a contribution is one node's claim about its own work.
  if (opened.signers.length !== 1)
    throw new ProtocolError('SCHEMA', 'a contribution has exactly one signature')
  const subject = statement.subject[0] as ContributionStatement['subject'][number]
  if (subject.name !== DELTA_SUBJECT_NAME)
    throw new ProtocolError('SCHEMA', `contribution subject must be named ${DELTA_SUBJECT_NAME}`)
  const delta = subjectDigest(subject)
  if (options.coopId !== undefined && statement.predicate.coop !== options.coopId)
    throw new ProtocolError('SCHEMA', 'contribution is for another coop')
  if (options.round !== undefined && statement.predicate.round !== options.round)
    throw new ProtocolError(
      'SCHEMA',
      `contribution is for round ${statement.predicate.round}, not ${options.round}`,
    )
  if (options.deltaDigest !== undefined && options.deltaDigest !== delta)
    throw new ProtocolError('DIGEST_MISMATCH', 'delta payload does not match the statement subject')
  return {
    statement,
    predicate: statement.predicate,
    contributor: opened.signers[0] as string,
    digest: opened.payloadDigest,
    delta,
  }
}

/** A contribution statement read from its bytes alone, named by their digest (no signature to check). */
export interface ContributionStatementBody {
  statement: ContributionStatement
  predicate: ContributionPredicate
  /** sha256 of the statement bytes: the id a checkpoint lists. */
  digest: string
  /** sha256 of the delta payload the statement covers. */
  delta: string
}

/**
 * Reads the statement bytes of a contribution, as stored and served by digest (the DSSE payload
 * without its envelope): size, canonical JSON, types, schema, subject name. The bytes are
 * authentic only through a signed document that lists their digest (a checkpoint provenance).
 */
export function readContributionStatement(bytes: Uint8Array): ContributionStatementBody {
  const statement = parseStatement(
    bytes,
    CONTRIBUTION_PREDICATE_TYPE,
    contributionStatementSchema,
    CONTRIBUTION_MAX_BYTES,
    'contribution',
  ) as ContributionStatement
  const subject = statement.subject[0] as ContributionStatement['subject'][number]
  if (subject.name !== DELTA_SUBJECT_NAME)
    throw new ProtocolError('SCHEMA', `contribution subject must be named ${DELTA_SUBJECT_NAME}`)
  return {
    statement,
    predicate: statement.predicate,
    digest: sha256Digest(bytes),
    delta: subjectDigest(subject),
  }
}
