// What a checkpoint excludes since its parent, recorded compactly in its provenance: counts, the
// RFC 6962 root of the excluded items and the digest of a details document (the three lists),
// which moves as a blob by that digest. However many revocations a round brings, the
// provenance stays a few hundred bytes and fits one gossip message; anyone holding the details
// checks them against the signed summary (verifyExclusionDetails), and anyone holding only the
// summary can still check one item's exclusion with an inclusion proof against `itemsRoot`.
import { z } from 'zod'
import { EXCLUSION_DETAILS_MAX_BYTES, PROVENANCE_MAX_LIST } from './constants.ts'
import { type DocumentInput, parseDocument, parseSchema } from './decode.ts'
import { sha256DigestOfText } from './digest.ts'
import { ProtocolError } from './errors.ts'
import { canonicalize } from './jcs.ts'
import { merkleRoot } from './merkle.ts'
import { digestSchema, nonNegativeInt } from './schemas.ts'
import { isSortedUnique } from './statement.ts'

export const EXCLUSION_DETAILS_TYPE = 'CheckpointExclusions'

const sortedDigests = z
  .array(digestSchema)
  .max(PROVENANCE_MAX_LIST)
  .refine((list) => isSortedUnique(list), 'must be sorted and unique')

/** The details document: exactly the lists the provenance's summary counts. */
export const exclusionDetailsSchema = z.strictObject({
  type: z.literal(EXCLUSION_DETAILS_TYPE),
  /** Revocation notices applied since the parent (each by the issuer of the manifest it names). */
  revocations: sortedDigests,
  /** Manifests whose consent ended (validUntil passed) since the parent. */
  expiredManifests: sortedDigests,
  /** Items withdrawn by those revocations: no round training from this checkpoint on uses them. */
  items: sortedDigests,
})

export type ExclusionDetails = z.output<typeof exclusionDetailsSchema>

/** The provenance's `exclusions` member. */
export const exclusionSummarySchema = z.strictObject({
  revocations: nonNegativeInt.max(PROVENANCE_MAX_LIST),
  expiredManifests: nonNegativeInt.max(PROVENANCE_MAX_LIST),
  items: nonNegativeInt.max(PROVENANCE_MAX_LIST),
  /** RFC 6962 root over `items` in list order (MTH of the empty list when there are none). */
  itemsRoot: digestSchema,
  /** sha256 of the details document's canonical bytes; null exactly when nothing is excluded. */
  details: digestSchema.nullable(),
})

export type ExclusionSummary = z.output<typeof exclusionSummarySchema>

export const NO_EXCLUSIONS: ExclusionDetails = {
  type: EXCLUSION_DETAILS_TYPE,
  revocations: [],
  expiredManifests: [],
  items: [],
}

const sorted = (values: readonly string[]): string[] => [...new Set(values)].sort()

/** Builds the details document (lists sorted, de-duplicated) and its summary. */
export function summarizeExclusions(input: {
  revocations: readonly string[]
  expiredManifests: readonly string[]
  items: readonly string[]
}): { details: ExclusionDetails; bytes: Uint8Array | undefined; summary: ExclusionSummary } {
  const details = parseSchema(
    exclusionDetailsSchema,
    {
      type: EXCLUSION_DETAILS_TYPE,
      revocations: sorted(input.revocations),
      expiredManifests: sorted(input.expiredManifests),
      items: sorted(input.items),
    },
    'exclusions',
  )
  const empty =
    details.revocations.length === 0 && details.expiredManifests.length === 0 && details.items.length === 0
  const text = canonicalize(details)
  return {
    details,
    bytes: empty ? undefined : new TextEncoder().encode(text),
    summary: {
      revocations: details.revocations.length,
      expiredManifests: details.expiredManifests.length,
      items: details.items.length,
      itemsRoot: merkleRoot(details.items),
      details: empty ? null : sha256DigestOfText(text),
    },
  }
}

/**
 * Checks a details document against the summary a provenance signs. Order: the summary names no
 * details and there are none; size (TOO_LARGE), canonical JSON, digest (DIGEST_MISMATCH), closed
 * schema (SCHEMA), counts and items root (MERKLE_MISMATCH).
 */
export function verifyExclusionDetails(
  input: DocumentInput | undefined,
  summary: ExclusionSummary,
): ExclusionDetails {
  if (summary.details === null) {
    if (summary.revocations !== 0 || summary.expiredManifests !== 0 || summary.items !== 0)
      throw new ProtocolError('SCHEMA', 'exclusions are counted but no details document is named')
    if (summary.itemsRoot !== merkleRoot([]))
      throw new ProtocolError('MERKLE_MISMATCH', 'itemsRoot of no items must be the empty-tree hash')
    return NO_EXCLUSIONS
  }
  if (input === undefined) throw new ProtocolError('SCHEMA', 'the exclusion details document is missing')
  const parsed = parseDocument(input, EXCLUSION_DETAILS_MAX_BYTES, 'exclusions')
  if (sha256DigestOfText(parsed.text) !== summary.details)
    throw new ProtocolError('DIGEST_MISMATCH', 'exclusion details do not match the signed digest')
  const details = parseSchema(exclusionDetailsSchema, parsed.value, 'exclusions')
  if (
    details.revocations.length !== summary.revocations ||
    details.expiredManifests.length !== summary.expiredManifests ||
    details.items.length !== summary.items
  )
    throw new ProtocolError('MERKLE_MISMATCH', 'exclusion details do not have the signed counts')
  if (merkleRoot(details.items) !== summary.itemsRoot)
    throw new ProtocolError('MERKLE_MISMATCH', 'excluded items do not match the signed itemsRoot')
  return details
}
