// A publisher gone bad, for the checkpoint-verification attacks: it holds a publisher key of the
// charter and signs checkpoints that recompute bit-exactly from what they list, but list things
// their contributors never signed (another delta under an honest statement), name files outside
// their directory, or ride on a doctored parent. Everything goes through the real protocol code.
import { PROVENANCE_PREDICATE_TYPE } from '../../../protocol/constants.ts'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { CoopCharter } from '../../../protocol/charter.ts'
import type { VerifiedContribution } from '../../../protocol/contribution.ts'
import { sha256Digest } from '../../../protocol/digest.ts'
import { envelopeBytes, type DsseEnvelope } from '../../../protocol/dsse.ts'
import { canonicalBytes } from '../../../protocol/jcs.ts'
import type { Ed25519PrivateKey } from '../../../protocol/keys.ts'
import type { ConsentManifest } from '../../../protocol/manifest.ts'
import {
  createProvenance,
  verifyProvenance,
  type ProvenancePredicate,
  type VerifiedProvenance,
} from '../../../protocol/provenance.ts'
import { decodeSafetensors, encodeSafetensors, type TensorEntry } from '../../../protocol/safetensors.ts'
import { signStatement } from '../../../protocol/statement.ts'
import { computeCheckpoint, outerOptimizer } from '../../../node/round/recompute.ts'
import { decodeTensors } from '../../../node/round/tensors.ts'
import { summarizeExclusions } from '../../../protocol/exclusions.ts'

/** The same payload layout with every value negated: a valid delta its contributor never signed. */
export function negatedPayload(payload: Uint8Array): Uint8Array {
  const { tensors, metadata } = decodeSafetensors(payload)
  const negated: TensorEntry[] = [...tensors.values()].map((t) => {
    if (t.dtype === 'I8') return { ...t, data: Int8Array.from(t.data as Int8Array, (v) => -v) }
    // Scales stay positive; top-k values flip with the rest.
    if (t.dtype === 'F32' && !t.name.endsWith('.scale'))
      return { ...t, data: Float32Array.from(t.data as Float32Array, (v) => -v) }
    return t
  })
  return encodeSafetensors(negated, metadata)
}

export interface ParentFiles {
  verified: VerifiedProvenance
  model: Uint8Array
  momentum: Uint8Array
}

export interface ForgedCheckpoint {
  envelope: DsseEnvelope
  verified: VerifiedProvenance
  files: { model: Uint8Array; momentum: Uint8Array; config: Uint8Array }
}

/** config.json exactly as an honest node writes it (RoundState.configBytes). */
export function configBytes(
  coopId: string,
  charter: CoopCharter,
  predicate: ProvenancePredicate,
): Uint8Array {
  return canonicalBytes({
    coop: coopId,
    phase: predicate.phase,
    round: predicate.round,
    model: charter.model,
    components: predicate.components,
  })
}

/**
 * Signs the checkpoint `parent + delta` and lists it as `contribution`'s work. With a delta the
 * statement does not name, the statement, contributor and manifests are honest and only the delta
 * is not: it recomputes bit-exactly from what it lists, so only the binding check can refuse it.
 * With doctored parent files, it recomputes only from those.
 */
export function forgeCheckpoint(options: {
  coopId: string
  charter: CoopCharter
  publisherKey: Ed25519PrivateKey
  parent: ParentFiles
  contribution: VerifiedContribution
  manifest: ConsentManifest
  delta: Uint8Array
  deltaDigest: string
}): ForgedCheckpoint {
  const { parent, contribution, manifest } = options
  const computed = computeCheckpoint(
    decodeTensors(parent.model),
    decodeTensors(parent.momentum),
    [{ payloadDigest: options.deltaDigest, samples: contribution.predicate.samples, payload: options.delta }],
    outerOptimizer(options.charter, contribution.predicate.phase, contribution.predicate.round),
  )
  const predicate: ProvenancePredicate = {
    coop: options.coopId,
    round: contribution.predicate.round,
    phase: contribution.predicate.phase,
    parent: {
      checkpoint: parent.verified.files.get('model.safetensors')!,
      provenance: parent.verified.digest,
    },
    contributions: [
      {
        statement: contribution.digest,
        contributor: contribution.contributor,
        delta: options.deltaDigest,
        manifests: contribution.predicate.manifests,
      },
    ],
    manifests: contribution.predicate.manifests,
    exclusions: summarizeExclusions({ revocations: [], expiredManifests: [], items: [] }).summary,
    components: parent.verified.predicate.components,
    license: manifest.credentialSubject.license,
    attribution: [manifest.credentialSubject.attribution],
  }
  const config = configBytes(options.coopId, options.charter, predicate)
  return sign(options, predicate, { model: computed.modelBytes, momentum: computed.momentumBytes, config })
}

function sign(
  options: { publisherKey: Ed25519PrivateKey; charter: CoopCharter },
  predicate: ProvenancePredicate,
  files: ForgedCheckpoint['files'],
): ForgedCheckpoint {
  const envelope = createProvenance(
    {
      ...predicate,
      files: {
        'model.safetensors': sha256Digest(files.model),
        'momentum.safetensors': sha256Digest(files.momentum),
        'config.json': sha256Digest(files.config),
      },
    },
    [options.publisherKey],
  )
  return {
    envelope,
    verified: verifyProvenance(envelope, { publishers: options.charter.publishers, threshold: 1 }),
    files,
  }
}

/**
 * A provenance signed by a publisher key whose subject names a file by a path, as a hostile
 * publisher would write it by hand (our signer refuses such names).
 */
export function signWithFileNames(
  publisherKey: Ed25519PrivateKey,
  predicate: ProvenancePredicate,
  files: Record<string, string>,
): DsseEnvelope {
  return signStatement(
    {
      _type: 'https://in-toto.io/Statement/v1',
      subject: Object.keys(files)
        .sort()
        .map((name) => ({ name, digest: { sha256: (files[name] as string).slice('sha256:'.length) } })),
      predicateType: PROVENANCE_PREDICATE_TYPE,
      predicate,
    },
    [publisherKey],
  )
}

/** Writes a checkpoint directory as a node does (model, momentum, config, provenance, charter). */
export async function writeCheckpointFolder(
  dir: string,
  checkpoint: { envelope: DsseEnvelope; files: ForgedCheckpoint['files'] },
  charterBytes: Uint8Array,
): Promise<string> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'model.safetensors'), checkpoint.files.model)
  await writeFile(join(dir, 'momentum.safetensors'), checkpoint.files.momentum)
  await writeFile(join(dir, 'config.json'), checkpoint.files.config)
  await writeFile(join(dir, 'provenance.json'), envelopeBytes(checkpoint.envelope))
  await writeFile(join(dir, 'charter.json'), charterBytes)
  return dir
}
