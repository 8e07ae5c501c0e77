// Files a running node keeps next to its database, in one place so that `coop start`, the
// read-only commands (`status`, `trace`, `checkpoint verify`) and the demo agree on paths.
//
//   <store>/addrs.json                     { peerId, addrs, pid, startedAt }, written once listening
//   <store>/charter.json                   the charter the node runs (copied at start)
//   <store>/inbox/                         drop a manifest or revocation JSON here to publish it
//   <store>/snapshots/status.json          status snapshot (see node/store/store.ts writeSnapshot)
//   <store>/checkpoints/latest.json        { autoencoder?: CheckpointPointer, unet?: CheckpointPointer }
//   <store>/checkpoints/<phase>-r<NNNNNN>/ one adopted checkpoint:
//       model.safetensors     weights (F32, sorted names)
//       momentum.safetensors  outer Nesterov momentum (F32), needed to recompute the next round
//       config.json           { coop, phase, round, model, autoencoder? } canonical JSON
//       provenance.json       the signed CheckpointProvenance (DSSE envelope)
//       charter.json          the charter, so the directory verifies on its own
//       exclusions.json       the exclusion details the provenance summarises (only when it names some)
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { CHECKPOINT_MODEL_FILE, CHECKPOINT_MOMENTUM_FILE } from '../../protocol/constants.ts'
import { removeTempEntries, writeDirDurable, writeFileDurable } from '../store/durable.ts'
import type { Phase } from './schedule.ts'
import { errorCode } from '../../protocol/coded-error.ts'

export const CHECKPOINT_FILES = {
  model: CHECKPOINT_MODEL_FILE,
  momentum: CHECKPOINT_MOMENTUM_FILE,
  config: 'config.json',
  provenance: 'provenance.json',
  charter: 'charter.json',
  exclusions: 'exclusions.json',
} as const

export interface CheckpointPointer {
  id: string
  round: number
  dir: string
}

export interface AddrsFile {
  peerId: string
  addrs: string[]
  pid: number
  startedAt: string
}

export function addrsPath(storeDir: string): string {
  return join(storeDir, 'addrs.json')
}

export function charterPath(storeDir: string): string {
  return join(storeDir, 'charter.json')
}

export function inboxDir(storeDir: string): string {
  return join(storeDir, 'inbox')
}

export function checkpointsRoot(storeDir: string): string {
  return join(storeDir, 'checkpoints')
}

export function checkpointDirName(phase: Phase, round: number): string {
  return `${phase}-r${round.toString().padStart(6, '0')}`
}

export function checkpointDir(storeDir: string, phase: Phase, round: number): string {
  return join(checkpointsRoot(storeDir), checkpointDirName(phase, round))
}

export async function writeAddrs(storeDir: string, value: AddrsFile): Promise<void> {
  await writeFileDurable(addrsPath(storeDir), `${JSON.stringify(value, null, 2)}\n`)
}

export async function readAddrs(storeDir: string): Promise<AddrsFile | undefined> {
  try {
    return JSON.parse(await readFile(addrsPath(storeDir), 'utf8')) as AddrsFile
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined
    throw err
  }
}

/**
 * Writes a checkpoint directory so that it appears complete or not at all: files go into a
 * temp directory which is renamed into place. An existing directory for the same checkpoint
 * id is kept (a restart that re-adopts writes the same bytes).
 */
export async function writeCheckpointDir(
  storeDir: string,
  phase: Phase,
  round: number,
  files: Record<string, Uint8Array | string>,
): Promise<string> {
  const final = checkpointDir(storeDir, phase, round)
  await writeDirDurable(final, files)
  return final
}

/** Drops temp directories a crash left behind (they were never referenced). */
export async function cleanCheckpointTemps(storeDir: string): Promise<void> {
  await removeTempEntries(checkpointsRoot(storeDir))
}

export async function writeLatestPointers(
  storeDir: string,
  pointers: Partial<Record<Phase, CheckpointPointer>>,
): Promise<void> {
  await writeFileDurable(
    join(checkpointsRoot(storeDir), 'latest.json'),
    `${JSON.stringify(pointers, null, 2)}\n`,
  )
}

/** Every checkpoint directory under a store, in name order (phase, then round). */
export async function listCheckpointDirs(storeDir: string): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(checkpointsRoot(storeDir))
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return []
    throw err
  }
  return names
    .filter((n) => /^(autoencoder|unet)-r\d{6}$/.test(n))
    .sort()
    .map((n) => join(checkpointsRoot(storeDir), n))
}
