// CoopCharter: the genesis document of a cooperative. Its coop id is the sha256 of its
// RFC 8785 canonical bytes, which are also the DSSE payload, so the id never depends on who
// signed. The charter is signed by at least `threshold` of its own publishers: it carries
// the same authority as any checkpoint they publish.
import { z } from 'zod'
import {
  CHARTER_MAX_ALLOWLIST,
  CHARTER_MAX_BYTES,
  CHARTER_MAX_LICENSES,
  CHARTER_MAX_PUBLISHERS,
  CHARTER_PAYLOAD_TYPE,
} from './constants.ts'
import { parseDocument, parseSchema, type DocumentInput } from './decode.ts'
import { sha256Digest } from './digest.ts'
import { createEnvelope, openEnvelope, type DsseEnvelope } from './dsse.ts'
import { ProtocolError } from './errors.ts'
import { canonicalBytes } from './jcs.ts'
import type { Ed25519PrivateKey } from './keys.ts'
import { assertLicenseList } from './license.ts'
import {
  dateTimeSchema,
  digestSchema,
  nonNegativeInt,
  peerIdSchema,
  positiveInt,
  shortText,
} from './schemas.ts'
import { OUTER_WARMUP_ROUNDS_MAX } from './outer-schedule.ts'
import { isSortedUnique } from './statement.ts'

const fraction = z.number().gt(0).lte(1)

export const aggregatorSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('mean') }),
  z.strictObject({ kind: z.literal('median') }),
  // Trimming half or more from each side would leave nothing.
  z.strictObject({ kind: z.literal('trimmed'), fraction: z.number().gt(0).lt(0.5) }),
  z.strictObject({ kind: z.literal('clip'), norm: z.number().gt(0).max(1e12) }),
])

export const compressionSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('none') }),
  z.strictObject({ kind: z.literal('int8') }),
  // values '2bit': the chunked 2-bit top-k layout of protocol/compression.ts (absent: F32 values).
  z.strictObject({ kind: z.literal('topk'), fraction, values: z.literal('2bit').optional() }),
])

/**
 * The cooperative's intended use of what it trains, in the terms of a manifest's `scope`:
 * commercial use of the model, and redistribution of the weights beyond the cooperative.
 */
export const intendedUseSchema = z.strictObject({
  commercialUse: z.boolean(),
  weightRedistribution: z.boolean(),
})

export type IntendedUse = z.output<typeof intendedUseSchema>

/** What a charter states when its creator does not say: the use that every manifest's scope allows. */
export const DEFAULT_INTENDED_USE: IntendedUse = { commercialUse: false, weightRedistribution: false }

export const charterSchema = z
  .strictObject({
    name: shortText.optional(),
    model: z.record(z.string(), z.json()),
    rounds: z.strictObject({
      innerSteps: positiveInt,
      outerLr: z.number().gt(0).max(100),
      outerMomentum: z.number().gte(0).lt(1),
      /**
       * Optional per-round outer lr (protocol/outer-schedule.ts): linear warm-up over the first
       * `warmupRounds` of each phase, then linear decay to `finalLrFraction`·outerLr at its last
       * round. Absent: outerLr every round (charters written before it keep their meaning and id).
       */
      outerSchedule: z
        .strictObject({
          warmupRounds: nonNegativeInt.max(OUTER_WARMUP_ROUNDS_MAX),
          finalLrFraction: z.number().gt(0).lte(1),
        })
        .optional(),
      aggregator: aggregatorSchema,
      compression: compressionSchema,
      quorum: positiveInt,
      deadlineSeconds: positiveInt,
    }),
    publishers: z.array(peerIdSchema).min(1).max(CHARTER_MAX_PUBLISHERS),
    threshold: positiveInt,
    admission: z.discriminatedUnion('mode', [
      z.strictObject({ mode: z.literal('open') }),
      z.strictObject({
        mode: z.literal('allowlist'),
        peers: z.array(peerIdSchema).min(1).max(CHARTER_MAX_ALLOWLIST),
      }),
    ]),
    acceptedLicenses: z.array(z.string().min(1).max(256)).min(1).max(CHARTER_MAX_LICENSES),
    // What the cooperative does with the weights: admission refuses manifests whose scope forbids it.
    intendedUse: intendedUseSchema,
    phases: z.strictObject({
      autoencoder: z.discriminatedUnion('mode', [
        z.strictObject({ mode: z.literal('cooperative'), rounds: nonNegativeInt }),
        z.strictObject({ mode: z.literal('component'), checkpoint: digestSchema, provenance: digestSchema }),
      ]),
      unet: z.strictObject({ rounds: nonNegativeInt }),
    }),
    /**
     * Optional: the publishers audit every `every`-th U-Net round's checkpoint for memorization on
     * their own images (`coop audit memorization`, `samplesPerClass` samples per class) and attach
     * the signed audit to the checkpoint directory (§9b). Absent: no audits are required.
     */
    audit: z.strictObject({ every: positiveInt, samplesPerClass: positiveInt }).optional(),
    /**
     * Optional: what a revocation does to the lineage (§7). `exclude` (also when absent): later
     * rounds train without the items and the next checkpoint records them. `rollback`: the next
     * checkpoint continues from the newest one whose whole lineage never used them, and the
     * publishers sign an unlearning receipt (§9d).
     */
    onRevocation: z.enum(['exclude', 'rollback']).optional(),
    createdAt: dateTimeSchema,
  })
  // Sets are written sorted and unique so the same charter has one canonical form.
  .refine((c) => isSortedUnique(c.publishers), {
    message: 'publishers must be sorted and unique',
    path: ['publishers'],
  })
  .refine((c) => c.threshold <= c.publishers.length, {
    message: 'threshold exceeds the number of publishers',
    path: ['threshold'],
  })
  .refine((c) => c.admission.mode === 'open' || isSortedUnique(c.admission.peers), {
    message: 'allowlist must be sorted and unique',
    path: ['admission', 'peers'],
  })
  .refine((c) => isSortedUnique(c.acceptedLicenses), {
    message: 'acceptedLicenses must be sorted and unique',
    path: ['acceptedLicenses'],
  })

export type CoopCharter = z.output<typeof charterSchema>

const sortedUnique = (values: readonly string[]) => [...new Set(values)].sort()

/** The charter with its sets (publishers, allowlist, licenses) sorted and de-duplicated: its one canonical form. */
export function normalizeCharter(charter: CoopCharter): CoopCharter {
  const admission =
    charter.admission?.mode === 'allowlist'
      ? { mode: 'allowlist' as const, peers: sortedUnique(charter.admission.peers ?? []) }
      : charter.admission
  return {
    ...charter,
    publishers: sortedUnique(charter.publishers ?? []),
    admission,
    acceptedLicenses: sortedUnique(charter.acceptedLicenses ?? []),
  }
}

/** The coop id: sha256 of the canonical bytes of the (normalized) charter. */
export function coopId(charter: CoopCharter): string {
  return sha256Digest(canonicalBytes(normalizeCharter(charter)))
}

/** Normalizes and validates the charter, then signs its canonical bytes with each publisher key. */
export function createCharter(
  charter: CoopCharter,
  signers: readonly Ed25519PrivateKey[],
): { charter: CoopCharter; envelope: DsseEnvelope; coopId: string } {
  const valid = parseSchema(charterSchema, normalizeCharter(charter), 'charter')
  assertLicenseList(valid.acceptedLicenses)
  const payload = canonicalBytes(valid)
  const envelope = createEnvelope(CHARTER_PAYLOAD_TYPE, payload, signers)
  // Refuse to produce a charter its own verifier would reject.
  verifyCharter(envelope)
  return { charter: valid, envelope, coopId: sha256Digest(payload) }
}

export interface VerifiedCharter {
  charter: CoopCharter
  coopId: string
  signers: string[]
}

/**
 * Verifies a charter envelope. Checks in order: size, canonical JSON, envelope schema,
 * every signature (BAD_SIGNATURE), payloadType (UNKNOWN_TYPE), charter schema (SCHEMA),
 * license ids (INVALID_LICENSE), every signer is a publisher (ISSUER_MISMATCH), and at
 * least `threshold` publishers signed (THRESHOLD_NOT_MET).
 */
export function verifyCharter(input: DocumentInput): VerifiedCharter {
  const opened = openEnvelope(input, CHARTER_MAX_BYTES, 'charter')
  if (opened.payloadType !== CHARTER_PAYLOAD_TYPE)
    throw new ProtocolError('UNKNOWN_TYPE', `charter payloadType must be ${CHARTER_PAYLOAD_TYPE}`)
  const { value } = parseDocument(opened.payload, CHARTER_MAX_BYTES, 'charter payload')
  const charter = parseSchema(charterSchema, value, 'charter')
  assertLicenseList(charter.acceptedLicenses)
  const publishers = new Set(charter.publishers)
  for (const signer of opened.signers)
    if (!publishers.has(signer))
      throw new ProtocolError('ISSUER_MISMATCH', `charter signed by ${signer}, who is not a publisher`)
  if (opened.signers.length < charter.threshold)
    throw new ProtocolError(
      'THRESHOLD_NOT_MET',
      `charter has ${opened.signers.length} of ${charter.threshold} publisher signatures`,
    )
  return { charter, coopId: opened.payloadDigest, signers: opened.signers }
}
