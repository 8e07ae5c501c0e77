// Keeps a planned demo inside its time limit when the plan was optimistic. The plan (plan.ts)
// fixes the charter's U-Net rounds from a calibration of a few seconds, and that reading moves
// from minute to minute on a shared machine (0.17-0.33 CPU-s per step on the same day). So while
// the peers train, the demo measures what a U-Net round really takes and, after each one, checks
// that one more round, the outputs of every round done and the final score still fit the limit;
// when they do not, it stops the peers there and builds the outputs from the rounds done. It never
// stops before DEMO_MIN_UNET_ROUNDS: fewer show nothing but noise.
import type { DemoPlan } from './plan.ts'
import type { DemoProgress } from './progress.ts'
import {
  DEMO_MIN_UNET_ROUNDS,
  DEMO_TIME_BOX_TAIL_SECONDS,
  DEMO_TIME_LIMIT_SECONDS,
  TIME_BOX_RECENT_ROUNDS,
} from './constants.ts'

export interface TimeBoxStop {
  /** U-Net rounds closed when the demo stopped the peers. */
  unetRoundsDone: number
  /** U-Net rounds the charter plans. */
  unetRoundsPlanned: number
  /** Seconds since the demo started, when it stopped the peers. */
  elapsedSeconds: number
  /** Measured seconds per U-Net round (the mean of the last few). */
  unetRoundSeconds: number
  /** What the plan assumed per U-Net round. */
  plannedUnetRoundSeconds: number
  /** The time the run would have ended with one more round, by the same projection. */
  projectedSeconds: number
  limitSeconds: number
  /** One sentence for the user. */
  reason: string
}

export interface TimeBoxInput {
  plan: Pick<DemoPlan, 'unetRounds' | 'unetRoundSeconds' | 'outputSecondsPerRound' | 'finalSeconds'>
  /** When the demo started (before the calibration): the user's clock. */
  startedAtMs: number
  limitSeconds?: number
}

/** The U-Net rounds the publisher has closed, oldest first (the genesis checkpoint is not a round). */
function unetCloses(progress: DemoProgress): number[] {
  return progress.rounds
    .filter((r) => r.phase === 'unet' && r.contributions !== undefined && r.contributions > 0)
    .map((r) => r.closedAtMs)
    .sort((a, b) => a - b)
}

/**
 * Whether to stop after the rounds closed so far. The projection of one more round:
 *   elapsed + r + s * (outputs(n + 1) + final) + tail
 * where r is the mean of the last TIME_BOX_RECENT_ROUNDS U-Net round intervals, and s = r / the
 * plan's U-Net round time (at least 1) rescales the plan's output estimates, which come from the
 * same calibration: if rounds run slower than planned, so will the grids.
 */
export function timeBoxDecision(
  input: TimeBoxInput,
  progress: DemoProgress,
  nowMs: number,
): TimeBoxStop | undefined {
  const { plan } = input
  const limitSeconds = input.limitSeconds ?? DEMO_TIME_LIMIT_SECONDS
  const closes = unetCloses(progress)
  const done = closes.length
  if (done < DEMO_MIN_UNET_ROUNDS || done >= plan.unetRounds || done < 2) return undefined
  const recent = closes.slice(-(TIME_BOX_RECENT_ROUNDS + 1))
  const roundSeconds =
    ((recent.at(-1) as number) - (recent[0] as number)) / 1000 / Math.max(1, recent.length - 1)
  const scale = Math.max(1, roundSeconds / Math.max(1e-3, plan.unetRoundSeconds))
  const elapsedSeconds = (nowMs - input.startedAtMs) / 1000
  const projectedSeconds =
    elapsedSeconds +
    roundSeconds +
    scale * ((done + 1) * plan.outputSecondsPerRound + plan.finalSeconds) +
    DEMO_TIME_BOX_TAIL_SECONDS
  if (projectedSeconds <= limitSeconds) return undefined
  return {
    unetRoundsDone: done,
    unetRoundsPlanned: plan.unetRounds,
    elapsedSeconds,
    unetRoundSeconds: roundSeconds,
    plannedUnetRoundSeconds: plan.unetRoundSeconds,
    projectedSeconds,
    limitSeconds,
    reason:
      `stopping after U-Net round ${done} of ${plan.unetRounds}: rounds take ${roundSeconds.toFixed(1)} s here ` +
      `(planned ${plan.unetRoundSeconds.toFixed(1)} s), and one more would end the demo at ` +
      `${Math.floor(projectedSeconds / 60)} min ${Math.floor(projectedSeconds % 60)} s, past its ${Math.round(limitSeconds / 60)}-minute limit`,
  }
}
