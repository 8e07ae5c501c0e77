// The run manifest (demo-run.json) ties an output folder to one set of demo parameters, so that
// running `coop demo` again with the same --out resumes that run and never silently mixes two.
import { writeFileDurable } from '../store/durable.ts'
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DemoError } from './errors.ts'
import { RUN_MANIFEST_FILE, RUN_LOCK_FILE, RUN_MANIFEST_MAX_BYTES } from './constants.ts'
import { errorCode } from '../../protocol/coded-error.ts'

/** The parameters that define a run's results: any difference means a different run. */
export interface DemoParams {
  config: string
  configOverrides: Record<string, unknown>
  peers: number
  autoencoderRounds: number
  unetRounds: number
  innerSteps: number
  imagesPerCategory: number
  /** Twemoji category slugs laid out (sorted); empty means all of them. */
  categories: string[]
}

export type RunState = 'running' | 'interrupted' | 'failed' | 'complete'

export interface RunAttempt {
  startedAt: string
  endedAt?: string
  outcome?: Exclude<RunState, 'running'>
  /** Backend is recorded per attempt but is not a run parameter: resuming on another backend is legitimate. */
  backend: string
  detail?: string
}

export interface RunManifest {
  kind: 'diffusion-coop/demo-run'
  version: 1
  params: DemoParams
  createdAt: string
  state: RunState
  attempts: RunAttempt[]
}

export type OpenRunResult = { mode: 'fresh' | 'resume' | 'complete'; manifest: RunManifest }

const PARAM_KEYS: (keyof DemoParams)[] = [
  'config',
  'configOverrides',
  'peers',
  'autoencoderRounds',
  'unetRounds',
  'innerSteps',
  'imagesPerCategory',
  'categories',
]

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** Names of the parameters that differ, with both values, in a fixed order. */
export function diffParams(
  recorded: DemoParams,
  requested: DemoParams,
): { key: string; recorded: string; requested: string }[] {
  const out: { key: string; recorded: string; requested: string }[] = []
  for (const key of PARAM_KEYS) {
    const a = stableJson(recorded[key])
    const b = stableJson(requested[key])
    if (a !== b) out.push({ key, recorded: a, requested: b })
  }
  return out
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function parseParams(v: unknown): DemoParams {
  if (!isRecord(v)) throw new Error('params is not an object')
  const intKeys = ['peers', 'autoencoderRounds', 'unetRounds', 'innerSteps', 'imagesPerCategory'] as const
  for (const k of intKeys) {
    if (!Number.isSafeInteger(v[k]) || (v[k] as number) < 0)
      throw new Error(`params.${k} is not a non-negative integer`)
  }
  if (typeof v.config !== 'string' || v.config.length === 0) throw new Error('params.config is not a name')
  if (!isRecord(v.configOverrides)) throw new Error('params.configOverrides is not an object')
  if (!Array.isArray(v.categories) || !v.categories.every((c) => typeof c === 'string' && c.length > 0))
    throw new Error('params.categories is not a list of names')
  const extra = Object.keys(v).filter((k) => !(PARAM_KEYS as string[]).includes(k))
  if (extra.length > 0) throw new Error(`params has unknown keys: ${extra.join(', ')}`)
  return v as unknown as DemoParams
}

const STATES: RunState[] = ['running', 'interrupted', 'failed', 'complete']

/** Validates a parsed demo-run.json; throws RUN_MANIFEST_INVALID naming the first problem. */
export function parseRunManifest(json: unknown, path: string): RunManifest {
  try {
    if (!isRecord(json)) throw new Error('not a JSON object')
    if (json.kind !== 'diffusion-coop/demo-run') throw new Error(`kind is ${JSON.stringify(json.kind)}`)
    if (json.version !== 1) throw new Error(`unsupported version ${JSON.stringify(json.version)}`)
    if (typeof json.createdAt !== 'string') throw new Error('createdAt is missing')
    if (!STATES.includes(json.state as RunState)) throw new Error(`state is ${JSON.stringify(json.state)}`)
    if (!Array.isArray(json.attempts)) throw new Error('attempts is not a list')
    return { ...(json as unknown as RunManifest), params: parseParams(json.params) }
  } catch (error) {
    throw new DemoError('RUN_MANIFEST_INVALID', `${path}: ${(error as Error).message}`, { cause: error })
  }
}

export async function readRunManifest(outDir: string): Promise<RunManifest | undefined> {
  const path = join(outDir, RUN_MANIFEST_FILE)
  let text: string
  try {
    const handle = await open(path, 'r')
    try {
      const { size } = await handle.stat()
      if (size > RUN_MANIFEST_MAX_BYTES) {
        throw new DemoError(
          'RUN_MANIFEST_INVALID',
          `${path}: ${size} bytes, more than ${RUN_MANIFEST_MAX_BYTES}`,
        )
      }
      text = await handle.readFile('utf8')
    } finally {
      await handle.close()
    }
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined
    throw error
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw new DemoError('RUN_MANIFEST_INVALID', `${path}: not JSON (${(error as Error).message})`, {
      cause: error,
    })
  }
  return parseRunManifest(json, path)
}

/** Atomic write: a crash leaves the old or the new manifest, never half of one. */
export async function writeRunManifest(outDir: string, manifest: RunManifest): Promise<void> {
  const path = join(outDir, RUN_MANIFEST_FILE)
  await writeFileDurable(path, `${JSON.stringify(manifest, null, 2)}\n`)
}

function flagFor(key: string): string {
  const flags: Record<string, string> = {
    config: '--smoke / --config',
    peers: '--peers',
    unetRounds: '--rounds',
    autoencoderRounds: '--ae-rounds',
    innerSteps: '--inner-steps',
    imagesPerCategory: '--images-per-category',
    categories: '--categories',
    configOverrides: '--smoke / --set',
  }
  return flags[key] ?? key
}

/**
 * Decides what to do with --out: a new run in a missing or empty folder, a resume when the
 * recorded parameters equal the requested ones, and a clear refusal otherwise.
 */
export async function openRun(
  outDir: string,
  params: DemoParams,
  backend: string,
  now = new Date(),
): Promise<OpenRunResult> {
  let entries: string[] = []
  try {
    // The lock is taken before this check, so it does not count as foreign content.
    entries = (await readdir(outDir)).filter((name) => name !== RUN_LOCK_FILE)
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error
  }
  const existing = await readRunManifest(outDir)
  if (existing === undefined) {
    if (entries.length > 0) {
      throw new DemoError(
        'OUT_NOT_A_DEMO',
        `${outDir} is not empty and has no ${RUN_MANIFEST_FILE}: it was not written by coop demo. Choose another --out.`,
      )
    }
    await mkdir(outDir, { recursive: true })
    const manifest: RunManifest = {
      kind: 'diffusion-coop/demo-run',
      version: 1,
      params,
      createdAt: now.toISOString(),
      state: 'running',
      attempts: [{ startedAt: now.toISOString(), backend }],
    }
    await writeRunManifest(outDir, manifest)
    return { mode: 'fresh', manifest }
  }
  const differences = diffParams(existing.params, params)
  if (differences.length > 0) {
    const lines = differences.map(
      (d) => `  ${d.key} (${flagFor(d.key)}): recorded ${d.recorded}, requested ${d.requested}`,
    )
    throw new DemoError(
      'PARAMS_MISMATCH',
      `${outDir} holds a run made with other parameters; refusing to mix two runs.\n${lines.join('\n')}\n` +
        'Run again with the recorded parameters to resume it, or choose another --out.',
    )
  }
  if (existing.state === 'complete') return { mode: 'complete', manifest: existing }
  const manifest: RunManifest = {
    ...existing,
    state: 'running',
    attempts: [...existing.attempts, { startedAt: now.toISOString(), backend }],
  }
  await writeRunManifest(outDir, manifest)
  return { mode: 'resume', manifest }
}

/** Records how the latest attempt ended. */
export async function finishAttempt(
  outDir: string,
  manifest: RunManifest,
  outcome: Exclude<RunState, 'running'>,
  detail?: string,
  now = new Date(),
): Promise<RunManifest> {
  const attempts = manifest.attempts.slice()
  const last = attempts.at(-1)
  if (last !== undefined)
    attempts[attempts.length - 1] = {
      ...last,
      endedAt: now.toISOString(),
      outcome,
      ...(detail ? { detail } : {}),
    }
  const next: RunManifest = { ...manifest, state: outcome, attempts }
  await writeRunManifest(outDir, next)
  return next
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return errorCode(error) === 'EPERM'
  }
}

/**
 * Takes the out-dir lock (a file holding our pid). A lock left by a dead process is taken over;
 * one held by a live process is a refusal, since two demos in one folder would mix runs.
 */
export async function acquireRunLock(outDir: string): Promise<() => Promise<void>> {
  await mkdir(outDir, { recursive: true })
  const path = join(outDir, RUN_LOCK_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' })
      return async () => {
        await rm(path, { force: true })
      }
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
      if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && pidAlive(holder)) {
        throw new DemoError('OUT_IN_USE', `${outDir} is in use by another coop demo (pid ${holder}).`)
      }
      await rm(path, { force: true })
    }
  }
  throw new DemoError('OUT_IN_USE', `${outDir}: could not take the lock ${RUN_LOCK_FILE}.`)
}
