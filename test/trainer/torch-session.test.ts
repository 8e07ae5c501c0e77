// The torch backend's TrainerSession as the node uses it, with a real worker process: determinism given
// the seed, weights in and out, excluded items never reaching a batch (a non-finite loss applies nothing,
// as on tfjs), bit-exact resume and resume across backends, and a worker that dies or hangs becoming a
// clear error, never a hang. The Python side's own unit tests run here too, so `npm test` covers them.
import { execFile } from 'node:child_process'
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import { createTorchSession } from '../../trainer/torch/session.ts'
import type { TorchRuntime } from '../../trainer/torch/probe.ts'
import { TorchWorker } from '../../trainer/torch/worker-process.ts'
import type { NamedTensor } from '../../trainer/types.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'
import { TORCH_TEST_TIMEOUT_MS, torchRuntime } from './torch-helpers.ts'

const execFileAsync = promisify(execFile)
const config = smallConfig()
let dataset: ImageDataset
let runtime: TorchRuntime
/** The Python unit tests run in their own process beside the session tests; the last describe checks them. */
let unitTests: Promise<{ stderr: string }>

beforeAll(async () => {
  await initBackend('wasm')
  runtime = await torchRuntime()
  unitTests = execFileAsync(runtime.python, ['-B', '-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], {
    cwd: join(import.meta.dirname, '../../trainer/torch'),
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  })
  // Held until its test awaits it (a failure is reported there, not as an unhandled rejection).
  unitTests.catch(() => undefined)
  dataset = (await twemojiDataset(2, 16, ['flags', 'food-drink', 'objects', 'symbols'])).dataset
  // The U-Net tests' autoencoder trains in its own worker meanwhile (a failure surfaces where it is awaited).
  aeWeights().catch(() => undefined)
}, TORCH_TEST_TIMEOUT_MS)

function bytesEqual(a: NamedTensor[], b: NamedTensor[]): boolean {
  return (
    a.length === b.length &&
    a.every((t, i) => {
      const other = b[i] as NamedTensor
      return (
        t.name === other.name &&
        Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(
          Buffer.from(other.data.buffer, other.data.byteOffset, other.data.byteLength),
        )
      )
    })
  )
}

function maxRelative(a: NamedTensor[], b: NamedTensor[]): number {
  let diff = 0
  let norm = 0
  a.forEach((t, i) =>
    t.data.forEach((v, j) => {
      const w = (b[i] as NamedTensor).data[j] as number
      diff += (v - w) ** 2
      norm += w * w
    }),
  )
  return Math.sqrt(diff / norm)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function exited(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100))
  return !alive(pid)
}

describe('torch TrainerSession', { timeout: TORCH_TEST_TIMEOUT_MS }, () => {
  it('same seed -> bit-identical losses and weights; another seed -> different ones; reports its device', async () => {
    const run = async (seed: number) => {
      const session = await createTorchSession({ config, phase: 'autoencoder', dataset, seed }, runtime)
      expect(session.worker.hello.device).toBe('cpu')
      const losses: number[] = []
      await session.trainSteps(4, (s) => losses.push(s.loss))
      const weights = await session.getWeights()
      session.dispose()
      return { losses, weights }
    }
    // Three independent workers, side by side.
    const [a, b, c] = await Promise.all([run(7), run(7), run(8)])
    expect(b.losses).toEqual(a.losses)
    expect(bytesEqual(a.weights, b.weights)).toBe(true)
    expect(bytesEqual(a.weights, c.weights)).toBe(false)
  })

  it('weights in and out: sorted copies in tfjs layout; mismatched tensors are WEIGHTS_MISMATCH', async () => {
    const session = await createTorchSession({ config, phase: 'autoencoder', dataset, seed: 1 }, runtime)
    const tfjs = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 2 })
    try {
      const weights = await session.getWeights()
      expect(weights.map((w) => w.name)).toEqual([...weights.map((w) => w.name)].sort())
      expect(weights.find((w) => w.name === 'encoder.conv_in.weight')?.shape).toEqual([3, 3, 3, 8])
      await session.setWeights(await tfjs.getWeights())
      expect(bytesEqual(await session.getWeights(), await tfjs.getWeights())).toBe(true)
      // Until a step, the EMA is what it was: setWeights leaves optimizer state and EMA alone.
      expect(bytesEqual(await session.getEmaWeights(), weights)).toBe(true)
      await expect(session.setWeights(weights.slice(1))).rejects.toMatchObject({ code: 'WEIGHTS_MISMATCH' })
      const wrongShape = weights.map((w) => (w.shape.length === 4 ? { ...w, shape: [w.data.length] } : w))
      await expect(session.setWeights(wrongShape)).rejects.toThrow(/shape/)
    } finally {
      session.dispose()
      tfjs.dispose()
    }
  })

  it('evalLoss is fixed: same weights -> same value, whatever the training stream did', async () => {
    const session = await createTorchSession(
      { config, phase: 'unet', dataset, seed: 3, autoencoder: await aeWeights() },
      runtime,
    )
    try {
      const start = await session.getWeights()
      const before = await session.evalLoss()
      expect(await session.evalLoss()).toBe(before)
      await session.trainSteps(2)
      expect(await session.evalLoss()).not.toBe(before)
      await session.setWeights(start)
      expect(await session.evalLoss()).toBe(before)
    } finally {
      session.dispose()
    }
  })

  it('excluded items never reach a batch; a NaN batch throws NON_FINITE_LOSS where tfjs does, applying nothing', async () => {
    const poisoned = structuredClone(dataset)
    poisoned.pixels.fill(Number.NaN, 0, 16 * 16 * 3)
    const victim = (poisoned.items[0] as { sha256: string }).sha256
    const autoencoder = await aeWeights()
    for (const phase of ['autoencoder', 'unet'] as const) {
      const options = { config, phase, dataset: poisoned, seed: 5, autoencoder }
      // Two independent workers, started and trained side by side.
      const [clean, torch] = await Promise.all([
        createTorchSession(options, runtime),
        createTorchSession(options, runtime),
      ])
      clean.excludeItems([victim])
      const [, failure] = await Promise.all([
        clean.trainSteps(12), // 48 draws over 7 eligible images: every one is drawn
        torch.trainSteps(12).catch((error: unknown) => error),
      ])
      expect(Number.isFinite(await clean.evalLoss())).toBe(true)
      clean.dispose()
      const tfjs = await createTrainerSession(options)
      await expect(tfjs.trainSteps(12)).rejects.toMatchObject({ code: 'NON_FINITE_LOSS' })
      expect(failure).toMatchObject({ code: 'NON_FINITE_LOSS' })
      // The failing step applied nothing and the draws stand where tfjs's do: continuing without the
      // victim, both sessions keep training the same batches.
      expect(torch.step()).toBe(tfjs.step())
      expect(torch.samplesSeen()).toBe(tfjs.samplesSeen())
      expect(maxRelative(await torch.getWeights(), await tfjs.getWeights())).toBeLessThan(1e-5)
      torch.excludeItems([victim])
      tfjs.excludeItems([victim])
      const a: number[] = []
      const b: number[] = []
      await torch.trainSteps(2, (s) => a.push(s.loss))
      await tfjs.trainSteps(2, (s) => b.push(s.loss))
      a.forEach((loss, i) => expect(Math.abs(loss / (b[i] as number) - 1)).toBeLessThan(1e-4))
      torch.dispose()
      tfjs.dispose()
    }
  })

  it('exportState/importState resume bit-exactly, and a tfjs state resumes on torch (and back)', async () => {
    // Bit-exact resume on the autoencoder (its latent-RMS buffer travels in the state too).
    const options = { config, phase: 'autoencoder' as const, dataset, seed: 4 }
    const unet = { config, phase: 'unet' as const, dataset, seed: 4, autoencoder: await aeWeights() }
    // Four independent workers, started side by side (each is used as it was when started alone).
    const [straight, first, resumed, onTorch] = await Promise.all([
      createTorchSession(options, runtime),
      createTorchSession(options, runtime),
      createTorchSession(options, runtime),
      createTorchSession(unet, runtime),
    ])
    await Promise.all([straight.trainSteps(6), first.trainSteps(3)])
    const state = await first.exportState()
    first.dispose()
    await resumed.importState(state)
    expect(resumed.step()).toBe(3)
    await resumed.trainSteps(3)
    expect(bytesEqual(await resumed.getWeights(), await straight.getWeights())).toBe(true)
    expect(bytesEqual(await resumed.getEmaWeights(), await straight.getEmaWeights())).toBe(true)
    expect(resumed.samplesSeen()).toBe(straight.samplesSeen())
    const broken = { ...state, tensors: state.tensors.filter((t) => !t.name.startsWith('adam_v/')) }
    await expect(resumed.importState(broken)).rejects.toMatchObject({ code: 'CHECKPOINT_CORRUPT' })
    straight.dispose()
    resumed.dispose()
    // Across backends on the U-Net: tfjs trains 3 steps, torch continues 3, as close to tfjs's own 6 as
    // float rounding allows; and torch's state resumes on tfjs.
    const tfjs = await createTrainerSession(unet)
    await tfjs.trainSteps(3)
    await onTorch.importState(await tfjs.exportState())
    await onTorch.trainSteps(3)
    await tfjs.trainSteps(3)
    expect(maxRelative(await onTorch.getWeights(), await tfjs.getWeights())).toBeLessThan(1e-5)
    const backOnTfjs = await createTrainerSession(unet)
    await backOnTfjs.importState(await onTorch.exportState())
    expect(backOnTfjs.step()).toBe(6)
    expect(backOnTfjs.samplesSeen()).toBe(tfjs.samplesSeen())
    expect(bytesEqual(await backOnTfjs.getEmaWeights(), await onTorch.getEmaWeights())).toBe(true)
    for (const s of [tfjs, onTorch, backOnTfjs]) s.dispose()
  })

  it('a worker killed mid-session is WORKER_FAILED naming the signal; dispose() ends the process', async () => {
    const [session, other] = await Promise.all([
      createTorchSession({ config, phase: 'autoencoder', dataset, seed: 1 }, runtime),
      createTorchSession({ config, phase: 'autoencoder', dataset, seed: 1 }, runtime),
    ])
    const pid = session.worker.pid as number
    await session.trainSteps(1)
    process.kill(pid, 'SIGKILL')
    await expect(session.trainSteps(1)).rejects.toMatchObject({ code: 'WORKER_FAILED', message: /SIGKILL/ })
    await expect(session.getWeights()).rejects.toMatchObject({ code: 'WORKER_FAILED' })
    session.dispose()
    const otherPid = other.worker.pid as number
    other.dispose()
    expect(await exited(otherPid)).toBe(true)
    await expect(other.trainSteps(1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
  })

  it('a worker that stops answering is WORKER_FAILED at the deadline and is killed, not waited for', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coop-fake-python-'))
    const silent = join(dir, 'silent.py')
    // Says hello like the real worker, then reads requests and never answers.
    writeFileSync(silent, fakeWorker(1, 'while sys.stdin.buffer.read(1): pass'))
    const worker = await TorchWorker.start({
      python: pythonRunning(dir, silent),
      device: 'cpu',
      threads: 1,
      requestTimeoutMs: 300,
    })
    const pid = worker.pid as number
    await expect(worker.request('flush')).rejects.toMatchObject({
      code: 'WORKER_FAILED',
      message: /no answer to 'flush'/,
    })
    expect(await exited(pid)).toBe(true)
    await expect(worker.request('flush')).rejects.toMatchObject({ code: 'WORKER_FAILED' })
  })

  it("a worker that fails at start-up or speaks another protocol is WORKER_FAILED with its stderr's end", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coop-fake-python-'))
    const crashing = join(dir, 'crashing')
    writeFileSync(
      crashing,
      "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho 'ImportError: libcudart.so.12: cannot open' >&2\nexit 3\n",
    )
    chmodSync(crashing, 0o755)
    await expect(TorchWorker.start({ python: crashing, device: 'auto', threads: 1 })).rejects.toMatchObject({
      code: 'WORKER_FAILED',
      message: /exited with code 3[\s\S]*ImportError: libcudart/,
    })
    // A python that answers with a hello of protocol 99.
    const other = join(dir, 'other-protocol.py')
    writeFileSync(other, fakeWorker(99, 'sys.stdin.read()'))
    const wrapper = pythonRunning(dir, other)
    await expect(TorchWorker.start({ python: wrapper, device: 'auto', threads: 1 })).rejects.toMatchObject({
      code: 'WORKER_FAILED',
      message: /protocol 99/,
    })
  })
})

describe('torch backend: the Python side', { timeout: TORCH_TEST_TIMEOUT_MS }, () => {
  it('its unit tests pass (framing, layouts, Adam/EMA formulas, the non-finite guard, the worker protocol)', async () => {
    const { stderr } = await unitTests
    const ran = /Ran (\d+) tests?/.exec(stderr)
    expect(Number(ran?.[1])).toBeGreaterThanOrEqual(16)
    expect(stderr).toMatch(/\nOK/)
  })
})

/** A Python script that sends the worker's hello frame with `protocol`, then runs `then`. */
function fakeWorker(protocol: number, then: string): string {
  return [
    'import json, struct, sys',
    `head = json.dumps({"type": "hello", "protocol": ${protocol}, "device": "cpu", "tensors": []}).encode()`,
    'head += b" " * ((-(4 + len(head))) % 8)',
    'sys.stdout.buffer.write(struct.pack("<II", 4 + len(head), len(head)) + head)',
    'sys.stdout.buffer.flush()',
    then,
  ].join('\n')
}

/** An executable that runs `script` with the test's python (TorchWorker passes the real worker's arguments). */
function pythonRunning(dir: string, script: string): string {
  const path = join(dir, `python-${Math.random().toString(36).slice(2)}`)
  writeFileSync(path, `#!/bin/sh\nexec ${runtime.python} ${script}\n`)
  chmodSync(path, 0o755)
  return path
}

let trainedAutoencoder: Promise<NamedTensor[]> | undefined
function aeWeights(): Promise<NamedTensor[]> {
  trainedAutoencoder ??= (async () => {
    const ae = await createTorchSession({ config, phase: 'autoencoder', dataset, seed: 11 }, runtime)
    await ae.trainSteps(3)
    const weights = await ae.getEmaWeights()
    ae.dispose()
    return weights
  })()
  return trainedAutoencoder
}
