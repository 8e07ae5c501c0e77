// Shapes shared by trainer/ modules and its callers.
import type { Logger } from 'pino'

export type { Logger }

/** A named float32 tensor: the unit of weights exchanged with the node (same shape as protocol/compression's NamedTensor). */
export interface NamedTensor {
  name: string
  shape: number[]
  data: Float32Array
}

export type Phase = 'autoencoder' | 'unet'
