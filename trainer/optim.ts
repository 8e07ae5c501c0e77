// Adam (Kingma & Ba 2015) with global-norm gradient clipping, and an EMA of the weights.
// Written here rather than taken from tf.train so that every piece of optimizer state is a
// named float32 tensor we can save and restore bit-exactly for --resume.
import * as tf from '@tensorflow/tfjs-core'
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, EMA_WARMUP_OFFSET, GRAD_CLIP_NORM } from './constants.ts'
import { TrainerError } from './errors.ts'
import type { ParamStore } from './nn.ts'
import type { NamedTensor } from './types.ts'

function zerosLike(v: tf.Variable): tf.Variable {
  return tf.tidy(() => tf.variable(tf.zerosLike(v), false))
}

function readAll(map: Map<string, tf.Variable>, prefix: string): NamedTensor[] {
  return [...map.keys()].sort().map((name) => {
    const v = map.get(name) as tf.Variable
    return {
      name: `${prefix}${name}`,
      shape: [...v.shape],
      data: new Float32Array(v.dataSync() as Float32Array),
    }
  })
}

function writeAll(
  map: Map<string, tf.Variable>,
  prefix: string,
  tensors: ReadonlyMap<string, NamedTensor>,
): void {
  for (const [name, v] of map) {
    const t = tensors.get(`${prefix}${name}`)
    if (t === undefined || t.data.length !== v.size)
      throw new TrainerError(
        'CHECKPOINT_CORRUPT',
        `optimizer state lacks ${prefix}${name} or has the wrong size`,
      )
    tf.tidy(() => v.assign(tf.tensor(t.data, v.shape, 'float32')))
  }
}

export class Adam {
  private readonly m = new Map<string, tf.Variable>()
  private readonly v = new Map<string, tf.Variable>()
  /** Updates applied so far (drives bias correction). */
  step = 0
  private readonly store: ParamStore
  private readonly lr: number

  constructor(store: ParamStore, lr: number) {
    this.store = store
    this.lr = lr
    for (const name of store.trainableNames()) {
      const variable = store.variables.get(name) as tf.Variable
      this.m.set(name, zerosLike(variable))
      this.v.set(name, zerosLike(variable))
    }
  }

  /** Applies one update from `grads` (by parameter name); returns the pre-clip global gradient norm. */
  apply(grads: Record<string, tf.Tensor>): number {
    this.step++
    const t = this.step
    const correction1 = 1 - ADAM_BETA1 ** t
    const correction2 = 1 - ADAM_BETA2 ** t
    return tf.tidy(() => {
      const names = [...this.m.keys()]
      const squares = names.map((n) => tf.sum(tf.square(grads[n] as tf.Tensor)))
      const norm = Math.sqrt((tf.addN(squares).dataSync() as Float32Array)[0] as number)
      const scale = norm > GRAD_CLIP_NORM ? GRAD_CLIP_NORM / norm : 1
      for (const name of names) {
        const g = scale === 1 ? (grads[name] as tf.Tensor) : tf.mul(grads[name] as tf.Tensor, scale)
        const m = this.m.get(name) as tf.Variable
        const v = this.v.get(name) as tf.Variable
        const w = this.store.variables.get(name) as tf.Variable
        const mNext = tf.add(tf.mul(m, ADAM_BETA1), tf.mul(g, 1 - ADAM_BETA1))
        const vNext = tf.add(tf.mul(v, ADAM_BETA2), tf.mul(tf.square(g), 1 - ADAM_BETA2))
        m.assign(mNext)
        v.assign(vNext)
        const update = tf.div(
          tf.mul(mNext, this.lr / correction1),
          tf.add(tf.sqrt(tf.div(vNext, correction2)), ADAM_EPSILON),
        )
        w.assign(tf.sub(w, update))
      }
      return norm
    })
  }

  exportState(): NamedTensor[] {
    return [...readAll(this.m, 'adam_m/'), ...readAll(this.v, 'adam_v/')]
  }

  importState(step: number, tensors: ReadonlyMap<string, NamedTensor>): void {
    writeAll(this.m, 'adam_m/', tensors)
    writeAll(this.v, 'adam_v/', tensors)
    this.step = step
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose()
  }
}

/** Exponential moving average of every tensor of a store (buffers included), with warm-up. */
export class Ema {
  readonly shadow = new Map<string, tf.Variable>()
  private readonly store: ParamStore
  private readonly decay: number

  constructor(store: ParamStore, decay: number) {
    this.store = store
    this.decay = decay
    for (const [name, v] of store.variables)
      this.shadow.set(
        name,
        tf.tidy(() => tf.variable(v.clone(), false)),
      )
  }

  /** `step` is the number of optimizer updates so far. */
  update(step: number): void {
    const decay = Math.min(this.decay, (1 + step) / (EMA_WARMUP_OFFSET + step))
    tf.tidy(() => {
      for (const [name, s] of this.shadow)
        s.assign(tf.add(tf.mul(s, decay), tf.mul(this.store.variables.get(name) as tf.Variable, 1 - decay)))
    })
  }

  /** The averaged weights under their model names, sorted. */
  weights(): NamedTensor[] {
    return readAll(this.shadow, '')
  }

  exportState(): NamedTensor[] {
    return readAll(this.shadow, 'ema/')
  }

  importState(tensors: ReadonlyMap<string, NamedTensor>): void {
    writeAll(this.shadow, 'ema/', tensors)
  }

  dispose(): void {
    for (const s of this.shadow.values()) s.dispose()
  }
}
