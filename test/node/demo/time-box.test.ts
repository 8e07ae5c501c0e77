// The demo's time box (node/demo/time-box.ts): after each closed U-Net round, stop when one more
// round plus the outputs would pass the limit, from the rounds' measured pace, never before the
// minimum of rounds and never at the planned last round.
import { describe, expect, it } from 'vitest'
import { timeBoxDecision } from '../../../node/demo/time-box.ts'
import { createProgress } from '../../../node/demo/progress.ts'
import type { DemoProgress } from '../../../node/demo/progress.ts'
import {
  DEMO_MIN_UNET_ROUNDS,
  DEMO_TIME_BOX_TAIL_SECONDS,
  DEMO_TIME_LIMIT_SECONDS,
} from '../../../node/demo/constants.ts'

const START = 1_000_000
const plan = { unetRounds: 40, unetRoundSeconds: 12, outputSecondsPerRound: 2.5, finalSeconds: 12 }

/** Autoencoder rounds 1-6 in the first 100 s, then U-Net rounds every `roundSeconds` from `unetFrom` s. */
function progressWith(unetDone: number, roundSeconds: number, unetFrom = 100): DemoProgress {
  const progress = createProgress([{ name: 'peer-1', publisher: true }], START)
  for (let r = 1; r <= 6; r++)
    progress.rounds.push({ round: r, phase: 'autoencoder', contributions: 4, closedAtMs: START + r * 15_000 })
  // The U-Net's genesis is announced without contributions: not a round trained.
  progress.rounds.push({ round: 7, phase: 'unet', closedAtMs: START + unetFrom * 1000 })
  for (let k = 1; k <= unetDone; k++)
    progress.rounds.push({
      round: 7 + k,
      phase: 'unet',
      contributions: 4,
      closedAtMs: START + (unetFrom + k * roundSeconds) * 1000,
    })
  return progress
}

/** The decision right after the last of `unetDone` rounds closed. */
function decideAfter(unetDone: number, roundSeconds: number, limitSeconds?: number) {
  const progress = progressWith(unetDone, roundSeconds)
  const now = progress.rounds.at(-1)?.closedAtMs as number
  return timeBoxDecision(
    { plan, startedAtMs: START, ...(limitSeconds === undefined ? {} : { limitSeconds }) },
    progress,
    now,
  )
}

describe('the demo time box', () => {
  it('lets a run at the planned pace reach its planned last round', () => {
    // 100 s + 40 x 12 s = 580 s of training, + 40 x 2.5 + 12 of outputs: well inside 15 minutes.
    for (let done = 1; done <= plan.unetRounds; done++) expect(decideAfter(done, 12)).toBeUndefined()
  })

  it('stops a slow run at the last round after which one more would pass the limit', () => {
    const roundSeconds = 20
    const stops = []
    for (let done = 1; done <= plan.unetRounds; done++) {
      const stop = decideAfter(done, roundSeconds)
      if (stop !== undefined) stops.push(stop)
    }
    const first = stops[0]
    expect(first).toBeDefined()
    if (first === undefined) return
    const done = first.unetRoundsDone
    // The projection, by hand: outputs scale with the pace (20 / 12).
    const project = (n: number) =>
      100 + n * roundSeconds + roundSeconds + (20 / 12) * ((n + 1) * 2.5 + 12) + DEMO_TIME_BOX_TAIL_SECONDS
    expect(project(done)).toBeGreaterThan(DEMO_TIME_LIMIT_SECONDS)
    expect(project(done - 1)).toBeLessThanOrEqual(DEMO_TIME_LIMIT_SECONDS)
    expect(first.projectedSeconds).toBeCloseTo(project(done), 6)
    expect(first).toMatchObject({
      unetRoundsPlanned: 40,
      limitSeconds: DEMO_TIME_LIMIT_SECONDS,
      plannedUnetRoundSeconds: 12,
    })
    expect(first.unetRoundSeconds).toBeCloseTo(20, 6)
    expect(first.reason).toContain(`after U-Net round ${done} of 40`)
  })

  it('never stops before the minimum of rounds, nor at the planned last round', () => {
    // So slow that every round is past the limit.
    for (let done = 1; done < DEMO_MIN_UNET_ROUNDS; done++) expect(decideAfter(done, 200)).toBeUndefined()
    expect(decideAfter(DEMO_MIN_UNET_ROUNDS, 200)).toBeDefined()
    expect(decideAfter(plan.unetRounds, 200)).toBeUndefined()
  })

  it('reads the pace from the recent rounds, not from the start', () => {
    // 20 rounds at 10 s, then rounds at 40 s: the slow-down shows at once.
    const progress = progressWith(20, 10)
    let t = (progress.rounds.at(-1)?.closedAtMs as number) - START
    for (let k = 21; k <= 25; k++) {
      t += 40_000
      progress.rounds.push({ round: 7 + k, phase: 'unet', contributions: 4, closedAtMs: START + t })
    }
    const stop = timeBoxDecision({ plan, startedAtMs: START, limitSeconds: 600 }, progress, START + t)
    expect(stop?.unetRoundSeconds).toBeCloseTo(40, 6)
  })
})
