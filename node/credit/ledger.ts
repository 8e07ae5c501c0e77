// The credit ledger: each rights holder's share of what a checkpoint learned, counted in
// sample-steps (the training samples the signed contributions processed) through its whole
// lineage, the autoencoder component included. Read from a store's checkpoint directories and
// statement blobs (no LevelDB), every contribution statement verified against what the signed
// provenance says about it.
//
// The split rule: a contribution's `samples` is divided over the manifests it lists in proportion
// to their item counts, counting only items not yet revoked when its round started (the same
// rule `coop trace` uses for "used"). Sampling is uniform over the loaded images, so a manifest's
// expected share of a contribution's samples is its share of the images, as far as signed data
// can tell: the signed `itemCount` and `itemsRoot` name the used set but not its split by
// manifest. A single-manifest contribution (the usual case) is exact.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CONTRIBUTION_MAX_BYTES, IN_TOTO_PAYLOAD_TYPE, MANIFEST_MAX_BYTES } from '../../protocol/constants.ts'
import {
  type ContributionStatementBody,
  readContributionStatement,
  verifyContribution,
} from '../../protocol/contribution.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { loadLineage, loadCheckpointDir, readStoreBlob } from '../round/audit.ts'
import { storeCharter } from '../round/pinned-charter.ts'
import { STATEMENT_BLOB_MAX_BYTES } from '../round/constants.ts'
import type { LineageIndex } from '../round/trace.ts'
import { CreditError } from './errors.ts'

export interface LedgerHolder {
  /** did:key of the rights holder (the manifests' issuer); null for sample-steps whose manifest is not available. */
  did: string | null
  name: string
  /** The holder's licenses, joined with AND when several manifests differ. */
  license: string
  share: number
  sampleSteps: number
  manifests: string[]
}

export interface Ledger {
  checkpoint: string
  phase: string
  round: number
  /** Total sample-steps in the lineage: the denominator of every share. */
  sampleSteps: number
  contributions: number
  /** How many of those contributions' envelopes were in the store and their node signatures verified; the rest are vouched for by the publisher-signed digests alone. */
  contributorSignatures?: number
  holders: LedgerHolder[]
  rule: string
}

export const SPLIT_RULE =
  "each contribution's signed sample count, split over the manifests it lists in proportion to their items not revoked before its round; summed through the lineage, autoencoder component included"

/** Contribution envelopes among a store's blobs, by the digest of the statement they carry. */
async function contributionEnvelopes(storeDir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>()
  const folder = join(storeDir, 'blobs', 'sha256')
  let names: string[]
  try {
    names = await readdir(folder)
  } catch {
    return out
  }
  for (const name of names) {
    const path = join(folder, name)
    const info = await stat(path).catch(() => undefined)
    // Envelopes are small; models and deltas are skipped without being read.
    if (info === undefined || !info.isFile() || info.size > CONTRIBUTION_MAX_BYTES) continue
    const bytes = new Uint8Array(await readFile(path))
    if (`sha256:${name}` !== sha256Digest(bytes)) continue
    try {
      const envelope = JSON.parse(new TextDecoder().decode(bytes)) as {
        payload?: unknown
        payloadType?: unknown
      }
      if (typeof envelope.payload !== 'string' || envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) continue
      out.set(sha256Digest(new Uint8Array(Buffer.from(envelope.payload, 'base64'))), bytes)
    } catch {
      // not JSON: some other blob
    }
  }
  return out
}

/** Issuer, attribution name and license of a manifest blob whose bytes hash to its signed id. */
async function readManifestInfo(storeDir: string, id: string): Promise<ManifestInfo | undefined> {
  const bytes = await readStoreBlob(storeDir, id, MANIFEST_MAX_BYTES)
  if (bytes === undefined) return undefined
  const m = JSON.parse(new TextDecoder().decode(bytes)) as {
    issuer?: unknown
    credentialSubject?: { license?: unknown; attribution?: { name?: unknown } }
  }
  const issuer = m.issuer
  const license = m.credentialSubject?.license
  const name = m.credentialSubject?.attribution?.name
  if (typeof issuer !== 'string' || typeof license !== 'string' || typeof name !== 'string') return undefined
  return { issuer, name, license }
}

interface ManifestInfo {
  issuer: string
  name: string
  license: string
}

/** Pure: the ledger of `checkpointId` from a lineage index and each contribution's verified sample count. */
export function computeLedger(
  index: LineageIndex,
  checkpointId: string,
  samplesOf: (statement: string) => number,
  manifestInfo: (manifest: string) => ManifestInfo | undefined,
): Ledger {
  const checkpoint = index.checkpoint(checkpointId)
  if (checkpoint === undefined)
    throw new CreditError('UNKNOWN_CHECKPOINT', `no verified checkpoint ${checkpointId}`)
  // lineageUse lists each (contribution, manifest) pair with the items it could use.
  const byContribution = new Map<string, { manifest: string; items: number }[]>()
  for (const use of index.lineageUse(checkpointId)) {
    const list = byContribution.get(use.contribution.statement) ?? []
    list.push({ manifest: use.manifest, items: use.items.size })
    byContribution.set(use.contribution.statement, list)
  }
  const perManifest = new Map<string, number>()
  let total = 0
  for (const [statement, uses] of byContribution) {
    const samples = samplesOf(statement)
    total += samples
    const items = uses.reduce((sum, u) => sum + u.items, 0)
    for (const use of uses) {
      // A manifest whose items are unknown here (document missing) still gets an equal part.
      const part = items === 0 ? samples / uses.length : (samples * use.items) / items
      perManifest.set(use.manifest, (perManifest.get(use.manifest) ?? 0) + part)
    }
  }
  const holders = new Map<string, LedgerHolder & { licenses: Set<string> }>()
  for (const [manifest, sampleSteps] of perManifest) {
    const info = manifestInfo(manifest)
    const key = info?.issuer ?? ''
    let holder = holders.get(key)
    if (holder === undefined) {
      holder = {
        did: info?.issuer ?? null,
        name: info?.name ?? 'unknown: manifest not available in this store',
        license: '',
        share: 0,
        sampleSteps: 0,
        manifests: [],
        licenses: new Set(),
      }
      holders.set(key, holder)
    }
    holder.sampleSteps += sampleSteps
    holder.manifests.push(manifest)
    if (info !== undefined) holder.licenses.add(info.license)
  }
  const list = [...holders.values()]
    .map(({ licenses, ...h }) => ({
      ...h,
      license: licenses.size === 0 ? 'unknown' : [...licenses].sort().join(' AND '),
      share: total === 0 ? 0 : h.sampleSteps / total,
      manifests: h.manifests.sort(),
    }))
    .sort((a, b) => b.sampleSteps - a.sampleSteps || ((a.did ?? '') < (b.did ?? '') ? -1 : 1))
  return {
    checkpoint: checkpointId,
    phase: checkpoint.phase,
    round: checkpoint.round,
    sampleSteps: total,
    contributions: byContribution.size,
    holders: list,
    rule: SPLIT_RULE,
  }
}

/**
 * The ledger of a checkpoint held in `storeDir`, named by its id (provenance statement digest),
 * its model digest, or its directory. Every contribution statement in the lineage must be in the
 * store's blobs and verify: signer, delta and manifests as the provenance lists them.
 */
export async function ledgerFromStore(storeDir: string, checkpoint: string): Promise<Ledger> {
  const { index, checkpoints } = await loadLineage(storeDir)
  let id: string | undefined
  if (checkpoint.startsWith('sha256:'))
    id = checkpoints.find(
      (c) => c.verified.digest === checkpoint || c.verified.files.get('model.safetensors') === checkpoint,
    )?.verified.digest
  else id = (await loadCheckpointDir(checkpoint, await storeCharter(storeDir))).verified.digest
  if (id === undefined || index.checkpoint(id) === undefined)
    throw new CreditError('UNKNOWN_CHECKPOINT', `no verified checkpoint ${checkpoint} in ${storeDir}`)
  const samples = new Map<string, number>()
  const listed = new Map<string, { contributor: string; delta: string; manifests: string[]; round: number }>()
  for (const c of checkpoints)
    for (const contribution of c.verified.predicate.contributions)
      listed.set(contribution.statement, { ...contribution, round: c.verified.predicate.round })
  const envelopes = await contributionEnvelopes(storeDir)
  let signed = 0
  for (const use of index.lineageUse(id)) {
    const statement = use.contribution.statement
    if (samples.has(statement)) continue
    const bytes = await readStoreBlob(storeDir, statement, STATEMENT_BLOB_MAX_BYTES)
    if (bytes === undefined)
      throw new CreditError(
        'MISSING_CONTRIBUTION',
        `contribution statement ${statement} is not in ${storeDir}`,
      )
    const expected = listed.get(statement)
    let parsed: ContributionStatementBody
    try {
      parsed = readContributionStatement(bytes)
      // The contributor's own signature, where the store holds the envelope (it received the gossip).
      const envelope = envelopes.get(statement)
      if (envelope !== undefined) {
        const verified = verifyContribution(envelope)
        if (verified.contributor !== expected?.contributor)
          throw new CreditError(
            'CONTRIBUTION_MISMATCH',
            `statement ${statement} is signed by another node than the provenance lists`,
          )
        signed++
      }
    } catch (err) {
      if (isProtocolError(err))
        throw new CreditError(
          'CONTRIBUTION_MISMATCH',
          `statement ${statement} does not verify: ${err.code}: ${err.message}`,
        )
      throw err
    }
    const predicate = parsed.predicate
    if (
      expected === undefined ||
      parsed.delta !== expected.delta ||
      predicate.manifests.join() !== expected.manifests.join() ||
      predicate.round !== expected.round
    )
      throw new CreditError(
        'CONTRIBUTION_MISMATCH',
        `statement ${statement} differs from what the provenance lists`,
      )
    samples.set(statement, predicate.samples)
  }
  const manifests = new Map<string, ManifestInfo>()
  for (const c of checkpoints)
    for (const manifest of c.verified.predicate.manifests) {
      if (manifests.has(manifest)) continue
      const info = await readManifestInfo(storeDir, manifest)
      if (info !== undefined) manifests.set(manifest, info)
    }
  const ledger = computeLedger(
    index,
    id,
    (statement) => samples.get(statement) ?? 0,
    (manifest) => manifests.get(manifest),
  )
  return { ...ledger, contributorSignatures: signed }
}
