// A component autoencoder: a published autoencoder checkpoint of another (or an earlier)
// cooperative, which a charter adopts instead of training one. Its directory holds at least
// model.safetensors and provenance.json as the round engine writes them. The provenance is
// signed by that cooperative's publishers, not ours: its own signatures must verify and it must
// name the model file we hold; our charter then pins both digests.
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { PROVENANCE_MAX_BYTES } from '../../protocol/constants.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { envelopeBytes, type DsseEnvelope } from '../../protocol/dsse.ts'
import { verifyProvenance, type VerifiedProvenance } from '../../protocol/provenance.ts'
import { CHECKPOINT_FILE_MAX_BYTES, COMPONENT_CONFIG_MAX_BYTES } from './constants.ts'
import { RoundError } from './errors.ts'
import { CHECKPOINT_FILES, writeCheckpointDir } from './layout.ts'
import type { PhaseCharter } from './schedule.ts'
import { signedFileDigests, statementBytes, type RoundState } from './state.ts'
import type { Logger } from 'pino'
import { errorCode } from '../../protocol/coded-error.ts'

/** The parts of a model configuration that decide the autoencoder's tensors and latent space. */
interface AutoencoderShape {
  image: { size: number }
  autoencoder: { channels: number[]; latentChannels: number; groups: number }
}

export interface AutoencoderComponent {
  model: Uint8Array
  modelDigest: string
  /** The model configuration from the directory's signed config.json, when the directory has one. */
  config?: AutoencoderShape
  envelope: DsseEnvelope
  verified: VerifiedProvenance
}

async function readBounded(
  path: string,
  maxBytes: number,
  optional = false,
): Promise<Uint8Array | undefined> {
  let size: number
  try {
    size = (await stat(path)).size
  } catch (err) {
    if (errorCode(err) === 'ENOENT') {
      if (optional) return undefined
      throw new RoundError('MISSING_FILE', `${path} does not exist`)
    }
    throw err
  }
  if (size > maxBytes) throw new RoundError('BAD_CHECKPOINT', `${path} exceeds ${maxBytes} bytes`)
  return new Uint8Array(await readFile(path))
}

/** Reads and verifies a component autoencoder checkpoint directory (its own signers, its own files). */
export async function readAutoencoderComponent(dir: string): Promise<AutoencoderComponent> {
  const provenanceBytes = (await readBounded(
    join(dir, CHECKPOINT_FILES.provenance),
    PROVENANCE_MAX_BYTES,
  )) as Uint8Array
  const model = (await readBounded(
    join(dir, CHECKPOINT_FILES.model),
    CHECKPOINT_FILE_MAX_BYTES,
  )) as Uint8Array
  const configBytes = await readBounded(join(dir, CHECKPOINT_FILES.config), COMPONENT_CONFIG_MAX_BYTES, true)
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
  if (configBytes === undefined) return { model, modelDigest, envelope, verified }
  if (verified.files.get(CHECKPOINT_FILES.config) !== sha256Digest(configBytes))
    throw new RoundError(
      'FILE_DIGEST_MISMATCH',
      `${dir}/${CHECKPOINT_FILES.config} is not the config its provenance signs`,
    )
  const config = (JSON.parse(new TextDecoder().decode(configBytes)) as { model?: AutoencoderShape }).model
  if (config?.image === undefined || config.autoencoder === undefined)
    throw new RoundError('BAD_CHECKPOINT', `${dir}/${CHECKPOINT_FILES.config} names no model configuration`)
  return { model, modelDigest, config, envelope, verified }
}

/**
 * A component must decode into the latent space our U-Net is built for: same image size and the
 * same autoencoder architecture (training hyper-parameters may differ).
 */
export function assertComponentFits(model: AutoencoderShape, component: AutoencoderComponent): void {
  const theirs = component.config
  if (theirs === undefined) return
  const shape = (m: AutoencoderShape): string =>
    JSON.stringify([m.image.size, m.autoencoder.channels, m.autoencoder.latentChannels, m.autoencoder.groups])
  if (shape(theirs) !== shape(model))
    throw new RoundError(
      'COMPONENT_MISMATCH',
      `the component autoencoder (image ${theirs.image.size}px, channels ${theirs.autoencoder.channels.join('/')}, ` +
        `latent ${theirs.autoencoder.latentChannels}) does not fit this model ` +
        `(image ${model.image.size}px, channels ${model.autoencoder.channels.join('/')}, latent ${model.autoencoder.latentChannels})`,
    )
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

/**
 * Stores the charter's component autoencoder as round 0 of the autoencoder phase: the model
 * blob (served to peers that fetch it by digest), its foreign provenance, and a checkpoint
 * directory. Its momentum and config are never needed (no autoencoder round follows), so the
 * record names their signed digests without holding them.
 */
export async function importComponent(
  state: RoundState,
  component: AutoencoderComponent,
  log: Logger,
): Promise<void> {
  assertCharterComponent(state.charter, component)
  if (state.checkpointAt('autoencoder', 0)?.id === component.verified.digest) return
  const files = signedFileDigests(component.verified)
  const provenanceBytes = envelopeBytes(component.envelope)
  const [model, envelopeDigest, , dir] = await Promise.all([
    state.store.putBlob(component.model),
    state.store.putBlob(provenanceBytes),
    state.store.putBlob(statementBytes(component.envelope)),
    writeCheckpointDir(state.store.dir, 'autoencoder', 0, {
      [CHECKPOINT_FILES.model]: component.model,
      [CHECKPOINT_FILES.provenance]: provenanceBytes,
    }),
  ])
  const record = await state.commitCheckpoint({
    id: component.verified.digest,
    phase: 'autoencoder',
    round: 0,
    files: { model, momentum: files.momentum, config: files.config },
    envelope: envelopeDigest,
    predicate: component.verified.predicate,
    signers: component.verified.signers,
    verification: 'component',
    adoptedAt: new Date().toISOString(),
    dir,
  })
  log.info({ checkpoint: record.id, model, signers: record.signers }, 'component autoencoder imported')
}
