// After (or between) runs: turns the publisher's store into the demo's outputs. Everything
// shown comes from signed documents: checkpoints from their provenance, per-peer losses from
// the ContributionStatements they list, rights holders from the consent manifests they name.
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readdir, readFile, rename } from 'node:fs/promises'
import { basename, join, relative } from 'node:path'
import type { CoopCharter } from '../../protocol/charter.ts'
import { verifyContribution } from '../../protocol/contribution.ts'
import { verifyManifest } from '../../protocol/manifest.ts'
import { verifyProvenance } from '../../protocol/provenance.ts'
import type { ProvenancePredicate } from '../../protocol/provenance.ts'
import { CHECKPOINT_FILES, listCheckpointDirs } from '../round/layout.ts'
import { contributionKey } from '../round/records.ts'
import type { ContributionRecord } from '../round/records.ts'
import { openStore } from '../store/store.ts'
import { verifyCheckpointDir } from '../round/audit.ts'
import { DemoError } from './errors.ts'

export interface CollectedContribution {
  statement: string
  contributor: string
  delta: string
  manifests: string[]
  samples?: number
  loss?: number
}

export interface CollectedCheckpoint {
  /** Folder name under <out>/checkpoints: the round, or `<phase>-genesis`. */
  name: string
  phase: 'autoencoder' | 'unet'
  round: number
  /** Provenance statement digest: the checkpoint's id. */
  id: string
  modelDigest: string
  parentId: string | null
  contributions: CollectedContribution[]
  excludedItems: number
  /** Manifests whose consent ended since the parent (signed count). */
  expiredManifests: number
  /** Provenance id of the autoencoder a U-Net checkpoint depends on. */
  autoencoderId?: string
  predicate: ProvenancePredicate
  /** The folder in the publisher's store. */
  storeDir: string
}

const PHASE_ORDER = { autoencoder: 0, unet: 1 } as const

export function checkpointFolderName(phase: 'autoencoder' | 'unet', round: number, genesis: boolean): string {
  return genesis ? `${phase}-genesis` : String(round)
}

/** Every checkpoint in the publisher's store, verified against the charter, in chain order. */
export async function readCheckpoints(
  store: string,
  charter: CoopCharter,
  coopId: string,
): Promise<CollectedCheckpoint[]> {
  const out: CollectedCheckpoint[] = []
  for (const dir of await listCheckpointDirs(store)) {
    const bytes = new Uint8Array(await readFile(join(dir, CHECKPOINT_FILES.provenance)))
    const verified = verifyProvenance(bytes, {
      publishers: charter.publishers,
      threshold: charter.threshold,
      coopId,
    })
    const p = verified.predicate
    const modelDigest = verified.files.get(CHECKPOINT_FILES.model)
    if (modelDigest === undefined)
      throw new DemoError('CHECKPOINT_MISSING', `${dir}: provenance lists no ${CHECKPOINT_FILES.model}`)
    out.push({
      name: checkpointFolderName(p.phase, p.round, p.parent === null),
      phase: p.phase,
      round: p.round,
      id: verified.digest,
      modelDigest,
      parentId: p.parent?.provenance ?? null,
      contributions: p.contributions.map((c) => ({
        statement: c.statement,
        contributor: c.contributor,
        delta: c.delta,
        manifests: c.manifests,
      })),
      excludedItems: p.exclusions.items,
      expiredManifests: p.exclusions.expiredManifests,
      ...(p.components[0] === undefined ? {} : { autoencoderId: p.components[0].provenance }),
      predicate: p,
      storeDir: dir,
    })
  }
  return out.sort((a, b) => a.round - b.round || PHASE_ORDER[a.phase] - PHASE_ORDER[b.phase])
}

/**
 * Fills in each contribution's samples and loss from its signed statement, read from the
 * publisher's store (which must not be open by a running node).
 */
export async function readContributionStats(
  storeDir: string,
  checkpoints: CollectedCheckpoint[],
): Promise<void> {
  const store = await openStore(storeDir)
  try {
    for (const checkpoint of checkpoints) {
      for (const contribution of checkpoint.contributions) {
        const record = (await store.contributions.get(
          contributionKey(checkpoint.round, contribution.statement),
        )) as ContributionRecord | undefined
        if (record === undefined) continue
        const envelope = await store.getBlob(record.envelope)
        if (envelope === undefined) continue
        const verified = verifyContribution(envelope, { round: checkpoint.round })
        if (verified.digest !== contribution.statement || verified.contributor !== contribution.contributor)
          continue
        contribution.samples = verified.predicate.samples
        contribution.loss = verified.predicate.loss
      }
    }
  } finally {
    await store.close()
  }
}

/** Copies a checkpoint folder into <out>/checkpoints/<name>/ (through a temp folder, so it is whole or absent). */
export async function exportCheckpoint(
  checkpoint: CollectedCheckpoint,
  checkpointsDir: string,
): Promise<string> {
  const final = join(checkpointsDir, checkpoint.name)
  const marker = join(final, CHECKPOINT_FILES.provenance)
  if (existsSync(marker)) {
    // Same folder name, same provenance bytes: already exported. Different: another chain, never mixed.
    const [a, b] = await Promise.all([
      readFile(marker),
      readFile(join(checkpoint.storeDir, CHECKPOINT_FILES.provenance)),
    ])
    if (a.equals(b)) return final
    throw new DemoError(
      'PARAMS_MISMATCH',
      `${final} holds another checkpoint than the publisher's round ${checkpoint.round}`,
    )
  }
  const temp = `${final}.partial`
  await mkdir(temp, { recursive: true })
  for (const name of await readdir(checkpoint.storeDir))
    await copyFile(join(checkpoint.storeDir, name), join(temp, name))
  await rename(temp, final)
  return final
}

export interface VerifyOutcome {
  ok: boolean
  code?: string
  detail: string
}

/**
 * The same checks as `coop checkpoint verify <dir> --store <store>`, in-process: publisher
 * signatures, file digests, and the bit-exact recomputation from the listed contributions.
 */
export async function verifyExportedCheckpoint(dir: string, store: string): Promise<VerifyOutcome> {
  const report = await verifyCheckpointDir(dir, { storeDir: store })
  if (!report.ok)
    return {
      ok: false,
      code: report.code ?? 'BAD_CHECKPOINT',
      detail: report.message ?? 'verification failed',
    }
  const files = report.files.length
  const recompute =
    report.recomputation === 'passed'
      ? 'aggregate recomputed bit-exactly from the listed contributions'
      : report.recomputation === 'genesis'
        ? 'genesis checkpoint (no contributions to recompute)'
        : `recomputation ${report.recomputation}${report.missing.length > 0 ? ` (missing ${report.missing.join(', ')})` : ''}`
  return {
    ok: true,
    detail: `signed by ${(report.signers ?? []).length} publisher(s); ${files} file digests match; ${recompute}`,
  }
}

export interface ManifestOwner {
  digest: string
  peerName: string
  peerId: string
  rightsHolder: string
  license: string
  attributionName: string
  attributionUri?: string
  items: number
}

/** Reads and verifies each peer's consent manifest: digest -> who holds the rights to what. */
export async function readManifests(
  peers: { name: string; peerId: string; consent: string }[],
  now = new Date(),
): Promise<Map<string, ManifestOwner>> {
  const out = new Map<string, ManifestOwner>()
  for (const peer of peers) {
    const verified = verifyManifest(new Uint8Array(await readFile(peer.consent)), { now })
    const subject = verified.manifest.credentialSubject as {
      license: string
      attribution: { name: string; uri?: string }
    }
    out.set(verified.digest, {
      digest: verified.digest,
      peerName: peer.name,
      peerId: peer.peerId,
      rightsHolder: verified.issuer,
      license: subject.license,
      attributionName: subject.attribution.name,
      ...(subject.attribution.uri === undefined ? {} : { attributionUri: subject.attribution.uri }),
      items: verified.items.length,
    })
  }
  return out
}

/** Manifests the final checkpoints depend on: their own contributions' and all ancestors' (and the autoencoder's). */
export function lineageManifests(checkpoints: CollectedCheckpoint[]): Set<string> {
  const out = new Set<string>()
  for (const checkpoint of checkpoints) for (const m of checkpoint.predicate.manifests) out.add(m)
  return out
}

export function relativeTo(from: string, path: string): string {
  return relative(from, path).split('\\').join('/') || basename(path)
}
