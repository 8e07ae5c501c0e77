// A cooperative's U-Net checkpoint as something to sample from: `coop sample --checkpoint
// <store>/checkpoints/unet-rN` (or an exported demo checkpoint). The directory's provenance is
// verified against its charter, its model and config against the signed digests, and its
// autoencoder is the one the provenance names under `components`, found beside it, in --store
// (checkpoint folders or blobs) or at --autoencoder, and accepted only if its digests match.
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { type CoopConfig, validateConfig } from '../../configs/index.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { CliError } from '../cli/command.ts'
import { loadCheckpointDir, readStoreBlob } from '../round/audit.ts'
import { directoryCharter, storeCharter } from '../round/pinned-charter.ts'
import { CHECKPOINT_FILES, listCheckpointDirs } from '../round/layout.ts'
import { decodeTensors, type NamedTensor } from '../round/tensors.ts'

export interface CoopSampleSource {
  config: CoopConfig
  unet: NamedTensor[]
  autoencoder: NamedTensor[]
  /** Where the autoencoder weights came from, for the summary line. */
  autoencoderFrom: string
  round: number
  checkpoint: string
}

async function readOptional(path: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(path))
  } catch {
    return undefined
  }
}

/** The statement digest of a provenance envelope file (how components name it), or undefined. */
async function provenanceId(dir: string): Promise<string | undefined> {
  const bytes = await readOptional(join(dir, CHECKPOINT_FILES.provenance))
  if (bytes === undefined) return undefined
  try {
    const payload = (JSON.parse(new TextDecoder().decode(bytes)) as { payload?: unknown }).payload
    return typeof payload === 'string'
      ? sha256Digest(new Uint8Array(Buffer.from(payload, 'base64')))
      : undefined
  } catch {
    return undefined
  }
}

async function siblingDirs(dir: string): Promise<string[]> {
  const parent = dirname(resolve(dir))
  const names = await readdir(parent).catch(() => [] as string[])
  return names.map((name) => join(parent, name)).filter((path) => path !== resolve(dir))
}

/** True when `dir` holds the wanted autoencoder: its provenance and model have the named digests. */
async function holdsAutoencoder(
  dir: string,
  want: { checkpoint: string; provenance: string },
): Promise<Uint8Array | undefined> {
  if ((await provenanceId(dir)) !== want.provenance) return undefined
  const model = await readOptional(join(dir, CHECKPOINT_FILES.model))
  return model !== undefined && sha256Digest(model) === want.checkpoint ? model : undefined
}

export async function loadCoopSampleSource(
  dir: string,
  options: { store?: string; autoencoder?: string } = {},
): Promise<CoopSampleSource> {
  // The store's charter when there is one; sampling claims nothing, so the folder's copy serves otherwise.
  const charter =
    options.store === undefined ? await directoryCharter(dir) : await storeCharter(options.store)
  const loaded = await loadCheckpointDir(dir, charter)
  const predicate = loaded.verified.predicate
  if (predicate.phase !== 'unet')
    throw new CliError(
      'NOT_A_UNET',
      `${dir} is an autoencoder checkpoint; sample from a U-Net checkpoint of the same coop (checkpoints/unet-r...)`,
    )
  const signed = (name: string) => loaded.verified.files.get(name)
  const model = await readOptional(join(dir, CHECKPOINT_FILES.model))
  if (model === undefined || sha256Digest(model) !== signed(CHECKPOINT_FILES.model))
    throw new CliError(
      'FILE_DIGEST_MISMATCH',
      `${dir}/${CHECKPOINT_FILES.model} is missing or not the model its provenance signs`,
    )
  const configBytes = await readOptional(join(dir, CHECKPOINT_FILES.config))
  if (configBytes === undefined || sha256Digest(configBytes) !== signed(CHECKPOINT_FILES.config))
    throw new CliError(
      'FILE_DIGEST_MISMATCH',
      `${dir}/${CHECKPOINT_FILES.config} is missing or not the config its provenance signs`,
    )
  const config = validateConfig(
    (JSON.parse(new TextDecoder().decode(configBytes)) as { model?: unknown }).model,
  )

  const component = predicate.components.find((c) => c.role === 'autoencoder')
  if (component === undefined)
    throw new CliError('BAD_CHECKPOINT', `${dir}: the provenance names no autoencoder component`)
  const want = { checkpoint: component.checkpoint, provenance: component.provenance }
  let autoencoder: Uint8Array | undefined
  let from = ''
  if (options.autoencoder !== undefined) {
    autoencoder = await holdsAutoencoder(options.autoencoder, want)
    if (autoencoder === undefined)
      throw new CliError(
        'AUTOENCODER_MISMATCH',
        `--autoencoder ${options.autoencoder} is not the autoencoder this checkpoint names ` +
          `(model ${want.checkpoint}, provenance ${want.provenance})`,
      )
    from = options.autoencoder
  } else {
    const candidates = [
      ...(await siblingDirs(dir)),
      ...(options.store === undefined ? [] : await listCheckpointDirs(options.store)),
    ]
    for (const candidate of candidates) {
      autoencoder = await holdsAutoencoder(candidate, want)
      if (autoencoder !== undefined) {
        from = candidate
        break
      }
    }
    if (autoencoder === undefined && options.store !== undefined) {
      // A component autoencoder of another coop lives in the store only as a blob, by digest.
      autoencoder = await readStoreBlob(options.store, want.checkpoint)
      from = `${options.store} (blob ${want.checkpoint})`
    }
  }
  if (autoencoder === undefined)
    throw new CliError(
      'AUTOENCODER_NOT_FOUND',
      `${dir} needs autoencoder ${want.checkpoint} (provenance ${want.provenance}), which is not beside it` +
        `${options.store === undefined ? '' : ` nor in --store ${options.store}`}: pass --store <the node store> or --autoencoder <its checkpoint dir>`,
    )
  return {
    config,
    unet: decodeTensors(model),
    autoencoder: decodeTensors(autoencoder),
    autoencoderFrom: from,
    round: predicate.round,
    checkpoint: loaded.verified.digest,
  }
}
