// The demo's round planning (node/demo/plan.ts): the number of U-Net rounds follows the
// measured step time and the machine, within bounds, and the prediction fits the budget.
import { describe, expect, it } from 'vitest'
import { defaultPeerThreads, planUnetRounds } from '../../../node/demo/plan.ts'
import type { StepCalibration } from '../../../node/demo/plan.ts'
import { DEMO_MAX_UNET_ROUNDS, DEMO_MIN_UNET_ROUNDS } from '../../../node/demo/constants.ts'

const measured = (unetStepCpu: number, cpuShare = 1): StepCalibration => ({
  autoencoderStepCpu: unetStepCpu * 1.3,
  unetStepCpu,
  cpuShare,
  backend: 'wasm',
})

const plan = (calibration: StepCalibration, cores = 2, budgetSeconds = 810) =>
  planUnetRounds({ calibration, peers: 4, innerSteps: 50, autoencoderRounds: 3, cores, budgetSeconds })

describe('planUnetRounds', () => {
  it('fits the budget: the predicted time of the plan is within it', () => {
    for (const step of [0.05, 0.1, 0.16, 0.25, 0.4]) {
      const p = plan(measured(step))
      if (p.unetRounds > DEMO_MIN_UNET_ROUNDS && p.unetRounds < DEMO_MAX_UNET_ROUNDS) {
        expect(p.predictedSeconds, `step ${step}`).toBeLessThanOrEqual(p.budgetSeconds)
        // One more round would not have fitted.
        expect(p.predictedSeconds + p.unetRoundSeconds, `step ${step}`).toBeGreaterThan(
          p.budgetSeconds * 0.95,
        )
      }
    }
  })

  it('gives fewer rounds to a slower machine, a loaded one, or fewer cores', () => {
    const base = plan(measured(0.16)).unetRounds
    expect(plan(measured(0.32)).unetRounds).toBeLessThan(base)
    expect(plan(measured(0.16, 0.5)).unetRounds).toBeLessThan(base)
    expect(plan(measured(0.16), 1).unetRounds).toBeLessThan(base)
    // Twice the throughput (e.g. the 2-thread wasm backend halving CPU per step): more rounds.
    expect(plan(measured(0.08)).unetRounds).toBeGreaterThan(base)
  })

  it('clamps to the bounds and says so', () => {
    const slow = plan(measured(5))
    expect(slow.unetRounds).toBe(DEMO_MIN_UNET_ROUNDS)
    expect(slow.note).toMatch(/too slow/)
    expect(slow.predictedSeconds).toBeGreaterThan(slow.budgetSeconds)
    const fast = plan(measured(0.001))
    expect(fast.unetRounds).toBe(DEMO_MAX_UNET_ROUNDS)
    expect(fast.note).toMatch(/capped/)
  })
})

describe('demo peers: training threads', () => {
  it('shares the cores out among the peers, at least one thread each, at most the trainer default', () => {
    expect(defaultPeerThreads(4, 2)).toBe(1)
    expect(defaultPeerThreads(4, 1)).toBe(1)
    expect(defaultPeerThreads(2, 4)).toBe(2)
    expect(defaultPeerThreads(4, 8)).toBe(2)
    // Never more than a training step uses by default (trainer/constants.ts), however many cores.
    expect(defaultPeerThreads(2, 64)).toBe(2)
  })
})
