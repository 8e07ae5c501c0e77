// A training worker thread: its own tfjs wasm instance and one model replica per session. For each
// request it loads the weights it is sent, computes one shard's loss and gradients with the same code
// as the main thread (trainer/step.ts), and sends them back flattened. It never sees the dataset, the
// optimizer or the store: only the rows of its shard.
import * as tf from '@tensorflow/tfjs-core'
import { parentPort } from 'node:worker_threads'
import { createAutoencoder } from '../autoencoder.ts'
import { initBackend } from '../backend.ts'
import { shardGradients, stepModelFor } from '../step.ts'
import type { StepModel } from '../step.ts'
import { createUnet } from '../unet.ts'
import type { ShardReply, ShardRequest } from './pool.ts'

type Message =
  | ({ type: 'shard'; id: number } & Omit<ShardRequest, 'open'> & { open?: ShardRequest['open'] })
  | { type: 'close'; session: number }

const port = parentPort
if (port === null) throw new Error('trainer/parallel/worker.ts runs as a worker thread')

// One thread per worker: a worker never starts workers of its own.
const ready = initBackend('wasm', undefined, { threads: 1 })
const models = new Map<number, StepModel>()

function epochNow(): number {
  return performance.timeOrigin + performance.now()
}

function cpuMs(): number {
  const usage = process.threadCpuUsage()
  return (usage.user + usage.system) / 1000
}

async function computeShard(
  message: Extract<Message, { type: 'shard' }>,
): Promise<{ reply: ShardReply; transfer: ArrayBuffer[] }> {
  await ready
  let model = models.get(message.session)
  if (model === undefined) {
    if (message.open === undefined) throw new Error(`session ${message.session} was never opened here`)
    const { config, phase } = message.open
    const store = phase === 'autoencoder' ? createAutoencoder(config, 0) : createUnet(config, 0)
    model = stepModelFor(config, phase, store)
    models.set(message.session, model)
  }
  model.store.writeFlat(message.weights)
  const startMs = epochNow()
  const cpuStart = cpuMs()
  const result = shardGradients(model, message.shard, message.batchSize)
  try {
    const flat = tf.tidy(() => tf.concat(result.grads.map((g) => tf.reshape(g, [-1]))))
    const grads = new Float32Array((await flat.data()) as Float32Array)
    flat.dispose()
    const loss = ((await result.loss.data()) as Float32Array)[0] as number
    const meanSquares =
      result.meanSquares === undefined
        ? null
        : (((await result.meanSquares.data()) as Float32Array)[0] as number)
    const timing = { rows: message.shard.count, startMs, endMs: epochNow(), cpuMs: cpuMs() - cpuStart }
    return { reply: { loss, grads, meanSquares, timing }, transfer: [grads.buffer as ArrayBuffer] }
  } finally {
    tf.dispose([
      result.loss,
      ...result.grads,
      ...(result.meanSquares === undefined ? [] : [result.meanSquares]),
    ])
  }
}

port.on('message', (message: Message) => {
  if (message.type === 'close') {
    models.get(message.session)?.store.dispose()
    models.delete(message.session)
    return
  }
  computeShard(message).then(
    ({ reply, transfer }) => port.postMessage({ id: message.id, ok: true, reply }, transfer),
    (error: unknown) =>
      port.postMessage({
        id: message.id,
        ok: false,
        message: error instanceof Error ? error.message : String(error),
      }),
  )
})
