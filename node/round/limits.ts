// What one contribution may claim and carry under the charter: the sample count its weight rests
// on, the payload it must fit (the model layout, the charter's codec, a size bound derived from
// both), and the smallest update that counts toward a quorum. Pure functions of the charter, so
// every peer, the publisher and `coop checkpoint verify` apply the same limits.
import type { CoopCharter } from '../../protocol/charter.ts'
import { payloadMaxBytes, type Codec, type TensorLayout } from '../../protocol/compression.ts'
import { CoopConfigSchema, type CoopConfig } from '../../configs/index.ts'
import { TRIVIAL_DELTA_RMS_FRACTION } from './constants.ts'
import { RoundError } from './errors.ts'
import type { Phase } from './schedule.ts'

const configs = new WeakMap<object, CoopConfig>()

/** The charter's model configuration (parsed once per charter object). */
function modelConfig(charter: Pick<CoopCharter, 'model'>): CoopConfig {
  let config = configs.get(charter.model)
  if (config === undefined) {
    const parsed = CoopConfigSchema.safeParse(charter.model)
    if (!parsed.success) throw new RoundError('BAD_CHARTER', `charter model: ${parsed.error.message}`)
    config = parsed.data
    configs.set(charter.model, config)
  }
  return config
}

/**
 * The most samples one contribution can honestly claim: the trainer loop counts one batch of
 * the phase per local step (trainer/session.ts), and a round has `innerSteps` steps.
 */
export function maxSamples(charter: Pick<CoopCharter, 'model' | 'rounds'>, phase: Phase): number {
  const config = modelConfig(charter)
  const batch = phase === 'autoencoder' ? config.autoencoder.batchSize : config.unet.batchSize
  return charter.rounds.innerSteps * batch
}

/** The charter's codec for contribution payloads. */
export function charterCodec(charter: Pick<CoopCharter, 'rounds'>): Codec {
  return charter.rounds.compression as Codec
}

/** The largest payload a correct trainer writes for this model under the charter's codec. */
export function payloadLimit(charter: Pick<CoopCharter, 'rounds'>, layout: readonly TensorLayout[]): number {
  return payloadMaxBytes(layout, charterCodec(charter))
}

/**
 * The smallest root-mean-square update (over the values the codec carries) that counts: a
 * fraction of the phase's Adam learning rate, since every Adam step moves a parameter by about
 * the learning rate. Anything below is a zero or near-zero delta (see docs/THREAT-MODEL.md §10).
 */
export function deltaRmsFloor(charter: Pick<CoopCharter, 'model'>, phase: Phase): number {
  const config = modelConfig(charter)
  const lr = phase === 'autoencoder' ? config.autoencoder.lr : config.unet.lr
  return TRIVIAL_DELTA_RMS_FRACTION * lr
}
