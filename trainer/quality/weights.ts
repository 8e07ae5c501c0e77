// The committed classifier weights: trainer/quality/classifier.safetensors, F16 (323 KB; the
// metric is measured with the rounded weights), with the recipe that made them in the
// safetensors metadata. Loading checks the file's sha256 against CLASSIFIER_WEIGHTS_SHA256, so
// a truncated, altered or stale file is an error, never a silently different metric.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sha256Digest } from '../../protocol/digest.ts'
import {
  decodeSafetensors,
  encodeSafetensors,
  float16ToFloat32Array,
  float32ArrayToFloat16,
} from '../../protocol/safetensors.ts'
import { TrainerError } from '../errors.ts'
import type { ParamStore } from '../nn.ts'
import type { NamedTensor } from '../types.ts'
import { CLASSIFIER_WEIGHTS_FILE } from './constants.ts'
import { CLASSIFIER_WEIGHTS_SHA256 } from './digest.ts'

/** What the metadata of the weights file records (all strings in the file; parsed here). */
export interface ClassifierCard {
  /** The categories, in logit order. */
  classes: string[]
  recipe: Record<string, number>
  /** Digest over the training images' file digests, in training order. */
  trainingData: string
  trainImages: number
  testImages: number
  /** Held-out accuracy of the F16 weights as stored. */
  testAccuracy: number
  testBalancedAccuracy: number
  perClassTestAccuracy: Record<string, number>
  /** Training loss of the first steps, for a quick reproducibility check. */
  firstLosses: number[]
  backend: string
  command: string
}

export function classifierWeightsPath(): string {
  return join(import.meta.dirname, CLASSIFIER_WEIGHTS_FILE)
}

/** F16 safetensors bytes of a trained classifier, with its card as metadata. */
export async function encodeClassifier(store: ParamStore, card: ClassifierCard): Promise<Uint8Array> {
  const entries = (await store.read()).map((t) => ({
    name: t.name,
    dtype: 'F16' as const,
    shape: t.shape,
    data: float32ArrayToFloat16(t.data),
  }))
  return encodeSafetensors(entries, {
    format: 'diffusion-coop-quality-classifier/1',
    card: JSON.stringify(card),
  })
}

export interface LoadedClassifier {
  weights: NamedTensor[]
  card: ClassifierCard
  digest: string
}

/** Decodes classifier bytes; `expectedDigest` (default: the committed one) must match unless null. */
export function decodeClassifier(
  bytes: Uint8Array,
  expectedDigest: string | null = CLASSIFIER_WEIGHTS_SHA256,
): LoadedClassifier {
  const digest = sha256Digest(bytes)
  if (expectedDigest !== null && digest !== expectedDigest)
    throw new TrainerError(
      'CHECKPOINT_CORRUPT',
      `quality classifier weights have digest ${digest}, expected ${expectedDigest}; retrain with \`coop quality train\` or restore the file`,
    )
  const { tensors, metadata } = decodeSafetensors(bytes)
  const weights: NamedTensor[] = []
  for (const entry of tensors.values()) {
    if (entry.dtype !== 'F16')
      throw new TrainerError('CHECKPOINT_CORRUPT', `classifier tensor ${entry.name} is not F16`)
    weights.push({
      name: entry.name,
      shape: [...entry.shape],
      data: float16ToFloat32Array(entry.data as Uint16Array),
    })
  }
  let card: ClassifierCard
  try {
    card = JSON.parse(metadata?.card ?? '') as ClassifierCard
  } catch {
    throw new TrainerError('CHECKPOINT_CORRUPT', 'quality classifier weights carry no readable card')
  }
  if (!Array.isArray(card.classes) || card.classes.length < 2)
    throw new TrainerError('CHECKPOINT_CORRUPT', 'quality classifier card names no classes')
  return { weights: weights.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), card, digest }
}

/** Reads and checks the committed weights. */
export async function loadCommittedClassifier(): Promise<LoadedClassifier> {
  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(classifierWeightsPath()))
  } catch {
    throw new TrainerError(
      'CHECKPOINT_MISSING',
      `quality classifier weights ${classifierWeightsPath()} are missing; run \`coop quality train\``,
    )
  }
  return decodeClassifier(bytes)
}
