// The noise schedules against golden values computed independently with numpy
// (np.linspace / np.cumprod in float64; cosine from Nichol & Dhariwal's formula), and the
// DDIM update against its closed form on a fixed tensor.
import * as tf from '@tensorflow/tfjs-core'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../configs/index.ts'
import { initBackend } from '../../trainer/backend.ts'
import { ddimStep, epsilonAndX0, lossWeights, predictionTarget, qSample } from '../../trainer/diffusion.ts'
import { betaSchedule, ddimTimesteps, makeSchedule } from '../../trainer/schedule.ts'

// python3: b = np.linspace(1e-4, 0.02, 1000); ac = np.cumprod(1 - b)  (and likewise below)
const GOLDEN = {
  linear: {
    betaStart: 1e-4,
    betaEnd: 0.02,
    rows: [
      [0, 0.0001, 0.9999],
      [1, 0.00011991991991991993, 0.9997800920720721],
      [499, 0.010040040040040039, 0.07858724288177824],
      [999, 0.02, 4.035829765375676e-5],
    ],
  },
  scaled_linear: {
    betaStart: 0.00085,
    betaEnd: 0.012,
    rows: [
      [0, 0.00085, 0.99915],
      [1, 0.0008546986554056862, 0.9982960278384514],
      [499, 0.004803792980550717, 0.27766965045646763],
      [999, 0.012, 0.004660098513077238],
    ],
  },
  cosine: {
    betaStart: 1e-4,
    betaEnd: 0.02,
    rows: [
      [0, 4.128422482196914e-5, 0.999958715775178],
      [1, 4.614175273665033e-5, 0.9999125759273678],
      [499, 0.0031458862304780677, 0.4938435904406382],
      [999, 0.999, 2.4287669070348567e-9],
    ],
  },
} as const

describe('beta schedules', () => {
  for (const [name, golden] of Object.entries(GOLDEN)) {
    it(`${name}: betas and cumulative alphas match numpy at t = 0, 1, 499, 999`, () => {
      const schedule = makeSchedule({
        schedule: name as keyof typeof GOLDEN,
        timesteps: 1000,
        betaStart: golden.betaStart,
        betaEnd: golden.betaEnd,
      })
      for (const [t, beta, alphaBar] of golden.rows) {
        expect(schedule.betas[t]).toBeCloseTo(beta, 14)
        expect((schedule.alphasCumprod[t] as number) / alphaBar).toBeCloseTo(1, 10)
      }
    })
  }

  it('cumulative alphas equal exp(sum log(1 - beta)) and decrease strictly', () => {
    const schedule = makeSchedule({ schedule: 'linear', timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 })
    let logSum = 0
    for (let t = 0; t < 1000; t++) {
      logSum += Math.log1p(-(schedule.betas[t] as number))
      expect(schedule.alphasCumprod[t]).toBeCloseTo(Math.exp(logSum), 12)
      if (t > 0) expect(schedule.alphasCumprod[t]).toBeLessThan(schedule.alphasCumprod[t - 1] as number)
    }
  })

  it('is a pure function: the same arguments give the same numbers', () => {
    expect(betaSchedule('cosine', 50, 0, 0)).toEqual(betaSchedule('cosine', 50, 0, 0))
  })

  it('DDIM timesteps use trailing spacing: start at T-1, strictly decreasing, evenly spread', () => {
    expect(ddimTimesteps(1000, 4)).toEqual([999, 749, 499, 249])
    expect(ddimTimesteps(1000, 1)).toEqual([999])
    expect(ddimTimesteps(10, 10)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    expect(() => ddimTimesteps(10, 11)).toThrow(RangeError)
  })
})

describe('diffusion process maths', () => {
  beforeAll(async () => {
    await initBackend('auto')
  })
  const schedule = makeSchedule(loadConfig('tiny').diffusion)
  // A fixed tensor: 2 samples of 1x2x1.
  const x0Values = [0.5, -1.0, 0.25, 0.75]
  const epsValues = [1.0, 0.3, -0.7, 0.2]
  const timesteps = [10, 700]

  it('qSample is sqrt(abar) x0 + sqrt(1 - abar) eps per sample', () => {
    const got = tf.tidy(() =>
      qSample(
        schedule,
        tf.tensor4d(x0Values, [2, 1, 2, 1]),
        timesteps,
        tf.tensor4d(epsValues, [2, 1, 2, 1]),
      ).arraySync(),
    )
    const flat = (got as number[][][][]).flat(3)
    x0Values.forEach((x, i) => {
      const abar = schedule.alphasCumprod[timesteps[Math.floor(i / 2)] as number] as number
      expect(flat[i]).toBeCloseTo(Math.sqrt(abar) * x + Math.sqrt(1 - abar) * (epsValues[i] as number), 5)
    })
  })

  it('one DDIM step from an exact epsilon lands exactly on q(x_prev | x0) with the same noise', () => {
    const t = 600
    const tPrev = 400
    const abar = schedule.alphasCumprod[t] as number
    const abarPrev = schedule.alphasCumprod[tPrev] as number
    const result = tf.tidy(() => {
      const x0 = tf.tensor4d(x0Values, [2, 1, 2, 1])
      const eps = tf.tensor4d(epsValues, [2, 1, 2, 1])
      const xt = qSample(schedule, x0, [t, t], eps)
      const recovered = epsilonAndX0('epsilon', eps, xt, abar)
      return { x0: recovered.x0.dataSync(), next: ddimStep(recovered.x0, recovered.eps, abarPrev).dataSync() }
    })
    x0Values.forEach((x, i) => {
      expect(result.x0[i]).toBeCloseTo(x, 4)
      // Closed form: x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps.
      expect(result.next[i]).toBeCloseTo(
        Math.sqrt(abarPrev) * x + Math.sqrt(1 - abarPrev) * (epsValues[i] as number),
        4,
      )
    })
  })

  it('v-prediction: the v target converts back to the same epsilon and x0', () => {
    const t = 300
    const abar = schedule.alphasCumprod[t] as number
    const out = tf.tidy(() => {
      const x0 = tf.tensor4d(x0Values, [2, 1, 2, 1])
      const eps = tf.tensor4d(epsValues, [2, 1, 2, 1])
      const xt = qSample(schedule, x0, [t, t], eps)
      const v = predictionTarget('v', schedule, x0, [t, t], eps)
      const back = epsilonAndX0('v', v, xt, abar)
      return { v: v.dataSync(), eps: back.eps.dataSync(), x0: back.x0.dataSync() }
    })
    x0Values.forEach((x, i) => {
      expect(out.v[i]).toBeCloseTo(Math.sqrt(abar) * (epsValues[i] as number) - Math.sqrt(1 - abar) * x, 5)
      expect(out.eps[i]).toBeCloseTo(epsValues[i] as number, 4)
      expect(out.x0[i]).toBeCloseTo(x, 4)
    })
  })

  it('Min-SNR-5 weights: min(SNR, 5)/SNR for epsilon, min(SNR, 5)/(SNR + 1) for v; uniform is all ones', () => {
    const base = loadConfig('tiny')
    const snr = (t: number) =>
      (schedule.alphasCumprod[t] as number) / (1 - (schedule.alphasCumprod[t] as number))
    // t = 10: nearly clean (SNR ~ 2000), down-weighted; t = 700: noisy (SNR < 1), full weight for epsilon.
    expect(snr(10)).toBeGreaterThan(5)
    expect(snr(700)).toBeLessThan(5)
    const eps = lossWeights(
      { ...base, diffusion: { ...base.diffusion, lossWeighting: 'min_snr', prediction: 'epsilon' } },
      schedule,
      [10, 700],
    )
    expect(eps[0]).toBeCloseTo(5 / snr(10), 10)
    expect(eps[1]).toBe(1)
    const v = lossWeights(
      { ...base, diffusion: { ...base.diffusion, lossWeighting: 'min_snr', prediction: 'v' } },
      schedule,
      [10, 700],
    )
    expect(v[0]).toBeCloseTo(5 / (snr(10) + 1), 10)
    expect(v[1]).toBeCloseTo(snr(700) / (snr(700) + 1), 10)
    expect(
      lossWeights(
        { ...base, diffusion: { ...base.diffusion, lossWeighting: 'uniform' } },
        schedule,
        [10, 700],
      ),
    ).toEqual([1, 1])
  })
})
