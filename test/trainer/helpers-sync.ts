// Makes any synchronous tensor readback throw, so a test fails if one comes back on a code path that
// must run on a GPU backend (where a blocking read stalls the pipeline, or fails outright in Node).
import * as tf from '@tensorflow/tfjs-core'

const SYNC_METHODS = ['dataSync', 'arraySync', 'bufferSync'] as const

/** Runs `body` with Tensor.dataSync/arraySync/bufferSync throwing; restores them afterwards. */
export async function withoutSyncReadback<T>(body: () => Promise<T>): Promise<T> {
  const prototype = tf.Tensor.prototype as unknown as Record<string, unknown>
  const saved = SYNC_METHODS.map((name) => [name, prototype[name]] as const)
  for (const name of SYNC_METHODS)
    prototype[name] = function refused(): never {
      throw new Error(`synchronous readback (${name}) on a path that must stay asynchronous`)
    }
  try {
    return await body()
  } finally {
    for (const [name, method] of saved) prototype[name] = method
  }
}
