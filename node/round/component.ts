// A component autoencoder: a published autoencoder checkpoint of another (or an earlier)
// cooperative, which a charter adopts instead of training one. Its directory holds at least
// model.safetensors and provenance.json as the round engine writes them. The provenance is
// signed by that cooperative's publishers, not ours: its own signatures must verify and it must
// name the model file we hold; our charter then pins both digests.
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { PROVENANCE_MAX_BYTES } from '../../protocol/constants.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import type { DsseEnvelope } from '../../protocol/dsse.ts'
import { verifyProvenance, type VerifiedProvenance } from '../../protocol/provenance.ts'
import { CHECKPOINT_FILE_MAX_BYTES } from './constants.ts'
import { RoundError } from './errors.ts'
import { CHECKPOINT_FILES } from './layout.ts'
import type { PhaseCharter } from './schedule.ts'

export interface AutoencoderComponent {
  model: Uint8Array
  modelDigest: string
  envelope: DsseEnvelope
  verified: VerifiedProvenance
}

async function readBounded(path: string, maxBytes: number): Promise<Uint8Array> {
  let size: number
  try {
    size = (await stat(path)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new RoundError('MISSING_FILE', `${path} does not exist`)
    throw err
  }
  if (size > maxBytes) throw new RoundError('BAD_CHECKPOINT', `${path} exceeds ${maxBytes} bytes`)
  return new Uint8Array(await readFile(path))
}

/** Reads and verifies a component autoencoder checkpoint directory (its own signers, its own files). */
export async function readAutoencoderComponent(dir: string): Promise<AutoencoderComponent> {
  const provenanceBytes = await readBounded(join(dir, CHECKPOINT_FILES.provenance), PROVENANCE_MAX_BYTES)
  const model = await readBounded(join(dir, CHECKPOINT_FILES.model), CHECKPOINT_FILE_MAX_BYTES)
  let envelope: DsseEnvelope
  try {
    envelope = JSON.parse(new TextDecoder().decode(provenanceBytes)) as DsseEnvelope
  } catch (err) {
    throw new RoundError('BAD_CHECKPOINT', `${dir}/${CHECKPOINT_FILES.provenance} is not JSON`, {
      cause: err,
    })
  }
  const signatures: unknown = (envelope as { signatures?: unknown }).signatures
  const keyids = Array.isArray(signatures)
    ? signatures
        .map((s) => (s as { keyid?: unknown }).keyid)
        .filter((k): k is string => typeof k === 'string')
    : []
  let verified: VerifiedProvenance
  try {
    // Another cooperative's publishers signed it: every signature must verify, whoever made it.
    verified = verifyProvenance(provenanceBytes, { publishers: keyids, threshold: 1 })
  } catch (err) {
    throw new RoundError('BAD_SIGNATURE', `${dir}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    })
  }
  if (verified.predicate.phase !== 'autoencoder')
    throw new RoundError(
      'BAD_CHECKPOINT',
      `${dir} is a ${verified.predicate.phase} checkpoint, not an autoencoder`,
    )
  const modelDigest = sha256Digest(model)
  if (verified.files.get(CHECKPOINT_FILES.model) !== modelDigest)
    throw new RoundError(
      'FILE_DIGEST_MISMATCH',
      `${dir}/${CHECKPOINT_FILES.model} (${modelDigest}) is not the model its provenance signs`,
    )
  return { model, modelDigest, envelope, verified }
}

/** The charter's component pin must name exactly this checkpoint (model digest and provenance). */
export function assertCharterComponent(charter: PhaseCharter, component: AutoencoderComponent): void {
  const ae = charter.phases.autoencoder
  if (ae.mode !== 'component')
    throw new RoundError(
      'COMPONENT_MISMATCH',
      'the charter trains its autoencoder cooperatively; --autoencoder does not apply',
    )
  if (ae.checkpoint !== component.modelDigest || ae.provenance !== component.verified.digest)
    throw new RoundError(
      'COMPONENT_MISMATCH',
      `the charter pins autoencoder ${ae.checkpoint} (provenance ${ae.provenance}); ` +
        `the directory holds ${component.modelDigest} (provenance ${component.verified.digest})`,
    )
}
