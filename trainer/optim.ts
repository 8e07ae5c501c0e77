// Adam (Kingma & Ba 2015) with global-norm gradient clipping, and an EMA of the weights.
// Written here rather than taken from tf.train so that every piece of optimizer state is a
// named float32 tensor we can save and restore bit-exactly for --resume. The clip is computed
// and applied on the device (trainer/kernels/optimizer.ts): a step never waits for a readback.
import * as tf from '@tensorflow/tfjs-core'
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, EMA_WARMUP_OFFSET, GRAD_CLIP_NORM } from './constants.ts'
import { TrainerError } from './errors.ts'
import { fusedAdam, fusedEma, fusedSquaredNorm } from './kernels/optimizer.ts'
import { ParamStore, readTensors } from './nn.ts'
import type { NamedTensor } from './types.ts'

function zerosLike(v: tf.Variable): tf.Variable {
  return tf.tidy(() => tf.variable(tf.zerosLike(v), false))
}

function readAll(map: Map<string, tf.Variable>, prefix: string): Promise<NamedTensor[]> {
  return readTensors([...map.keys()].sort().map((name) => [`${prefix}${name}`, map.get(name) as tf.Variable]))
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

  /**
   * Applies one update from `grads` (in `store.trainableNames()` order), clipped to the global norm on
   * the device; skipped on the device when the gradients or `loss` are not finite. Reads nothing back.
   * `learningRate` overrides the constructor's for this step (a schedule's value).
   */
  apply(grads: readonly tf.Tensor[], loss: tf.Scalar, learningRate: number = this.lr): void {
    this.step++
    const names = this.store.trainableNames()
    if (grads.length !== names.length)
      throw new TrainerError('WEIGHTS_MISMATCH', `${grads.length} gradients for ${names.length} parameters`)
    tf.tidy(() => {
      // One fused kernel per stage for all parameters (trainer/kernels/optimizer.ts; per-op fallback elsewhere).
      const squaredNorm = fusedSquaredNorm([...grads])
      const slots = names.map((n, i) => ({
        param: this.store.variables.get(n) as tf.Variable,
        grad: grads[i] as tf.Tensor,
        m: this.m.get(n) as tf.Variable,
        v: this.v.get(n) as tf.Variable,
      }))
      const out = fusedAdam(
        slots,
        {
          learningRate,
          beta1: ADAM_BETA1,
          beta2: ADAM_BETA2,
          epsilon: ADAM_EPSILON,
          step: this.step,
          clipNorm: GRAD_CLIP_NORM,
        },
        { squaredNorm, loss },
      )
      slots.forEach((slot, i) => {
        const updated = out[i] as { param: tf.Tensor; m: tf.Tensor; v: tf.Tensor }
        slot.param.assign(updated.param)
        slot.m.assign(updated.m)
        slot.v.assign(updated.v)
      })
    })
  }

  exportState(): Promise<NamedTensor[]> {
    return readTensors([
      ...[...this.m.keys()].sort().map((n) => [`adam_m/${n}`, this.m.get(n) as tf.Variable] as const),
      ...[...this.v.keys()].sort().map((n) => [`adam_v/${n}`, this.v.get(n) as tf.Variable] as const),
    ])
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
  /** The shadow tensors seen as a model: evaluation and sampling run on it without copying weights. */
  readonly averaged: ParamStore

  constructor(store: ParamStore, decay: number) {
    this.store = store
    this.decay = decay
    for (const [name, v] of store.variables)
      this.shadow.set(
        name,
        tf.tidy(() => tf.variable(v.clone(), false)),
      )
    this.averaged = ParamStore.over(this.shadow, store.buffers)
  }

  /** `step` is the number of optimizer updates so far. */
  update(step: number): void {
    const decay = Math.min(this.decay, (1 + step) / (EMA_WARMUP_OFFSET + step))
    tf.tidy(() => {
      const names = [...this.shadow.keys()]
      const shadows = names.map((n) => this.shadow.get(n) as tf.Variable)
      const out = fusedEma(
        shadows,
        names.map((n) => this.store.variables.get(n) as tf.Variable),
        decay,
      )
      shadows.forEach((s, i) => s.assign(out[i] as tf.Tensor))
    })
  }

  /** The averaged weights under their model names, sorted. */
  weights(): Promise<NamedTensor[]> {
    return readAll(this.shadow, '')
  }

  exportState(): Promise<NamedTensor[]> {
    return readAll(this.shadow, 'ema/')
  }

  importState(tensors: ReadonlyMap<string, NamedTensor>): void {
    writeAll(this.shadow, 'ema/', tensors)
  }

  dispose(): void {
    for (const s of this.shadow.values()) s.dispose()
  }
}
