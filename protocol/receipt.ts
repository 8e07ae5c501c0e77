// UnlearningReceipt: an in-toto Statement v1 in DSSE, signed by at least `threshold` of the
// charter's publishers when a charter with `onRevocation: "rollback"` rolls its lineage back past
// revoked items (docs/PROTOCOL.md §9d). Subject: the files of the new base checkpoint (the newest
// one whose whole lineage never used the revoked items). Predicate: the revocations and items it
// answers, the checkpoints it supersedes, the new base, and the round that continues from it.
import { z } from 'zod'
import {
  IN_TOTO_STATEMENT_TYPE,
  PROVENANCE_MAX_FILES,
  RECEIPT_MAX_BYTES,
  RECEIPT_MAX_LIST,
  RECEIPT_MAX_SUPERSEDED,
  RECEIPT_PREDICATE_TYPE,
} from './constants.ts'
import { type DocumentInput, parseSchema } from './decode.ts'
import { isDigest } from './digest.ts'
import { type DsseEnvelope, openEnvelope } from './dsse.ts'
import { ProtocolError } from './errors.ts'
import type { Ed25519PrivateKey } from './keys.ts'
import { dateTimeSchema, digestSchema, nonNegativeInt, positiveInt } from './schemas.ts'
import {
  isSortedUnique,
  readStatement,
  requirePublisherSignatures,
  signStatement,
  statementSchema,
  subjectDigest,
  subjectFor,
  type Statement,
} from './statement.ts'

const sortedDigests = (min: number, max: number) =>
  z
    .array(digestSchema)
    .min(min)
    .max(max)
    .refine((list) => isSortedUnique(list), 'must be sorted and unique')

export const receiptPredicateSchema = z
  .strictObject({
    coop: digestSchema,
    phase: z.enum(['autoencoder', 'unet']),
    /** The round whose checkpoint continues from `newBase` (it has `newBase` as parent). */
    round: positiveInt,
    /** The newest checkpoint whose whole lineage never used `revokedItems`. */
    newBase: z.strictObject({ checkpoint: digestSchema, provenance: digestSchema, round: nonNegativeInt }),
    /** The checkpoints after `newBase` that the rollback abandons, oldest first. */
    superseded: z
      .array(z.strictObject({ provenance: digestSchema, round: positiveInt }))
      .max(RECEIPT_MAX_SUPERSEDED),
    /** Digests of the revocation notices (§5) the rollback answers. */
    revocations: sortedDigests(1, RECEIPT_MAX_LIST),
    /** Item digests revoked since `newBase`: none of them is in the continuing lineage. */
    revokedItems: sortedDigests(1, RECEIPT_MAX_LIST),
    createdAt: dateTimeSchema,
  })
  .refine((p) => p.newBase.round < p.round, {
    message: 'the new base must come before the round that continues from it',
    path: ['newBase', 'round'],
  })
  .refine(
    (p) =>
      p.superseded.every(
        (s, i) =>
          s.round > p.newBase.round &&
          s.round < p.round &&
          (i === 0 || (p.superseded[i - 1] as { round: number }).round < s.round),
      ),
    {
      message: 'superseded checkpoints must lie strictly between the new base and the round, oldest first',
      path: ['superseded'],
    },
  )
  .refine((p) => isSortedUnique(p.superseded.map((s) => s.provenance).sort()), {
    message: 'superseded checkpoints must be unique',
    path: ['superseded'],
  })

export type ReceiptPredicate = z.output<typeof receiptPredicateSchema>

const receiptStatementSchema = statementSchema(
  RECEIPT_PREDICATE_TYPE,
  receiptPredicateSchema,
  PROVENANCE_MAX_FILES,
).refine((s) => isSortedUnique(s.subject.map((f) => f.name)), {
  message: 'new base files must be sorted by name and unique',
  path: ['subject'],
})

export type ReceiptStatement = Statement<ReceiptPredicate>

export interface CreateReceiptInput extends ReceiptPredicate {
  /** The new base checkpoint's files: name -> sha256 digest, as its provenance subject lists them. */
  files: Record<string, string>
}

/** Builds and signs an UnlearningReceipt with the publishers' node keys. */
export function createReceipt(
  input: CreateReceiptInput,
  signers: readonly Ed25519PrivateKey[],
): DsseEnvelope {
  const { files, ...predicate } = input
  const names = Object.keys(files).sort()
  for (const name of names)
    if (!isDigest(files[name])) throw new ProtocolError('SCHEMA', `file ${name} needs a sha256 digest`)
  const statement: ReceiptStatement = {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: names.map((name) => subjectFor(name, files[name] as string)),
    predicateType: RECEIPT_PREDICATE_TYPE,
    predicate: {
      ...predicate,
      superseded: [...predicate.superseded].sort((a, b) => a.round - b.round),
      revocations: [...new Set(predicate.revocations)].sort(),
      revokedItems: [...new Set(predicate.revokedItems)].sort(),
    },
  }
  parseSchema(receiptStatementSchema, statement, 'receipt')
  return signStatement(statement, signers)
}

export interface VerifiedReceipt {
  statement: ReceiptStatement
  predicate: ReceiptPredicate
  /** Publisher PeerIds whose signatures verified. */
  signers: string[]
  /** File name -> `sha256:` digest of the new base's files. */
  files: Map<string, string>
  /** sha256 of the statement bytes: how `coop trace` names the receipt. */
  digest: string
}

export interface VerifyReceiptOptions {
  /** The charter's publisher PeerIds. */
  publishers: readonly string[]
  threshold: number
  coopId?: string
}

/**
 * Verifies a receipt envelope. Order: size, canonical JSON, envelope schema, every signature,
 * payloadType/_type/predicateType, closed statement schema (SCHEMA), every signer is a publisher
 * (ISSUER_MISMATCH), at least `threshold` of them (THRESHOLD_NOT_MET), coop matches (SCHEMA).
 * Whether the rollback is right (the base clean, the superseded list the abandoned chain) needs
 * the lineage: node/round/rollback.ts checks it.
 */
export function verifyReceipt(input: DocumentInput, options: VerifyReceiptOptions): VerifiedReceipt {
  if (!Number.isSafeInteger(options.threshold) || options.threshold < 1)
    throw new ProtocolError('SCHEMA', 'threshold must be a positive integer')
  const opened = openEnvelope(input, RECEIPT_MAX_BYTES, 'receipt')
  const statement = readStatement(
    opened,
    RECEIPT_PREDICATE_TYPE,
    receiptStatementSchema,
    RECEIPT_MAX_BYTES,
    'receipt',
  ) as ReceiptStatement
  requirePublisherSignatures('receipt', opened.signers, statement.predicate.coop, options)
  return {
    statement,
    predicate: statement.predicate,
    signers: opened.signers,
    files: new Map(statement.subject.map((s) => [s.name, subjectDigest(s)] as const)),
    digest: opened.payloadDigest,
  }
}
