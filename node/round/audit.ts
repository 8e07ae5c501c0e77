// Read-only checks over files: a checkpoint directory, its siblings and a store's blob folder.
// No LevelDB (it is single-process and locked while the node runs), so `coop checkpoint verify`
// and `coop trace` work on a running node's store, on a stopped one, and on a copied folder.
import { readFile, readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { checkParent, verifyListedStatement } from '../../protocol/binding.ts'
import type { VerifiedCharter } from '../../protocol/charter.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { canonicalBytes } from '../../protocol/jcs.ts'
import { EXCLUSION_DETAILS_MAX_BYTES } from '../../protocol/constants.ts'
import {
  type ExclusionDetails,
  type ExclusionSummary,
  verifyExclusionDetails,
} from '../../protocol/exclusions.ts'
import {
  readProvenanceStatement,
  verifyProvenance,
  type ProvenancePredicate,
  type VerifiedProvenance,
} from '../../protocol/provenance.ts'
import { isPlainFileName } from '../../protocol/schemas.ts'
import { CHECKPOINT_FILE_MAX_BYTES, STATEMENT_BLOB_MAX_BYTES } from './constants.ts'
import { RoundError, type RoundErrorCode } from './errors.ts'
import { CHECKPOINT_FILES, listCheckpointDirs } from './layout.ts'
import { type CharterChoice, type CharterSource, pinCharter, storeCharter } from './pinned-charter.ts'
import { computeCheckpoint, outerOptimizer, type ContributionPayload } from './recompute.ts'
import { decodeTensors } from './tensors.ts'
import { LineageIndex, type TraceCheckpoint, type TraceManifest } from './trace.ts'
import { checkUnlearning, rollbackRecomputation, type UnlearningReport } from './unlearning-files.ts'
import { errorCode } from '../../protocol/coded-error.ts'

const HEX = /^sha256:([0-9a-f]{64})$/

async function readBounded(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
  try {
    const bytes = new Uint8Array(await readFile(path))
    if (bytes.byteLength > maxBytes)
      throw new RoundError('BAD_CHECKPOINT', `${path} exceeds ${maxBytes} bytes`)
    return bytes
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined
    throw err
  }
}

/** A blob from a store's blob folder, only if its bytes match the digest. */
export async function readStoreBlob(
  storeDir: string,
  digest: string,
  maxBytes = CHECKPOINT_FILE_MAX_BYTES,
): Promise<Uint8Array | undefined> {
  const match = HEX.exec(digest)
  if (match === null) return undefined
  const bytes = await readBounded(join(storeDir, 'blobs', 'sha256', match[1] as string), maxBytes)
  if (bytes === undefined || sha256Digest(bytes) !== digest) return undefined
  return bytes
}

export interface LoadedCheckpoint {
  dir: string
  verified: VerifiedProvenance
  coopId: string
  publishers: string[]
  threshold: number
  /** What it excludes since its parent, checked against its provenance (set by loadLineage). */
  exclusions?: ExclusionDetails
}

/** Signature codes say who signed; every other protocol code says the document breaks a rule. */
const SIGNATURE_CODES = new Set(['BAD_SIGNATURE', 'THRESHOLD_NOT_MET', 'ISSUER_MISMATCH'])

/** Verifies the provenance of a checkpoint directory against a charter the caller trusts. */
export async function loadCheckpointDir(dir: string, charter: VerifiedCharter): Promise<LoadedCheckpoint> {
  const provenanceBytes = await readBounded(join(dir, CHECKPOINT_FILES.provenance), CHECKPOINT_FILE_MAX_BYTES)
  if (provenanceBytes === undefined)
    throw new RoundError('MISSING_FILE', `${dir} has no ${CHECKPOINT_FILES.provenance}`)
  let verified: VerifiedProvenance
  try {
    verified = verifyProvenance(provenanceBytes, {
      publishers: charter.charter.publishers,
      threshold: charter.charter.threshold,
    })
  } catch (err) {
    if (isProtocolError(err))
      throw new RoundError(
        SIGNATURE_CODES.has(err.code) ? 'BAD_SIGNATURE' : 'BAD_PROVENANCE',
        `provenance does not verify: ${err.code}: ${err.message}`,
        { cause: err },
      )
    throw err
  }
  if (verified.predicate.coop !== charter.coopId)
    throw new RoundError('WRONG_COOP', 'the provenance names another coop than the charter')
  return {
    dir,
    verified,
    coopId: charter.coopId,
    publishers: charter.charter.publishers,
    threshold: charter.charter.threshold,
  }
}

export interface VerifyReport {
  ok: boolean
  code?: RoundErrorCode
  message?: string
  checkpoint?: string
  coop?: string
  /** Where the trusted charter came from: --charter, --coop (a matching copy) or --store. */
  charterSource?: CharterSource
  phase?: string
  round?: number
  signers?: string[]
  files: { name: string; digest: string; ok: boolean }[]
  recomputation: 'passed' | 'failed' | 'unavailable' | 'genesis' | 'not-run'
  missing: string[]
  /** What the checkpoint excludes since its parent (signed counts) and whether the details were checked. */
  exclusions?: {
    revocations: number
    expiredManifests: number
    items: number
    details: 'none' | 'verified' | 'missing'
  }
  /** The charter's revocation policy and, under rollback, the lineage check (unlearning-files.ts). */
  unlearning?: UnlearningReport
}

/** Memoises an async computation. */
function once<T>(compute: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined
  return () => (result ??= compute())
}

/** A protocol rejection inside verification, as the round code a report carries. */
function reportCode(err: unknown): RoundErrorCode {
  if (err instanceof RoundError) return err.code
  if (isProtocolError(err) && (err.code === 'CONTRIBUTION_MISMATCH' || err.code === 'PARENT_MISMATCH'))
    return err.code
  return 'BAD_CHECKPOINT'
}

/**
 * Signature, file digests, the binding of every listed contribution to the statement its
 * contributor signed, the parent (weights and momentum) bound to the id the provenance names,
 * and (when the parent and the contributions are at hand, in `storeDir` or in sibling checkpoint
 * directories) the bit-exact recomputation. The charter is the caller's (pinCharter): never the
 * directory's copy on its own.
 */
export async function verifyCheckpointDir(dir: string, options: CharterChoice = {}): Promise<VerifyReport> {
  const report: VerifyReport = { ok: false, files: [], recomputation: 'not-run', missing: [] }
  // The checks run in this order, each on what the previous one established; a new check (for
  // example of the lineage) is one more numbered step, placed after what it relies on.
  try {
    // 1. The charter the user trusts (never the folder's copy alone).
    const charter = await pinCharter(dir, options)
    report.coop = charter.coopId
    report.charterSource = charter.source
    // 2. The provenance: publisher signatures (threshold) against that charter, and its coop.
    const loaded = await loadCheckpointDir(dir, charter)
    const { verified } = loaded
    Object.assign(report, {
      checkpoint: verified.digest,
      phase: verified.predicate.phase,
      round: verified.predicate.round,
      signers: verified.signers,
    })
    // 3. Every file against the digest the provenance signs.
    for (const [name, digest] of [...verified.files].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      // protocol/ admits plain names only; checked again here because this name becomes a path.
      if (!isPlainFileName(name))
        throw new RoundError('BAD_PROVENANCE', 'a checkpoint file name is not a plain name')
      const bytes = await readBounded(join(dir, name), CHECKPOINT_FILE_MAX_BYTES)
      report.files.push({ name, digest, ok: bytes !== undefined && sha256Digest(bytes) === digest })
    }
    const bad = report.files.find((f) => !f.ok)
    if (bad !== undefined)
      throw new RoundError('FILE_DIGEST_MISMATCH', `${bad.name} does not match its signed digest`)
    const p = verified.predicate
    // The exclusion details the provenance summarises: counts and items root must match.
    const exclusions = await readExclusions(dir, p.exclusions, options.storeDir)
    if (exclusions === undefined) report.missing.push(`exclusion details ${p.exclusions.details}`)
    report.exclusions = {
      revocations: p.exclusions.revocations,
      expiredManifests: p.exclusions.expiredManifests,
      items: p.exclusions.items,
      details: p.exclusions.details === null ? 'none' : exclusions === undefined ? 'missing' : 'verified',
    }
    // 4. Unlearning (unlearning-files.ts): under a rollback charter the lineage must exclude every
    // item it records as revoked; a rollback checkpoint's files are its new base's. (The folder's
    // charter.json, when used here, is the pinned coop's: step 1 checked it.)
    const lineage = once(() => loadLineage(options.storeDir ?? dirname(dirname(dir))).catch(() => undefined))
    report.unlearning = await checkUnlearning(
      { ...loaded, exclusions },
      lineage,
      options.charter ??
        ((await readBounded(join(dir, CHECKPOINT_FILES.charter), CHECKPOINT_FILE_MAX_BYTES)) as Uint8Array),
    )
    if (report.unlearning.receipt !== undefined) {
      report.recomputation = rollbackRecomputation(loaded, (await lineage())?.checkpoints ?? [])
      if (report.recomputation === 'unavailable')
        report.missing.push(`new base checkpoint ${p.parent?.provenance}`)
      report.ok = true
      return report
    }
    // 5. A genesis checkpoint has nothing more to check.
    if (p.parent === null) {
      report.recomputation = 'genesis'
      report.ok = true
      return report
    }
    const find = async (digest: string, maxBytes = CHECKPOINT_FILE_MAX_BYTES) =>
      options.storeDir === undefined ? undefined : await readStoreBlob(options.storeDir, digest, maxBytes)
    // 6. The parent, bound to the id the provenance names.
    // The parent: a sibling (or stored) directory whose signed provenance has the parent's id, else
    // its statement bytes in the store's blobs (named by the signed parent id, so authentic).
    const parent = await findParentFiles(dir, p, charter, options.storeDir)
    if (parent === undefined) report.missing.push(`parent checkpoint ${p.parent.provenance}`)
    // 7. Each listed contribution, bound to the statement its contributor signed.
    const payloads: ContributionPayload[] = []
    for (const c of p.contributions) {
      const statement = await find(c.statement, STATEMENT_BLOB_MAX_BYTES)
      const payload = await find(c.delta)
      if (statement === undefined) report.missing.push(`contribution statement ${c.statement}`)
      if (payload === undefined) report.missing.push(`contribution payload ${c.delta}`)
      if (statement === undefined) continue
      // The listed delta is the payload this statement names (and its base is the parent): checked
      // whenever the statement is at hand, recomputation or not.
      const { samples } = verifyListedStatement(p, c, statement)
      if (payload !== undefined) payloads.push({ payloadDigest: c.delta, samples, payload })
    }
    if (report.missing.length > 0 || parent === undefined) {
      report.recomputation = 'unavailable'
      report.ok = true
      return report
    }
    // 8. The bit-exact recomputation.
    const computed = computeCheckpoint(
      decodeTensors(parent.model),
      decodeTensors(parent.momentum),
      payloads,
      outerOptimizer(charter.charter, p.phase, p.round),
    )
    if (
      computed.modelDigest !== verified.files.get(CHECKPOINT_FILES.model) ||
      computed.momentumDigest !== verified.files.get(CHECKPOINT_FILES.momentum)
    ) {
      report.recomputation = 'failed'
      throw new RoundError(
        'RECOMPUTE_MISMATCH',
        'the recomputed weights do not match the signed file digests',
      )
    }
    report.recomputation = 'passed'
    report.ok = true
    return report
  } catch (err) {
    report.ok = false
    report.code = reportCode(err)
    report.message = err instanceof Error ? err.message : String(err)
    return report
  }
}

/**
 * The exclusion details a provenance summarises, from the checkpoint directory or the store's
 * blobs, checked against the summary (BAD_EXCLUSIONS when they do not match). Undefined when
 * the summary names details that are in neither place.
 */
export async function readExclusions(
  dir: string,
  summary: ExclusionSummary,
  storeDir?: string,
): Promise<ExclusionDetails | undefined> {
  let bytes: Uint8Array | undefined
  if (summary.details !== null) {
    bytes = await readBounded(join(dir, CHECKPOINT_FILES.exclusions), EXCLUSION_DETAILS_MAX_BYTES)
    if (bytes === undefined && storeDir !== undefined)
      bytes = await readStoreBlob(storeDir, summary.details, EXCLUSION_DETAILS_MAX_BYTES)
    if (bytes === undefined) return undefined
  }
  try {
    return verifyExclusionDetails(bytes, summary)
  } catch (err) {
    throw new RoundError('BAD_EXCLUSIONS', `exclusion details: ${errorCode(err)}: ${String(err)}`, {
      cause: err,
    })
  }
}

/**
 * The parent's weights and momentum, each checked against the digest the parent's provenance
 * signs, from a checkpoint directory beside `dir` or in the store (its provenance verified against
 * the charter) or from the store's blobs (its statement fetched by the id the child signs).
 * Throws PARENT_MISMATCH when the parent found is not the one the child names.
 */
async function findParentFiles(
  dir: string,
  child: ProvenancePredicate,
  charter: VerifiedCharter,
  storeDir?: string,
): Promise<{ model: Uint8Array; momentum: Uint8Array } | undefined> {
  if (child.parent === null) return undefined
  const parentId = child.parent.provenance
  const signedFiles = async (
    files: ReadonlyMap<string, string>,
    read: (name: string, digest: string) => Promise<Uint8Array | undefined>,
  ) => {
    const modelDigest = files.get(CHECKPOINT_FILES.model)
    const momentumDigest = files.get(CHECKPOINT_FILES.momentum)
    if (modelDigest === undefined || momentumDigest === undefined) return undefined
    const model = await read(CHECKPOINT_FILES.model, modelDigest)
    const momentum = await read(CHECKPOINT_FILES.momentum, momentumDigest)
    // A copy whose bytes differ from the signed digests is damaged or forged: not the parent.
    if (model === undefined || sha256Digest(model) !== modelDigest) return undefined
    if (momentum === undefined || sha256Digest(momentum) !== momentumDigest) return undefined
    return { model, momentum }
  }

  const candidates = new Set<string>()
  try {
    for (const name of await readdir(dirname(dir))) candidates.add(join(dirname(dir), name))
  } catch {
    // no siblings
  }
  if (storeDir !== undefined) for (const d of await listCheckpointDirs(storeDir)) candidates.add(d)
  for (const candidate of candidates) {
    if (candidate === dir) continue
    let parent: VerifiedProvenance
    try {
      parent = (await loadCheckpointDir(candidate, charter)).verified
    } catch {
      continue
    }
    if (parent.digest !== parentId) continue
    checkParent(child, parent)
    const files = await signedFiles(parent.files, (name) =>
      readBounded(join(candidate, name), CHECKPOINT_FILE_MAX_BYTES),
    )
    if (files !== undefined) return files
  }
  if (storeDir === undefined) return undefined
  const statement = await readStoreBlob(storeDir, parentId, CHECKPOINT_FILE_MAX_BYTES)
  if (statement === undefined) return undefined
  const parent = readProvenanceStatement(statement)
  checkParent(child, parent)
  return await signedFiles(parent.files, (_name, digest) => readStoreBlob(storeDir, digest))
}

/** Every checkpoint directory of a store whose provenance verifies, as a lineage index with the manifests it references. */
export async function loadLineage(
  storeDir: string,
): Promise<{ index: LineageIndex; checkpoints: LoadedCheckpoint[] }> {
  const charter = await storeCharter(storeDir)
  const loaded: LoadedCheckpoint[] = []
  for (const dir of await listCheckpointDirs(storeDir)) {
    try {
      loaded.push(await loadCheckpointDir(dir, charter))
    } catch {
      // An unverifiable directory is not part of any lineage we vouch for.
    }
  }
  const manifestIds = new Set<string>()
  const checkpoints: TraceCheckpoint[] = []
  const usable: LoadedCheckpoint[] = []
  for (const checkpoint of loaded) {
    const { verified, dir } = checkpoint
    const p = verified.predicate
    let exclusions: ExclusionDetails | undefined
    try {
      exclusions = await readExclusions(dir, p.exclusions, storeDir)
    } catch {
      exclusions = undefined
    }
    // Without its exclusions a checkpoint cannot say which images its lineage stopped using.
    if (exclusions === undefined) continue
    usable.push({ ...checkpoint, exclusions })
    for (const m of p.manifests) manifestIds.add(m)
    checkpoints.push({
      id: verified.digest,
      phase: p.phase,
      round: p.round,
      parent: p.parent?.provenance ?? null,
      components: p.components.map((c) => c.provenance),
      contributions: p.contributions.map((c) => ({
        statement: c.statement,
        payload: c.delta,
        peer: c.contributor,
        round: p.round,
        manifests: c.manifests,
        samples: 0,
      })),
      revokedExcluded: exclusions.items,
      expiredManifests: exclusions.expiredManifests,
    })
  }
  const manifests: TraceManifest[] = []
  for (const id of manifestIds) {
    const bytes = await readStoreBlob(storeDir, id, STATEMENT_BLOB_MAX_BYTES)
    if (bytes === undefined) continue
    const m = JSON.parse(new TextDecoder().decode(bytes)) as {
      issuer: string
      credentialSubject: {
        custodian: string
        license: string
        attribution: { name: string; uri?: string; text?: string }
        items: { digest: string; license?: string }[]
      }
    }
    // The blob's digest is the manifest id (sha256 of its canonical bytes), so its content is the signed one.
    if (sha256Digest(canonicalBytes(m)) !== id) continue
    const itemLicenses: Record<string, string> = {}
    for (const item of m.credentialSubject.items)
      if (item.license !== undefined) itemLicenses[item.digest] = item.license
    manifests.push({
      id,
      issuer: m.issuer,
      custodian: m.credentialSubject.custodian,
      items: m.credentialSubject.items.map((i) => i.digest),
      license: m.credentialSubject.license,
      attribution: m.credentialSubject.attribution,
      itemLicenses,
    })
  }
  return { index: new LineageIndex(checkpoints, manifests), checkpoints: usable }
}
