// The outer learning rate of each round: a pure function of the charter and the round number, so
// the publisher, every verifying peer, `coop checkpoint verify` and the simulator compute the same
// number. DiLoCo's constant outer lr with Nesterov momentum overshoots in the first rounds of a
// short run (momentum multiplies consistent pseudo-gradients up to 1/(1-μ) times); a linear
// warm-up over the first rounds and a linear decay towards the phase's last round are the knobs
// issue 10 asked for (bench/README.md shows what each did).
//
// Only +, -, * and / on doubles: bit-identical on every IEEE-754 machine, which the bit-exact
// checkpoint recomputation needs (Math.cos, a cosine schedule's usual tool, is not specified to
// the last bit by ECMAScript, so there is no cosine decay here).
import { ProtocolError } from './errors.ts'

/** `rounds.outerSchedule` of the charter (absent: the constant `outerLr` every round). */
export interface OuterSchedule {
  /** Rounds of linear warm-up at the start of each phase: round k ≤ W uses lr·k/(W+1). */
  warmupRounds: number
  /** The lr of the phase's last round as a fraction of `outerLr`, reached linearly after the warm-up (1: no decay). */
  finalLrFraction: number
}

/** Upper bound of warmupRounds: far above any charter's rounds, bounds nothing but nonsense. */
export const OUTER_WARMUP_ROUNDS_MAX = 100_000

/** Throws ProtocolError SCHEMA for a schedule the charter schema would refuse. */
export function checkOuterSchedule(schedule: OuterSchedule): void {
  const { warmupRounds, finalLrFraction } = schedule
  if (!(Number.isSafeInteger(warmupRounds) && warmupRounds >= 0 && warmupRounds <= OUTER_WARMUP_ROUNDS_MAX))
    throw new ProtocolError(
      'SCHEMA',
      `outer warm-up rounds must be an integer in [0, ${OUTER_WARMUP_ROUNDS_MAX}], got ${warmupRounds}`,
    )
  // 0 would make the last round's step zero: a round whose contributions change nothing.
  if (!(Number.isFinite(finalLrFraction) && finalLrFraction > 0 && finalLrFraction <= 1))
    throw new ProtocolError('SCHEMA', `final outer lr fraction must be in (0, 1], got ${finalLrFraction}`)
}

/**
 * The outer lr of round `k` (1-based) of a phase of `total` rounds:
 *   k ≤ W:  lr · k / (W + 1)                                      (linear warm-up)
 *   k > W:  lr · (1 − (1 − f) · (k − W − 1) / max(1, total − W − 1))   (linear decay to f·lr)
 * Rounds past `total` (never scheduled, but a verifier may be asked) keep the last round's lr.
 */
export function outerLrAt(lr: number, schedule: OuterSchedule | undefined, k: number, total: number): number {
  if (!(Number.isFinite(lr) && lr > 0))
    throw new ProtocolError('SCHEMA', `outer learning rate must be positive, got ${lr}`)
  if (!(Number.isSafeInteger(k) && k >= 1))
    throw new ProtocolError('SCHEMA', `round within the phase must be an integer >= 1, got ${k}`)
  if (schedule === undefined) return lr
  checkOuterSchedule(schedule)
  const { warmupRounds: w, finalLrFraction: f } = schedule
  if (k <= w) return (lr * k) / (w + 1)
  const decaying = Math.max(1, total - w - 1)
  const progress = Math.min(k - w - 1, decaying) / decaying
  return lr * (1 - (1 - f) * progress)
}

/** What outerLrAt needs from a charter (protocol/charter.ts CoopCharter fits it). */
export interface ScheduledCharter {
  rounds: { outerLr: number; outerMomentum: number; outerSchedule?: OuterSchedule | undefined }
  phases: {
    autoencoder: { mode: 'cooperative'; rounds: number } | { mode: 'component' }
    unet: { rounds: number }
  }
}

/**
 * The outer lr and momentum of global round `round` (rounds are numbered from 1 across both
 * phases: the cooperative autoencoder's first, then the U-Net's); each phase runs its own
 * schedule from its first round.
 */
export function outerHyperparameters(
  charter: ScheduledCharter,
  round: number,
): { lr: number; momentum: number } {
  if (!(Number.isSafeInteger(round) && round >= 1))
    throw new ProtocolError('SCHEMA', `round must be an integer >= 1, got ${round}`)
  const ae = charter.phases.autoencoder
  const autoencoderRounds = ae.mode === 'cooperative' ? ae.rounds : 0
  const inAutoencoder = round <= autoencoderRounds
  const k = inAutoencoder ? round : round - autoencoderRounds
  const total = inAutoencoder ? autoencoderRounds : charter.phases.unet.rounds
  return {
    lr: outerLrAt(charter.rounds.outerLr, charter.rounds.outerSchedule, k, total),
    momentum: charter.rounds.outerMomentum,
  }
}

/** 'warmup:<W>,final:<f>' (the CLI's --outer-schedule) -> OuterSchedule; 'constant' -> undefined. */
export function parseOuterSchedule(text: string): OuterSchedule | undefined {
  if (text === 'constant') return undefined
  const parts = new Map<string, string>()
  for (const part of text.split(',')) {
    const [key, value, extra] = part.split(':')
    if (key === undefined || value === undefined || extra !== undefined || parts.has(key))
      throw new ProtocolError(
        'SCHEMA',
        `outer schedule '${text}' is not constant or warmup:<rounds>,final:<fraction>`,
      )
    parts.set(key, value)
  }
  for (const key of parts.keys())
    if (key !== 'warmup' && key !== 'final')
      throw new ProtocolError('SCHEMA', `outer schedule '${text}': unknown part '${key}' (warmup, final)`)
  const number = (value: string | undefined, fallback: number) =>
    value === undefined ? fallback : value.trim() === '' ? Number.NaN : Number(value)
  const schedule = {
    warmupRounds: number(parts.get('warmup'), 0),
    finalLrFraction: number(parts.get('final'), 1),
  }
  checkOuterSchedule(schedule)
  return schedule
}

export function formatOuterSchedule(schedule: OuterSchedule | undefined): string {
  return schedule === undefined
    ? 'constant'
    : `warmup:${schedule.warmupRounds},final:${schedule.finalLrFraction}`
}
