// Checkpoint directory I/O. A checkpoint is a directory:
//   model.safetensors  the weights (safetensors, F32), readable by `safetensors.numpy.load_file`
//   config.json        the full resolved configuration
//   state.json + state.safetensors   (optional) resumable training state: step, RNG, data
//                      position, raw weights, Adam moments, EMA
//   checkpoint.json    written last: byte length and sha256 of every other file
// Saving writes a complete sibling directory, then swaps it in with two renames, so a crash
// at any point leaves the previous checkpoint loadable (at `<dir>`, or at `<dir>.prev` in the
// instant between the renames, which loadCheckpoint falls back to). Loading checks every
// file's length and digest before decoding: a truncated or altered file is an error, never
// wrong weights.
import { createHash } from 'node:crypto'
import { open, readFile, rename, rm, mkdir, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { validateConfig } from '../configs/index.ts'
import type { CoopConfig } from '../configs/index.ts'
import { decodeSafetensors, encodeSafetensors, float16ToFloat32Array } from '../protocol/safetensors.ts'
import type { TensorEntry } from '../protocol/safetensors.ts'
import { CHECKPOINT_JSON_MAX_BYTES, TRAINING_CHECKPOINT_MAX_BYTES } from './constants.ts'
import { TrainerError } from './errors.ts'
import type { SessionState, SessionStateJson } from './session.ts'
import type { NamedTensor } from './types.ts'
import { errorCode } from '../protocol/coded-error.ts'

export const TRAINING_CHECKPOINT_FILES = {
  model: 'model.safetensors',
  config: 'config.json',
  stateJson: 'state.json',
  stateTensors: 'state.safetensors',
  manifest: 'checkpoint.json',
} as const

const FORMAT = 'diffusion-coop-checkpoint/1'

export interface CheckpointManifest {
  format: typeof FORMAT
  /** File name -> its byte length and 'sha256:<hex>' digest. */
  files: Record<string, { bytes: number; sha256: string }>
}

export interface CheckpointContents {
  weights: NamedTensor[]
  config: CoopConfig
  state?: SessionState
  /** String metadata stored in model.safetensors' `__metadata__` (e.g. phase). */
  metadata?: Record<string, string>
}

export interface LoadedCheckpoint extends CheckpointContents {
  metadata: Record<string, string>
  manifest: CheckpointManifest
  /** The directory actually read (`<dir>.prev` after a crash between the two renames of a save). */
  dir: string
}

function sha256Hex(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(path, 'w')
  try {
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

function toEntries(tensors: readonly NamedTensor[]): TensorEntry[] {
  return tensors.map((t) => ({ name: t.name, dtype: 'F32', shape: [...t.shape], data: t.data }))
}

function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`)
}

/** Saves atomically (see the module comment); returns the manifest written. */
export async function saveCheckpoint(dir: string, contents: CheckpointContents): Promise<CheckpointManifest> {
  const files = new Map<string, Uint8Array>()
  files.set(
    TRAINING_CHECKPOINT_FILES.model,
    encodeSafetensors(toEntries(contents.weights), {
      format: FORMAT,
      config: contents.config.name,
      ...contents.metadata,
    }),
  )
  files.set(TRAINING_CHECKPOINT_FILES.config, jsonBytes(contents.config))
  if (contents.state !== undefined) {
    files.set(TRAINING_CHECKPOINT_FILES.stateJson, jsonBytes(contents.state.json))
    files.set(
      TRAINING_CHECKPOINT_FILES.stateTensors,
      encodeSafetensors(toEntries(contents.state.tensors), { format: FORMAT }),
    )
  }
  const manifest: CheckpointManifest = { format: FORMAT, files: {} }
  for (const [name, bytes] of files) manifest.files[name] = { bytes: bytes.length, sha256: sha256Hex(bytes) }

  const parent = dirname(dir)
  const temporary = join(parent, `.${basename(dir)}.tmp`)
  const previous = `${dir}.prev`
  await mkdir(parent, { recursive: true })
  await rm(temporary, { recursive: true, force: true })
  await mkdir(temporary)
  for (const [name, bytes] of files) await writeDurably(join(temporary, name), bytes)
  await writeDurably(join(temporary, TRAINING_CHECKPOINT_FILES.manifest), jsonBytes(manifest))
  await syncDirectory(temporary)
  if (await exists(dir)) {
    await rm(previous, { recursive: true, force: true })
    await rename(dir, previous)
  }
  // If `dir` was missing but `previous` exists, a former save crashed between renames: `previous` stays until this one is in place.
  await rename(temporary, dir)
  await syncDirectory(parent)
  await rm(previous, { recursive: true, force: true })
  return manifest
}

async function readBounded(path: string, maxBytes: number, what: string): Promise<Uint8Array> {
  let size: number
  try {
    size = (await stat(path)).size
  } catch {
    throw new TrainerError('CHECKPOINT_MISSING', `checkpoint file ${path} is missing`)
  }
  if (size > maxBytes)
    throw new TrainerError(
      'CHECKPOINT_CORRUPT',
      `${what} ${path} is ${size} bytes, over the ${maxBytes}-byte limit`,
    )
  return new Uint8Array(await readFile(path))
}

function parseJson(bytes: Uint8Array, path: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (error) {
    throw new TrainerError('CHECKPOINT_CORRUPT', `${path} is not valid JSON`, { cause: error })
  }
}

function parseManifest(value: unknown, path: string): CheckpointManifest {
  const fail = (why: string) => new TrainerError('CHECKPOINT_CORRUPT', `${path}: ${why}`)
  if (typeof value !== 'object' || value === null || (value as { format?: unknown }).format !== FORMAT)
    throw fail(`not a ${FORMAT} manifest`)
  const files = (value as { files?: unknown }).files
  if (typeof files !== 'object' || files === null || Array.isArray(files))
    throw fail('files must be an object')
  const out: CheckpointManifest = { format: FORMAT, files: {} }
  const allowed = new Set<string>([
    TRAINING_CHECKPOINT_FILES.model,
    TRAINING_CHECKPOINT_FILES.config,
    TRAINING_CHECKPOINT_FILES.stateJson,
    TRAINING_CHECKPOINT_FILES.stateTensors,
  ])
  for (const [name, entry] of Object.entries(files)) {
    if (!allowed.has(name)) throw fail(`unexpected file ${JSON.stringify(name)}`)
    const { bytes, sha256 } = (entry ?? {}) as { bytes?: unknown; sha256?: unknown }
    if (
      !Number.isSafeInteger(bytes) ||
      (bytes as number) < 0 ||
      typeof sha256 !== 'string' ||
      !/^sha256:[0-9a-f]{64}$/.test(sha256)
    )
      throw fail(`bad entry for ${name}`)
    out.files[name] = { bytes: bytes as number, sha256 }
  }
  for (const required of [TRAINING_CHECKPOINT_FILES.model, TRAINING_CHECKPOINT_FILES.config])
    if (out.files[required] === undefined) throw fail(`does not list ${required}`)
  return out
}

function decodeTensors(
  bytes: Uint8Array,
  path: string,
): { tensors: NamedTensor[]; metadata: Record<string, string> } {
  let decoded
  try {
    decoded = decodeSafetensors(bytes, { maxBytes: TRAINING_CHECKPOINT_MAX_BYTES })
  } catch (error) {
    const code = errorCode(error) ?? 'ERROR'
    throw new TrainerError('CHECKPOINT_CORRUPT', `${path}: ${code}: ${(error as Error).message}`, {
      cause: error,
    })
  }
  const tensors: NamedTensor[] = []
  for (const entry of decoded.tensors.values()) {
    let data: Float32Array
    if (entry.dtype === 'F32') data = entry.data as Float32Array
    else if (entry.dtype === 'F16') data = float16ToFloat32Array(entry.data as Uint16Array)
    else
      throw new TrainerError(
        'CHECKPOINT_CORRUPT',
        `${path}: tensor ${entry.name} has dtype ${entry.dtype}; weights are F32 or F16`,
      )
    tensors.push({ name: entry.name, shape: [...entry.shape], data })
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return { tensors, metadata: decoded.metadata }
}

/** Reads a file listed in the manifest and checks its length and digest before anything decodes it. */
async function readVerified(dir: string, manifest: CheckpointManifest, name: string): Promise<Uint8Array> {
  const expected = manifest.files[name] as { bytes: number; sha256: string }
  const path = join(dir, name)
  const bytes = await readBounded(path, Math.min(TRAINING_CHECKPOINT_MAX_BYTES, expected.bytes), name)
  if (bytes.length !== expected.bytes)
    throw new TrainerError(
      'CHECKPOINT_CORRUPT',
      `${path} is ${bytes.length} bytes, the checkpoint manifest says ${expected.bytes} (truncated or replaced)`,
    )
  if (sha256Hex(bytes) !== expected.sha256)
    throw new TrainerError(
      'CHECKPOINT_CORRUPT',
      `${path} does not match its digest in ${TRAINING_CHECKPOINT_FILES.manifest}`,
    )
  return bytes
}

function parseStateJson(value: unknown, path: string): SessionStateJson {
  const s = value as Partial<SessionStateJson>
  const ok =
    typeof s === 'object' &&
    s !== null &&
    s.version === 1 &&
    (s.phase === 'autoencoder' || s.phase === 'unet') &&
    Number.isSafeInteger(s.step) &&
    Number.isSafeInteger(s.seed) &&
    Array.isArray(s.rng) &&
    s.rng.length === 4 &&
    s.rng.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) &&
    typeof s.sampler === 'object' &&
    s.sampler !== null &&
    Array.isArray(s.sampler.order) &&
    Number.isSafeInteger(s.sampler.cursor) &&
    Number.isSafeInteger(s.sampler.epoch) &&
    Number.isSafeInteger(s.samplesSeen) &&
    typeof s.datasetFingerprint === 'string' &&
    Array.isArray(s.excluded) &&
    s.excluded.every((e) => typeof e === 'string')
  if (!ok) throw new TrainerError('CHECKPOINT_CORRUPT', `${path} is not a valid training state`)
  return s as SessionStateJson
}

/** Loads and verifies a checkpoint directory (see the module comment). */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  let source = dir
  if (!(await exists(dir)) && (await exists(`${dir}.prev`))) source = `${dir}.prev`
  if (!(await exists(source))) throw new TrainerError('CHECKPOINT_MISSING', `no checkpoint at ${dir}`)
  const manifestPath = join(source, TRAINING_CHECKPOINT_FILES.manifest)
  const manifest = parseManifest(
    parseJson(await readBounded(manifestPath, CHECKPOINT_JSON_MAX_BYTES, 'manifest'), manifestPath),
    manifestPath,
  )
  const modelPath = join(source, TRAINING_CHECKPOINT_FILES.model)
  const { tensors: weights, metadata } = decodeTensors(
    await readVerified(source, manifest, TRAINING_CHECKPOINT_FILES.model),
    modelPath,
  )
  const configPath = join(source, TRAINING_CHECKPOINT_FILES.config)
  let config: CoopConfig
  try {
    config = validateConfig(
      parseJson(await readVerified(source, manifest, TRAINING_CHECKPOINT_FILES.config), configPath),
    )
  } catch (error) {
    if (error instanceof TrainerError) throw error
    throw new TrainerError('CHECKPOINT_CORRUPT', `${configPath}: ${(error as Error).message}`, {
      cause: error,
    })
  }
  let state: SessionState | undefined
  const hasStateJson = manifest.files[TRAINING_CHECKPOINT_FILES.stateJson] !== undefined
  const hasStateTensors = manifest.files[TRAINING_CHECKPOINT_FILES.stateTensors] !== undefined
  if (hasStateJson !== hasStateTensors)
    throw new TrainerError('CHECKPOINT_CORRUPT', `${manifestPath} lists only half of the training state`)
  if (hasStateJson) {
    const statePath = join(source, TRAINING_CHECKPOINT_FILES.stateJson)
    const json = parseStateJson(
      parseJson(await readVerified(source, manifest, TRAINING_CHECKPOINT_FILES.stateJson), statePath),
      statePath,
    )
    const tensorsPath = join(source, TRAINING_CHECKPOINT_FILES.stateTensors)
    const { tensors } = decodeTensors(
      await readVerified(source, manifest, TRAINING_CHECKPOINT_FILES.stateTensors),
      tensorsPath,
    )
    state = { json, tensors }
  }
  return { weights, config, metadata, manifest, dir: source, ...(state === undefined ? {} : { state }) }
}
