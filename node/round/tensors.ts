// Weights and outer momentum as safetensors files (F32), the form checkpoints are published
// in: a researcher opens model.safetensors with `safetensors.torch.load_file` directly.
import { decodeSafetensors, encodeSafetensors } from '../../protocol/safetensors.ts'
import type { TensorEntry } from '../../protocol/safetensors.ts'
import { CHECKPOINT_FILE_MAX_BYTES, MAX_TENSORS } from './constants.ts'
import { RoundError } from './errors.ts'

/** A named float32 tensor (the shape trainer/session.ts and protocol/aggregation.ts exchange). */
export interface NamedTensor {
  name: string
  shape: number[]
  data: Float32Array
}

export function encodeTensors(
  tensors: readonly NamedTensor[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const entries: TensorEntry[] = tensors.map((t) => ({
    name: t.name,
    dtype: 'F32',
    shape: [...t.shape],
    data: t.data,
  }))
  return encodeSafetensors(entries, metadata)
}

/** Decodes an F32 weights file, sorted by name; anything else in it is a BAD_CHECKPOINT. */
export function decodeTensors(bytes: Uint8Array): NamedTensor[] {
  const { tensors } = decodeSafetensors(bytes, {
    maxBytes: CHECKPOINT_FILE_MAX_BYTES,
    maxTensors: MAX_TENSORS,
  })
  const out: NamedTensor[] = []
  for (const entry of tensors.values()) {
    if (entry.dtype !== 'F32' || !(entry.data instanceof Float32Array))
      throw new RoundError('BAD_CHECKPOINT', `tensor ${entry.name} is ${entry.dtype}, expected F32`)
    out.push({ name: entry.name, shape: [...entry.shape], data: entry.data })
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

export function zerosLike(tensors: readonly NamedTensor[]): NamedTensor[] {
  return tensors.map((t) => ({ name: t.name, shape: [...t.shape], data: new Float32Array(t.data.length) }))
}

/** start - local, tensor by tensor: the DiLoCo pseudo-gradient (its sign matches a gradient, so the outer step subtracts it). */
export function pseudoGradient(start: readonly NamedTensor[], local: readonly NamedTensor[]): NamedTensor[] {
  assertSameLayout(start, local, 'local weights')
  return start.map((s, i) => {
    const l = local[i] as NamedTensor
    const data = new Float32Array(s.data.length)
    for (let k = 0; k < data.length; k++) data[k] = (s.data[k] as number) - (l.data[k] as number)
    return { name: s.name, shape: [...s.shape], data }
  })
}

/** Same names, shapes and order; a contribution or checkpoint that differs cannot be combined with ours. */
export function assertSameLayout(
  reference: readonly NamedTensor[],
  other: readonly NamedTensor[],
  what: string,
): void {
  if (reference.length !== other.length)
    throw new RoundError(
      'BAD_CHECKPOINT',
      `${what} has ${other.length} tensors, expected ${reference.length}`,
    )
  for (let i = 0; i < reference.length; i++) {
    const a = reference[i] as NamedTensor
    const b = other[i] as NamedTensor
    if (
      a.name !== b.name ||
      a.shape.length !== b.shape.length ||
      a.shape.some((d, k) => d !== b.shape[k]) ||
      a.data.length !== b.data.length
    )
      throw new RoundError(
        'BAD_CHECKPOINT',
        `${what}: tensor ${b.name} [${b.shape.join(',')}] does not match ${a.name} [${a.shape.join(',')}]`,
      )
  }
}
