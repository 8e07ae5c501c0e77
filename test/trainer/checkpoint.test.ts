// Checkpoint directories: bit-identical save/load, a model.safetensors that an independent
// minimal reader (written here, not the codec) parses to the same names, shapes and values,
// truncated files refused, and a crash mid-save leaving the previous checkpoint loadable.
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  truncateSync,
  writeFileSync,
  existsSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { loadCheckpoint, saveCheckpoint } from '../../trainer/checkpoint.ts'
import type { CheckpointContents } from '../../trainer/checkpoint.ts'
import { TrainerError } from '../../trainer/errors.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'

const config = smallConfig()
let contents: CheckpointContents
let root: string

beforeAll(async () => {
  await initBackend('auto')
  root = mkdtempSync(join(tmpdir(), 'coop-ckpt-'))
  const { dataset } = await twemojiDataset(1, 16, ['flags', 'symbols'])
  const session = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 9 })
  await session.trainSteps(2)
  contents = {
    weights: await session.getEmaWeights(),
    config,
    state: await session.exportState(),
    metadata: { phase: 'autoencoder' },
  }
  session.dispose()
})

function bytesOf(t: NamedTensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
}

/** An independent safetensors reader: u64 LE header length, JSON header, little-endian F32 data. */
function readSafetensorsByHand(file: Buffer): Map<string, { shape: number[]; values: number[] }> {
  const headerLength = Number(file.readBigUInt64LE(0))
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >
  const dataStart = 8 + headerLength
  const out = new Map<string, { shape: number[]; values: number[] }>()
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue
    expect(entry.dtype).toBe('F32')
    const [begin, end] = entry.data_offsets
    expect(end - begin).toBe(4 * entry.shape.reduce((a, b) => a * b, 1))
    const values: number[] = []
    for (let offset = dataStart + begin; offset < dataStart + end; offset += 4)
      values.push(file.readFloatLE(offset))
    out.set(name, { shape: entry.shape, values })
  }
  return out
}

describe('checkpoints', () => {
  it('save then load gives bit-identical weights, config and training state', async () => {
    const dir = join(root, 'roundtrip')
    const manifest = await saveCheckpoint(dir, contents)
    const loaded = await loadCheckpoint(dir)
    expect(loaded.weights.map((w) => w.name)).toEqual(contents.weights.map((w) => w.name))
    loaded.weights.forEach((w, i) => {
      expect(w.shape).toEqual(contents.weights[i]?.shape)
      expect(bytesOf(w).equals(bytesOf(contents.weights[i] as NamedTensor))).toBe(true)
    })
    expect(loaded.config).toEqual(config)
    expect(loaded.state?.json).toEqual(contents.state?.json)
    expect(loaded.state?.tensors.length).toBe(contents.state?.tensors.length)
    const byName = new Map(loaded.state?.tensors.map((t) => [t.name, t]))
    for (const t of contents.state?.tensors ?? [])
      expect(bytesOf(byName.get(t.name) as NamedTensor).equals(bytesOf(t))).toBe(true)
    expect(loaded.metadata.phase).toBe('autoencoder')
    expect(Object.keys(manifest.files).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'state.json',
      'state.safetensors',
    ])
  })

  it('model.safetensors parses with a minimal independent reader to the same names, shapes and values', async () => {
    const dir = join(root, 'reader')
    await saveCheckpoint(dir, contents)
    const parsed = readSafetensorsByHand(readFileSync(join(dir, 'model.safetensors')))
    expect([...parsed.keys()].sort()).toEqual(contents.weights.map((w) => w.name))
    for (const w of contents.weights) {
      const entry = parsed.get(w.name) as { shape: number[]; values: number[] }
      expect(entry.shape).toEqual(w.shape)
      expect(entry.values).toEqual(Array.from(w.data))
    }
  })

  it('a truncated tensor file is a clear CHECKPOINT_CORRUPT error, even when the manifest was rewritten to match', async () => {
    const dir = join(root, 'truncated')
    await saveCheckpoint(dir, contents)
    const model = join(dir, 'model.safetensors')
    const size = readFileSync(model).length
    truncateSync(model, size - 100)
    await expect(loadCheckpoint(dir)).rejects.toMatchObject({
      code: 'CHECKPOINT_CORRUPT',
      message: expect.stringMatching(/truncated/),
    })
    // Same truncated bytes, with a manifest that agrees with them: the decoder still refuses.
    const manifestPath = join(dir, 'checkpoint.json')
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
    const { createHash } = await import('node:crypto')
    const truncated = readFileSync(model)
    manifest.files['model.safetensors'] = {
      bytes: truncated.length,
      sha256: `sha256:${createHash('sha256').update(truncated).digest('hex')}`,
    }
    writeFileSync(manifestPath, JSON.stringify(manifest))
    const error = await loadCheckpoint(dir).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TrainerError)
    expect((error as TrainerError).code).toBe('CHECKPOINT_CORRUPT')
    expect((error as TrainerError).message).toMatch(/TRUNCATED/)
  })

  it('a truncated state file or a missing checkpoint are typed errors', async () => {
    const dir = join(root, 'truncated-state')
    await saveCheckpoint(dir, contents)
    truncateSync(join(dir, 'state.safetensors'), 10)
    await expect(loadCheckpoint(dir)).rejects.toMatchObject({ code: 'CHECKPOINT_CORRUPT' })
    await expect(loadCheckpoint(join(root, 'nothing-here'))).rejects.toMatchObject({
      code: 'CHECKPOINT_MISSING',
    })
  })

  it('a crash mid-save leaves the previous checkpoint loadable', async () => {
    const dir = join(root, 'crash')
    await saveCheckpoint(dir, contents)
    // Crash while writing the new files: a half-written temporary folder beside the checkpoint.
    const temporary = join(root, '.crash.tmp')
    mkdirSync(temporary, { recursive: true })
    writeFileSync(join(temporary, 'model.safetensors'), Buffer.alloc(10))
    expect((await loadCheckpoint(dir)).weights[0]?.data).toEqual(contents.weights[0]?.data)
    // Crash between the two renames: the old folder moved aside, the new one not yet in place.
    renameSync(dir, `${dir}.prev`)
    const recovered = await loadCheckpoint(dir)
    expect(recovered.dir).toBe(`${dir}.prev`)
    expect(
      bytesOf(recovered.weights[0] as NamedTensor).equals(bytesOf(contents.weights[0] as NamedTensor)),
    ).toBe(true)
    // The next save completes and cleans up both leftovers.
    const changed = {
      ...contents,
      weights: contents.weights.map((w) => ({ ...w, data: w.data.map((v) => v + 1) })),
    }
    await saveCheckpoint(dir, changed)
    expect((await loadCheckpoint(dir)).weights[0]?.data).toEqual(changed.weights[0]?.data)
    expect(existsSync(`${dir}.prev`)).toBe(false)
    expect(existsSync(temporary)).toBe(false)
  })
})
