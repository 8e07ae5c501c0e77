// Backend selection: `auto` never lands on the slow pure-cpu backend when wasm works, says in one log line
// why each better backend was skipped, and bad or unavailable explicit requests are typed errors.

import * as tf from '@tensorflow/tfjs-core'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { BackendError, initBackend } from '../../trainer/backend.ts'
import { simdConvolutionsEnabled, WASM_TRAINING_KERNELS } from '../../trainer/kernels/wasm.ts'

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

async function installed(specifier: string): Promise<boolean> {
  try {
    await import(specifier)
    return true
  } catch {
    return false
  }
}

describe('initBackend', () => {
  it('auto picks the first backend that works, skipping better ones with a reason each, and logs one line', async () => {
    const { log, lines } = capturingLogger()
    const choice = await initBackend('auto', log)
    // With torch chosen (a CUDA machine), tfjs still runs the node's own tensor work beside it.
    expect(tf.getBackend()).toBe(choice.tfjs ?? choice.name)
    const order = ['torch', 'tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu']
    // Everything before the chosen candidate was tried and skipped, in order, each with a reason.
    expect(choice.skipped.map((s) => s.name)).toEqual(order.slice(0, order.indexOf(choice.candidate)))
    for (const skip of choice.skipped) expect(skip.reason.length).toBeGreaterThan(0)
    // wasm always loads from npm, so auto must never fall through to the pure cpu backend.
    expect(choice.candidate).not.toBe('cpu')
    if (!(await installed('@tensorflow/tfjs-node')) && !(await installed('@tensorflow/tfjs-node-gpu'))) {
      expect(choice.skipped.find((s) => s.name === 'tensorflow')?.reason).toBe(
        '@tensorflow/tfjs-node: package not installed',
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
    const selected = lines.filter((line) => line.msg === 'training backend selected')
    expect(selected).toHaveLength(1)
    expect(selected[0]).toMatchObject({
      backend: choice.candidate,
      requested: 'auto',
      skipped: choice.skipped,
    })
  })

  it('a wrong --backend value is an UNKNOWN_BACKEND error that lists the valid names', async () => {
    const attempt = initBackend('gpu')
    await expect(attempt).rejects.toBeInstanceOf(BackendError)
    await expect(attempt).rejects.toMatchObject({ code: 'UNKNOWN_BACKEND' })
    await expect(attempt).rejects.toThrow(/auto, tensorflow, wasm, cpu, webgpu, torch/)
  })

  it('an explicit backend that cannot load is BACKEND_UNAVAILABLE, and the active backend is unchanged', async () => {
    await initBackend('wasm')
    if (await installed('@tensorflow/tfjs-node')) return
    const attempt = initBackend('tensorflow')
    await expect(attempt).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' })
    await expect(attempt).rejects.toThrow(/tfjs-node/)
    expect(tf.getBackend()).toBe('wasm')
  })

  it('wasm gets the training kernels upstream lacks, including Conv2DBackpropFilter (tfjs#8474)', async () => {
    await initBackend('wasm')
    // Node 24's V8 has relaxed SIMD, so convolutions run on the FMA kernels (trainer/kernels/simd/).
    expect(simdConvolutionsEnabled()).toBe(true)
    for (const kernel of [...WASM_TRAINING_KERNELS, 'CoopGroupNorm', 'CoopGroupNormGrad', 'CoopFusedAdam']) {
      expect(tf.getKernel(kernel, 'wasm'), kernel).toBeDefined()
    }
  })

  it('explicit wasm and cpu both train: a gradient step through conv2d runs on the chosen backend', async () => {
    for (const requested of ['wasm', 'cpu'] as const) {
      const choice = await initBackend(requested)
      expect(choice).toMatchObject({ name: requested, candidate: requested, skipped: [] })
      const x = tf.ones([1, 4, 4, 1])
      const filter = tf.variable(tf.fill([3, 3, 1, 1], 0.5))
      const loss = (): tf.Scalar =>
        tf.mean(tf.square(tf.conv2d(x as tf.Tensor4D, filter as tf.Variable<tf.Rank.R4>, 1, 'same')))
      const before = loss().dataSync()[0]!
      tf.train.sgd(0.01).minimize(loss)
      expect(loss().dataSync()[0]!).toBeLessThan(before)
      filter.dispose()
    }
  })
})
