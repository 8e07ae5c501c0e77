// Which phase a round belongs to. Rounds are numbered globally from 1: the cooperative
// autoencoder rounds come first (when the charter trains it cooperatively), then the U-Net
// rounds. Each phase starts from a genesis checkpoint (round = first round of the phase - 1,
// no contributions) that the publisher signs, so every peer starts from the same weights.
import { RoundError } from './errors.ts'

export type Phase = 'autoencoder' | 'unet'
export const PHASES: readonly Phase[] = ['autoencoder', 'unet']

export interface PhaseCharter {
  phases: {
    autoencoder:
      { mode: 'cooperative'; rounds: number } | { mode: 'component'; checkpoint: string; provenance: string }
    unet: { rounds: number }
  }
}

export interface RoundPlan {
  /** Cooperative autoencoder rounds (0 when the autoencoder is a component). */
  autoencoderRounds: number
  unetRounds: number
  total: number
}

export function roundPlan(charter: PhaseCharter): RoundPlan {
  const ae = charter.phases.autoencoder
  const autoencoderRounds = ae.mode === 'cooperative' ? ae.rounds : 0
  const unetRounds = charter.phases.unet.rounds
  for (const [name, value] of [
    ['phases.autoencoder.rounds', autoencoderRounds],
    ['phases.unet.rounds', unetRounds],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new RoundError('BAD_CHARTER', `${name} must be a non-negative integer`)
  }
  return { autoencoderRounds, unetRounds, total: autoencoderRounds + unetRounds }
}

/** The phase of round `round` (1-based); RangeError outside 1..total. */
export function phaseOfRound(plan: RoundPlan, round: number): Phase {
  if (!Number.isSafeInteger(round) || round < 1 || round > plan.total)
    throw new RangeError(`round ${round} is outside 1..${plan.total}`)
  return round <= plan.autoencoderRounds ? 'autoencoder' : 'unet'
}

/** The round number a phase's genesis checkpoint carries. */
export function genesisRound(plan: RoundPlan, phase: Phase): number {
  return phase === 'autoencoder' ? 0 : plan.autoencoderRounds
}

export function lastRoundOf(plan: RoundPlan, phase: Phase): number {
  return phase === 'autoencoder' ? plan.autoencoderRounds : plan.total
}
