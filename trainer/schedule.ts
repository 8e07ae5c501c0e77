// Named beta schedules as pure functions (no tfjs): the noise level at each of T steps.
// Computed in float64; the diffusion process reads alphasCumprod.
import type { DiffusionConfig } from '../configs/index.ts'

export type ScheduleName = DiffusionConfig['schedule']

export interface NoiseSchedule {
  name: ScheduleName
  timesteps: number
  betas: Float64Array
  alphas: Float64Array
  /** alphaBar_t = prod_{s<=t} (1 - beta_s): the signal fraction of x_t. */
  alphasCumprod: Float64Array
}

/** Offset of the cosine schedule (Nichol & Dhariwal 2021, eq. 17): keeps beta_0 from being vanishingly small. */
const COSINE_OFFSET = 0.008
/** Upper clip of cosine betas (same paper): avoids a singularity at t = T. */
const COSINE_MAX_BETA = 0.999

function linspace(start: number, end: number, count: number): Float64Array {
  const out = new Float64Array(count)
  for (let i = 0; i < count; i++) out[i] = count === 1 ? start : start + ((end - start) * i) / (count - 1)
  return out
}

/**
 * Betas for a named schedule:
 * - `linear`: DDPM (Ho et al. 2020), betaStart..betaEnd evenly spaced;
 * - `scaled_linear`: Stable Diffusion's, evenly spaced in sqrt(beta);
 * - `cosine`: Nichol & Dhariwal's alphaBar(t) = cos^2(((t/T + s) / (1 + s)) pi/2); betaStart/betaEnd unused.
 */
export function betaSchedule(
  name: ScheduleName,
  timesteps: number,
  betaStart: number,
  betaEnd: number,
): Float64Array {
  if (!Number.isInteger(timesteps) || timesteps < 1)
    throw new RangeError(`timesteps must be a positive integer, got ${timesteps}`)
  switch (name) {
    case 'linear':
      return linspace(betaStart, betaEnd, timesteps)
    case 'scaled_linear':
      return linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), timesteps).map((b) => b * b)
    case 'cosine': {
      const alphaBar = (t: number) =>
        Math.cos(((t / timesteps + COSINE_OFFSET) / (1 + COSINE_OFFSET)) * (Math.PI / 2)) ** 2
      const betas = new Float64Array(timesteps)
      for (let i = 0; i < timesteps; i++)
        betas[i] = Math.min(1 - alphaBar(i + 1) / alphaBar(i), COSINE_MAX_BETA)
      return betas
    }
  }
}

export function makeSchedule(
  config: Pick<DiffusionConfig, 'schedule' | 'timesteps' | 'betaStart' | 'betaEnd'>,
): NoiseSchedule {
  const betas = betaSchedule(config.schedule, config.timesteps, config.betaStart, config.betaEnd)
  const alphas = betas.map((b) => 1 - b)
  const alphasCumprod = new Float64Array(alphas.length)
  let product = 1
  for (let i = 0; i < alphas.length; i++) {
    product *= alphas[i] as number
    alphasCumprod[i] = product
  }
  return { name: config.schedule, timesteps: config.timesteps, betas, alphas, alphasCumprod }
}

/**
 * DDIM timesteps, highest first, with "trailing" spacing (Lin et al. 2023): the first step is
 * t = T-1, so sampling starts from pure noise as training saw it.
 */
export function ddimTimesteps(totalTimesteps: number, samplingSteps: number): number[] {
  if (!Number.isInteger(samplingSteps) || samplingSteps < 1 || samplingSteps > totalTimesteps)
    throw new RangeError(`sampling steps must be in [1, ${totalTimesteps}], got ${samplingSteps}`)
  const ratio = totalTimesteps / samplingSteps
  const out: number[] = []
  for (let i = 0; i < samplingSteps; i++) out.push(Math.round(totalTimesteps - i * ratio) - 1)
  return out
}
