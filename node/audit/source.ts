// What an audit samples from: a cooperative U-Net checkpoint directory (provenance.json, verified
// like `coop checkpoint verify` does, without opening LevelDB) plus the autoencoder its provenance
// names as a component, or a `coop train` output folder (autoencoder/ and unet/).
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { CoopConfigSchema, type CoopConfig } from '../../configs/index.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { verifyCharter } from '../../protocol/charter.ts'
import { loadCheckpoint } from '../../trainer/checkpoint.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { loadCheckpointDir, readStoreBlob } from '../round/audit.ts'
import { directoryCharter, storeCharter } from '../round/pinned-charter.ts'
import { CHECKPOINT_FILES, listCheckpointDirs } from '../round/layout.ts'
import { decodeTensors } from '../round/tensors.ts'
import { AuditError } from './errors.ts'

export interface AuditSource {
  kind: 'cooperative' | 'local'
  dir: string
  config: CoopConfig
  unet: NamedTensor[]
  autoencoder: NamedTensor[]
  /** The audited checkpoint's files, name -> digest: the subject of a signed audit. */
  files: Record<string, string>
  /** Checkpoint id (provenance digest) of a cooperative checkpoint. */
  checkpoint: string | null
  coop: string | null
  round: number | null
  /** The store the checkpoint came from, when known (manifests for rights holders are read there). */
  storeDir?: string
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory()
  } catch {
    return false
  }
}

async function readVerified(path: string, digest: string | undefined, what: string): Promise<Uint8Array> {
  const bytes = new Uint8Array(await readFile(path))
  if (digest === undefined || sha256Digest(bytes) !== digest)
    throw new AuditError('FILE_DIGEST_MISMATCH', `${what} does not match its signed digest`)
  return bytes
}

/** The store holding `<store>/checkpoints/<name>`, when the directory sits in one. */
export function storeOf(dir: string): string | undefined {
  const parent = dirname(dir)
  return basename(parent) === 'checkpoints' ? dirname(parent) : undefined
}

/** Sibling directories and the store's checkpoint directories, whose provenance digest is `id`. */
async function findCheckpointById(dir: string, id: string, storeDir?: string): Promise<string | undefined> {
  const candidates = new Set<string>()
  try {
    for (const name of await readdir(dirname(dir))) candidates.add(join(dirname(dir), name))
  } catch {
    // no siblings
  }
  if (storeDir !== undefined) for (const d of await listCheckpointDirs(storeDir)) candidates.add(d)
  for (const candidate of candidates) {
    if (candidate === dir) continue
    try {
      const envelope = JSON.parse(await readFile(join(candidate, CHECKPOINT_FILES.provenance), 'utf8')) as {
        payload?: unknown
      }
      if (typeof envelope.payload !== 'string') continue
      if (sha256Digest(new Uint8Array(Buffer.from(envelope.payload, 'base64'))) === id) return candidate
    } catch {
      // not a checkpoint directory
    }
  }
  return undefined
}

async function loadCooperative(dir: string, storeOverride?: string): Promise<AuditSource> {
  // The charter of the store the user named; otherwise the folder's own (an audit reads the
  // checkpoint the user chose, it does not vouch for who published it).
  const pinned = storeOverride === undefined ? await directoryCharter(dir) : await storeCharter(storeOverride)
  const loaded = await loadCheckpointDir(dir, pinned)
  const p = loaded.verified.predicate
  if (p.phase !== 'unet')
    throw new AuditError('NOT_A_UNET', `${dir} is an autoencoder checkpoint: audit a U-Net checkpoint`)
  const files = Object.fromEntries(loaded.verified.files)
  const model = await readVerified(join(dir, CHECKPOINT_FILES.model), files[CHECKPOINT_FILES.model], 'model')
  const charter = verifyCharter(await readFile(join(dir, CHECKPOINT_FILES.charter)))
  const config = CoopConfigSchema.parse(charter.charter.model)
  const component = p.components[0]
  if (component === undefined)
    throw new AuditError('AUTOENCODER_NOT_FOUND', `${dir} names no autoencoder component in its provenance`)
  const storeDir = storeOverride ?? storeOf(dir)
  const aeDir = await findCheckpointById(dir, component.provenance, storeDir)
  let aeBytes: Uint8Array | undefined
  if (aeDir !== undefined) {
    const bytes = new Uint8Array(await readFile(join(aeDir, CHECKPOINT_FILES.model)))
    if (sha256Digest(bytes) === component.checkpoint) aeBytes = bytes
  }
  if (aeBytes === undefined && storeDir !== undefined)
    aeBytes = await readStoreBlob(storeDir, component.checkpoint)
  if (aeBytes === undefined)
    throw new AuditError(
      'AUTOENCODER_NOT_FOUND',
      `the autoencoder ${component.checkpoint} (provenance ${component.provenance}) is neither next to ${dir} nor in a store; pass --store`,
    )
  return {
    kind: 'cooperative',
    dir,
    config,
    unet: decodeTensors(model),
    autoencoder: decodeTensors(aeBytes),
    files,
    checkpoint: loaded.verified.digest,
    coop: loaded.coopId,
    round: p.round,
    ...(storeDir === undefined ? {} : { storeDir }),
  }
}

async function loadLocal(dir: string): Promise<AuditSource> {
  const autoencoder = await loadCheckpoint(join(dir, 'autoencoder'))
  const unet = await loadCheckpoint(join(dir, 'unet'))
  const files: Record<string, string> = {}
  for (const [phase, checkpoint] of [
    ['autoencoder', autoencoder],
    ['unet', unet],
  ] as const)
    for (const [name, entry] of Object.entries(checkpoint.manifest.files))
      if (name === 'model.safetensors' || name === 'config.json') files[`${phase}/${name}`] = entry.sha256
  return {
    kind: 'local',
    dir,
    config: unet.config,
    unet: unet.weights,
    autoencoder: autoencoder.weights,
    files,
    checkpoint: null,
    coop: null,
    round: null,
  }
}

/** Loads what `--checkpoint <dir>` names; `storeDir` is where a cooperative autoencoder may be found. */
export async function loadAuditSource(dir: string, storeDir?: string): Promise<AuditSource> {
  if (!(await isDir(dir))) throw new AuditError('NOT_A_CHECKPOINT', `no checkpoint directory at ${dir}`)
  try {
    await stat(join(dir, CHECKPOINT_FILES.provenance))
    return await loadCooperative(dir, storeDir)
  } catch (err) {
    if (!(err instanceof Error) || (err as { code?: unknown }).code !== 'ENOENT') throw err
  }
  if ((await isDir(join(dir, 'autoencoder'))) && (await isDir(join(dir, 'unet')))) return await loadLocal(dir)
  throw new AuditError(
    'NOT_A_CHECKPOINT',
    `${dir} holds neither provenance.json (a cooperative checkpoint) nor autoencoder/ and unet/ (a coop train output)`,
  )
}
