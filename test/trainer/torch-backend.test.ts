// Selecting the torch backend: `--backend torch` finds a python3 with torch and says which, where and why
// in the one selection log line; sessions created afterwards train in the worker; `auto` takes torch
// only with CUDA; where torch is missing, the error says exactly what to install.
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import * as tf from '@tensorflow/tfjs-core'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { initBackend } from '../../trainer/backend.ts'
import { NVIDIA_GPU_PROC_DIR } from '../../trainer/kernels/constants.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import { smallConfig, twemojiDataset } from './helpers.ts'
import { TORCH_TEST_TIMEOUT_MS } from './torch-helpers.ts'

function capturingLogger() {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      done()
    },
  })
  return { log: pino({ level: 'info' }, stream), lines }
}

const saved = {
  python: process.env.COOP_PYTHON,
  device: process.env.COOP_TORCH_DEVICE,
  threads: process.env.COOP_TORCH_THREADS,
}
afterEach(() => {
  for (const [key, value] of [
    ['COOP_PYTHON', saved.python],
    ['COOP_TORCH_DEVICE', saved.device],
    ['COOP_TORCH_THREADS', saved.threads],
  ] as const)
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
})

describe('initBackend: torch', { timeout: TORCH_TEST_TIMEOUT_MS }, () => {
  it('explicit torch: one log line with python, torch, device and the tfjs helper; sessions train in a worker', async () => {
    process.env.COOP_TORCH_DEVICE = 'cpu'
    process.env.COOP_TORCH_THREADS = '1'
    const { log, lines } = capturingLogger()
    const choice = await initBackend('torch', log)
    expect(choice).toMatchObject({ name: 'torch', candidate: 'torch', skipped: [], tfjs: tf.getBackend() })
    expect(choice.torch).toMatchObject({ device: 'cpu', threads: 1 })
    await new Promise((resolve) => setTimeout(resolve, 10))
    const selected = lines.filter((line) => line.msg === 'training backend selected')
    expect(selected).toHaveLength(1)
    expect(selected[0]).toMatchObject({
      backend: 'torch',
      requested: 'torch',
      device: 'cpu (1 threads)',
      python: choice.torch?.python,
      torch: choice.torch?.torch,
      tfjs: choice.tfjs,
    })
    const config = smallConfig()
    const { dataset } = await twemojiDataset(1, 16, ['flags', 'symbols'])
    const session = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 1 })
    expect('worker' in session).toBe(true)
    await session.trainSteps(1)
    expect(session.step()).toBe(1)
    session.dispose()
    await initBackend('wasm')
    const tfjsSession = await createTrainerSession({ config, phase: 'autoencoder', dataset, seed: 1 })
    expect('worker' in tfjsSession).toBe(false)
    tfjsSession.dispose()
  })

  it('torch missing: BACKEND_UNAVAILABLE naming the python tried and what to install', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coop-no-torch-'))
    const python = join(dir, 'python3')
    writeFileSync(
      python,
      "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n",
    )
    chmodSync(python, 0o755)
    process.env.COOP_PYTHON = python
    const attempt = initBackend('torch')
    await expect(attempt).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' })
    await expect(attempt).rejects.toThrow(
      new RegExp(`${python}: ModuleNotFoundError: No module named 'torch'`),
    )
    await expect(attempt).rejects.toThrow(/apt-get install python3-torch/)
    await expect(attempt).rejects.toThrow(/pip install torch/)
    process.env.COOP_PYTHON = join(dir, 'no-such-python')
    await expect(initBackend('torch')).rejects.toThrow(/no-such-python: not found/)
  })

  it('auto takes torch only where torch has CUDA, and says why it skipped it', async () => {
    const choice = await initBackend('auto')
    const skip = choice.skipped.find((s) => s.name === 'torch')
    if (choice.name === 'torch') {
      expect(choice.torch?.device).toBe('cuda')
      return
    }
    if (!existsSync(NVIDIA_GPU_PROC_DIR))
      expect(skip?.reason).toBe(`no NVIDIA GPU listed in ${NVIDIA_GPU_PROC_DIR}`)
    else expect(skip?.reason).toMatch(/CUDA|torch/)
  })
})
