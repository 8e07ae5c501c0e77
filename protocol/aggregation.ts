// Aggregation of pseudo-gradients and the outer optimiser of a DiLoCo round.
//
// Every verifying peer recomputes a published checkpoint from the contributions it lists and
// compares bytes, so these functions are bit-exactly reproducible on any machine:
// - contributions are processed in ascending digest order (never arrival or object-key order);
// - tensors are processed in ascending name order;
// - sums run in float64 in that fixed order and each output element is rounded to float32 once;
// - only IEEE-754 +, -, *, / and sqrt are used (JavaScript has no fused multiply-add, so these
//   give identical doubles everywhere); no randomness.
import type { NamedTensor } from './compression.ts'
import { ProtocolError } from './errors.ts'

export type { NamedTensor }

export type Aggregator =
  | { kind: 'mean' }
  | { kind: 'median' }
  | { kind: 'trimmed'; fraction: number }
  | { kind: 'clip'; norm: number }

export interface Contribution {
  /** The delta payload's digest: the fixed processing order, and the identity a provenance lists. */
  digest: string
  /** Training samples behind the delta: its weight in the mean and in norm clipping. */
  samples: number
  delta: NamedTensor[]
}

export interface AggregationOptions {
  /**
   * The most samples one contribution may weigh (the charter's inner steps x batch size of the
   * phase): a larger self-reported count weighs as this, so no contributor sets the mean alone.
   */
  maxSamples: number
}

export interface OuterOptions {
  lr: number
  momentum: number
}

/** Trimmed mean may trim at most this fraction from each side: at 0.5 nothing would be left. */
export const TRIM_FRACTION_MAX = 0.5

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function checkAggregator(aggregator: Aggregator): void {
  switch (aggregator.kind) {
    case 'mean':
    case 'median':
      return
    case 'trimmed':
      if (!(
        Number.isFinite(aggregator.fraction) &&
        aggregator.fraction >= 0 &&
        aggregator.fraction < TRIM_FRACTION_MAX
      ))
        throw new ProtocolError(
          'SCHEMA',
          `trim fraction must be in [0, ${TRIM_FRACTION_MAX}), got ${aggregator.fraction}`,
        )
      return
    case 'clip':
      if (!(Number.isFinite(aggregator.norm) && aggregator.norm > 0))
        throw new ProtocolError('SCHEMA', `clip norm must be positive, got ${aggregator.norm}`)
      return
    default:
      throw new ProtocolError(
        'UNKNOWN_TYPE',
        `unknown aggregator ${JSON.stringify((aggregator as { kind: unknown }).kind)}`,
      )
  }
}

const NUMBER = '([0-9]*\\.?[0-9]+(?:e-?[0-9]+)?)'

/** Parses the CLI/charter spelling `mean`, `median`, `trimmed:<fraction>` or `clip:<norm>`. */
export function parseAggregator(text: string): Aggregator {
  if (text === 'mean' || text === 'median') return { kind: text }
  const trimmed = new RegExp(`^trimmed:${NUMBER}$`).exec(text)
  const clip = new RegExp(`^clip:${NUMBER}$`).exec(text)
  let aggregator: Aggregator | undefined
  if (trimmed !== null) aggregator = { kind: 'trimmed', fraction: Number(trimmed[1]) }
  if (clip !== null) aggregator = { kind: 'clip', norm: Number(clip[1]) }
  if (aggregator === undefined)
    throw new ProtocolError(
      'UNKNOWN_TYPE',
      `unknown aggregator ${JSON.stringify(text)}: expected mean, median, trimmed:<fraction> or clip:<norm>`,
    )
  checkAggregator(aggregator)
  return aggregator
}

/** The spelling `parseAggregator` reads. */
export function formatAggregator(aggregator: Aggregator): string {
  switch (aggregator.kind) {
    case 'trimmed':
      return `trimmed:${aggregator.fraction}`
    case 'clip':
      return `clip:${aggregator.norm}`
    default:
      return aggregator.kind
  }
}

function sortedTensors(tensors: NamedTensor[], what: string): NamedTensor[] {
  const sorted = [...tensors].sort((a, b) => compareCodeUnits(a.name, b.name))
  for (let t = 0; t < sorted.length; t++) {
    const tensor = sorted[t] as NamedTensor
    if (!(tensor.data instanceof Float32Array))
      throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: data must be a Float32Array`)
    let count = 1
    for (const dim of tensor.shape) count *= dim
    if (count !== tensor.data.length)
      throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: data does not match its shape`)
    if (t > 0 && (sorted[t - 1] as NamedTensor).name === tensor.name)
      throw new ProtocolError('SCHEMA', `${what}: tensor ${tensor.name} twice`)
    const data = tensor.data
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i] as number))
        throw new ProtocolError('SCHEMA', `${what} ${tensor.name}: non-finite value`)
  }
  return sorted
}

function sameLayout(a: NamedTensor[], b: NamedTensor[], what: string): void {
  if (a.length !== b.length)
    throw new ProtocolError('SCHEMA', `${what}: ${b.length} tensors, expected ${a.length}`)
  for (let t = 0; t < a.length; t++) {
    const x = a[t] as NamedTensor
    const y = b[t] as NamedTensor
    if (x.name !== y.name || x.shape.length !== y.shape.length || x.shape.some((d, i) => d !== y.shape[i]))
      throw new ProtocolError(
        'SCHEMA',
        `${what}: tensor ${y.name} [${y.shape.join(',')}] does not match ${x.name} [${x.shape.join(',')}]`,
      )
  }
}

/** Global L2 norm of a delta, in float64, tensors in name order. */
export function deltaNorm(delta: NamedTensor[]): number {
  let sum = 0
  for (const tensor of [...delta].sort((a, b) => compareCodeUnits(a.name, b.name))) {
    const data = tensor.data
    for (let i = 0; i < data.length; i++) sum += (data[i] as number) * (data[i] as number)
  }
  return Math.sqrt(sum)
}

/** Ascending sort of a small float64 buffer (insertion sort: peers per round are few). */
function sortSmall(values: Float64Array): void {
  for (let i = 1; i < values.length; i++) {
    const v = values[i] as number
    let j = i - 1
    while (j >= 0 && (values[j] as number) > v) {
      values[j + 1] = values[j] as number
      j--
    }
    values[j + 1] = v
  }
}

/** How many values trimmed mean drops from each side for `count` contributions. */
export function trimCount(count: number, fraction: number): number {
  return Math.floor(fraction * count)
}

/**
 * Combines the contributions' deltas into one delta, sorted by tensor name.
 * - mean: Σ wᵢ·Δᵢ / Σ wᵢ, wᵢ = min(samplesᵢ, maxSamples): the weight is capped, so an inflated
 *   self-reported count buys no more than an honest full round.
 * - median: coordinate-wise median, unweighted (a weight would let one peer claim the median by
 *   inflating its sample count); the mean of the two middle values for an even count.
 * - trimmed: coordinate-wise, drop the ⌊f·n⌋ smallest and largest values, unweighted mean of the rest.
 * - clip: scale each Δᵢ by min(1, norm/‖Δᵢ‖₂) (global norm over all tensors), then the weighted
 *   mean (same capped weights).
 * Throws ProtocolError SCHEMA for no contributions, duplicate digests, non-positive samples,
 * tensors that differ in names or shapes, or non-finite values.
 */
export function aggregateDeltas(
  contributions: Contribution[],
  aggregator: Aggregator,
  options: AggregationOptions,
): NamedTensor[] {
  checkAggregator(aggregator)
  if (!(Number.isSafeInteger(options.maxSamples) && options.maxSamples > 0))
    throw new ProtocolError('SCHEMA', `maxSamples must be a positive integer, got ${options.maxSamples}`)
  if (contributions.length === 0) throw new ProtocolError('SCHEMA', 'no contributions to aggregate')
  const ordered = [...contributions].sort((a, b) => compareCodeUnits(a.digest, b.digest))
  for (let c = 0; c < ordered.length; c++) {
    const contribution = ordered[c] as Contribution
    if (typeof contribution.digest !== 'string' || contribution.digest.length === 0)
      throw new ProtocolError('SCHEMA', 'contribution without a digest')
    if (c > 0 && (ordered[c - 1] as Contribution).digest === contribution.digest)
      throw new ProtocolError('SCHEMA', `contribution ${contribution.digest} listed twice`)
    if (!(Number.isFinite(contribution.samples) && contribution.samples > 0))
      throw new ProtocolError('SCHEMA', `contribution ${contribution.digest}: samples must be positive`)
  }
  const deltas = ordered.map((c) => sortedTensors(c.delta, `contribution ${c.digest}`))
  const layout = deltas[0] as NamedTensor[]
  for (let c = 1; c < deltas.length; c++)
    sameLayout(layout, deltas[c] as NamedTensor[], `contribution ${(ordered[c] as Contribution).digest}`)

  const n = ordered.length
  const weights = new Float64Array(n)
  for (let c = 0; c < n; c++) weights[c] = Math.min((ordered[c] as Contribution).samples, options.maxSamples)
  // Σ of the capped weights, before clipping scales them: clipping shrinks a delta, not the total.
  let totalSamples = 0
  for (let c = 0; c < n; c++) totalSamples += weights[c] as number
  if (aggregator.kind === 'clip') {
    for (let c = 0; c < n; c++) {
      const norm = deltaNorm(deltas[c] as NamedTensor[])
      // The factor multiplies the weight, so the clipped delta is never materialised in float32.
      if (norm > aggregator.norm) weights[c] = (weights[c] as number) * (aggregator.norm / norm)
    }
  }
  const trim = aggregator.kind === 'trimmed' ? trimCount(n, aggregator.fraction) : 0
  const column = new Float64Array(n)

  const weighted = aggregator.kind === 'mean' || aggregator.kind === 'clip'
  return layout.map((tensor, t) => {
    const out = new Float32Array(tensor.data.length)
    // Each contribution's array for this tensor, looked up once rather than per element.
    const data = deltas.map((d) => (d[t] as NamedTensor).data)
    if (weighted) {
      // The same sum in the same order (contributions by digest, float64) as element by element.
      const sums = new Float64Array(out.length)
      for (let c = 0; c < n; c++) {
        const w = weights[c] as number
        const values = data[c] as Float32Array
        for (let i = 0; i < sums.length; i++) sums[i] = (sums[i] as number) + w * (values[i] as number)
      }
      for (let i = 0; i < out.length; i++) out[i] = (sums[i] as number) / totalSamples
      return { name: tensor.name, shape: [...tensor.shape], data: out }
    }
    for (let i = 0; i < out.length; i++) {
      for (let c = 0; c < n; c++) column[c] = (data[c] as Float32Array)[i] as number
      sortSmall(column)
      if (aggregator.kind === 'median') {
        out[i] =
          n % 2 === 1
            ? (column[(n - 1) / 2] as number)
            : ((column[n / 2 - 1] as number) + (column[n / 2] as number)) / 2
      } else {
        let sum = 0
        for (let c = trim; c < n - trim; c++) sum += column[c] as number
        out[i] = sum / (n - 2 * trim)
      }
    }
    return { name: tensor.name, shape: [...tensor.shape], data: out }
  })
}

/**
 * One outer step of DiLoCo (arXiv 2311.08105): SGD with Nesterov momentum on the aggregated
 * pseudo-gradient g (round-start weights minus local weights), as PyTorch's SGD(nesterov=True)
 * with dampening 0, per element, in float64, each result rounded to float32 once:
 *   v' = μ·v + g
 *   θ' = θ − lr·(g + μ·v')
 * (v' in float64 in the second line; v = 0 on the first round). Returns new tensors, sorted by
 * name; the inputs are not modified.
 */
export function outerStep(
  weights: NamedTensor[],
  momentum: NamedTensor[] | undefined,
  aggregatedDelta: NamedTensor[],
  options: OuterOptions,
): { weights: NamedTensor[]; momentum: NamedTensor[] } {
  const { lr, momentum: mu } = options
  if (!(Number.isFinite(lr) && lr > 0))
    throw new ProtocolError('SCHEMA', `outer learning rate must be positive, got ${lr}`)
  if (!(Number.isFinite(mu) && mu >= 0 && mu < 1))
    throw new ProtocolError('SCHEMA', `outer momentum must be in [0, 1), got ${mu}`)
  const theta = sortedTensors(weights, 'weights')
  const g = sortedTensors(aggregatedDelta, 'aggregated delta')
  sameLayout(theta, g, 'aggregated delta')
  const v = momentum === undefined ? undefined : sortedTensors(momentum, 'momentum')
  if (v !== undefined) sameLayout(theta, v, 'momentum')
  const nextWeights: NamedTensor[] = []
  const nextMomentum: NamedTensor[] = []
  for (let t = 0; t < theta.length; t++) {
    const w = (theta[t] as NamedTensor).data
    const grad = (g[t] as NamedTensor).data
    const previous = v === undefined ? undefined : (v[t] as NamedTensor).data
    const outW = new Float32Array(w.length)
    const outV = new Float32Array(w.length)
    for (let i = 0; i < w.length; i++) {
      const gi = grad[i] as number
      const vi = mu * (previous === undefined ? 0 : (previous[i] as number)) + gi
      outV[i] = vi
      outW[i] = (w[i] as number) - lr * (gi + mu * vi)
    }
    const { name, shape } = theta[t] as NamedTensor
    nextWeights.push({ name, shape: [...shape], data: outW })
    nextMomentum.push({ name, shape: [...shape], data: outV })
  }
  return { weights: nextWeights, momentum: nextMomentum }
}
