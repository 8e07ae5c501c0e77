// in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
// carried in DSSE with payloadType application/vnd.in-toto+json. The payload bytes are the
// RFC 8785 canonical JSON of the statement.
import { z } from 'zod'
import { type DocumentInput, parseDocument, parseSchema } from './decode.ts'
import { createEnvelope, type DsseEnvelope, type OpenedEnvelope } from './dsse.ts'
import { IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_TYPE } from './constants.ts'
import { ProtocolError } from './errors.ts'
import { canonicalBytes } from './jcs.ts'
import type { Ed25519PrivateKey } from './keys.ts'
import { hexSha256Schema, shortText } from './schemas.ts'

export interface ResourceDescriptor {
  name: string
  digest: { sha256: string }
}

export interface Statement<P> {
  _type: typeof IN_TOTO_STATEMENT_TYPE
  subject: ResourceDescriptor[]
  predicateType: string
  predicate: P
}

export const resourceDescriptorSchema = z.strictObject({
  name: shortText,
  digest: z.strictObject({ sha256: hexSha256Schema }),
})

export function statementSchema<P extends z.ZodType>(
  predicateType: string,
  predicate: P,
  maxSubjects: number,
) {
  return z.strictObject({
    _type: z.literal(IN_TOTO_STATEMENT_TYPE),
    subject: z.array(resourceDescriptorSchema).min(1).max(maxSubjects),
    predicateType: z.literal(predicateType),
    predicate,
  })
}

/** Subject entry for a `sha256:` digest. */
export function subjectFor(name: string, digest: string): ResourceDescriptor {
  return { name, digest: { sha256: digest.slice('sha256:'.length) } }
}

export function subjectDigest(subject: ResourceDescriptor): string {
  return `sha256:${subject.digest.sha256}`
}

export function signStatement<P>(
  statement: Statement<P>,
  signers: readonly Ed25519PrivateKey[],
): DsseEnvelope {
  return createEnvelope(IN_TOTO_PAYLOAD_TYPE, canonicalBytes(statement), signers)
}

/**
 * Parses the statement in an opened envelope: payloadType must be in-toto's, `_type` the v1
 * URI and `predicateType` the expected one (UNKNOWN_TYPE otherwise); then the closed schema.
 */
export function readStatement<S extends z.ZodType>(
  opened: OpenedEnvelope,
  predicateType: string,
  schema: S,
  maxBytes: number,
  what: string,
): z.output<S> {
  if (opened.payloadType !== IN_TOTO_PAYLOAD_TYPE)
    throw new ProtocolError('UNKNOWN_TYPE', `${what}: payloadType must be ${IN_TOTO_PAYLOAD_TYPE}`)
  return parseStatement(opened.payload, predicateType, schema, maxBytes, what)
}

/**
 * Parses statement bytes on their own (no envelope): canonical JSON, `_type` the v1 URI and
 * `predicateType` the expected one (UNKNOWN_TYPE otherwise), then the closed schema. A statement
 * fetched by the digest a signed document lists is authentic through that digest.
 */
export function parseStatement<S extends z.ZodType>(
  input: DocumentInput,
  predicateType: string,
  schema: S,
  maxBytes: number,
  what: string,
): z.output<S> {
  const { value } = parseDocument(input, maxBytes, `${what} statement`)
  const header = value as { _type?: unknown; predicateType?: unknown }
  if (typeof value !== 'object' || value === null || header._type !== IN_TOTO_STATEMENT_TYPE)
    throw new ProtocolError('UNKNOWN_TYPE', `${what}: not an in-toto Statement v1`)
  if (header.predicateType !== predicateType)
    throw new ProtocolError('UNKNOWN_TYPE', `${what}: predicateType must be ${predicateType}`)
  return parseSchema(schema, value, what)
}

/** Checks a list is sorted by UTF-16 code units with no duplicates (canonical set order). */
export function isSortedUnique(values: readonly string[]): boolean {
  for (let i = 1; i < values.length; i++)
    if (!((values[i - 1] as string) < (values[i] as string))) return false
  return true
}

/**
 * A publisher-signed statement's signers: every one a charter publisher (ISSUER_MISMATCH), at least
 * `threshold` of them (THRESHOLD_NOT_MET), and, when given, the statement's coop is `coopId` (SCHEMA).
 */
export function requirePublisherSignatures(
  what: string,
  signers: readonly string[],
  coop: string,
  options: { publishers: readonly string[]; threshold: number; coopId?: string },
): void {
  const publishers = new Set(options.publishers)
  for (const signer of signers)
    if (!publishers.has(signer))
      throw new ProtocolError('ISSUER_MISMATCH', `${what} signed by ${signer}, who is not a publisher`)
  if (signers.length < options.threshold)
    throw new ProtocolError(
      'THRESHOLD_NOT_MET',
      `${signers.length} of ${options.threshold} publisher signatures`,
    )
  if (options.coopId !== undefined && coop !== options.coopId)
    throw new ProtocolError('SCHEMA', `${what} is for another coop`)
}
