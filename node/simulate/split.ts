// How the simulator deals a labelled dataset out to peers: the three standard regimes of the
// federated-learning literature.
// - iid: a seeded shuffle dealt round-robin; every peer sees every class in about equal shares.
// - category: whole classes per peer (pathological non-IID, as in McMahan et al. 2017 and the demo).
// - dirichlet(alpha): for each class, the shares of its items across peers are drawn from a
//   symmetric Dirichlet(alpha) (Hsu, Qi & Brown 2019, arXiv 1909.06335). Small alpha gives each
//   peer few classes; large alpha approaches iid.
// Deterministic: the same labels, peers, mode and seed give the same lists on every machine.
import { Rng } from '../../trainer/rng.ts'
import { DIRICHLET_MAX_ATTEMPTS } from './constants.ts'
import { SimulateError } from './errors.ts'

export type SplitMode = 'iid' | 'category' | { dirichlet: number }

/** Parses `iid`, `category` or `dirichlet:<alpha>`. */
export function parseSplit(text: string): SplitMode {
  if (text === 'iid' || text === 'category') return text
  const match = /^dirichlet:([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)$/.exec(text)
  if (match !== null) {
    const alpha = Number(match[1])
    if (alpha > 0 && Number.isFinite(alpha)) return { dirichlet: alpha }
  }
  throw new SimulateError(
    'BAD_OPTION',
    `unknown split ${JSON.stringify(text)}: expected iid, category or dirichlet:<alpha > 0>`,
  )
}

export function formatSplit(mode: SplitMode): string {
  return typeof mode === 'string' ? mode : `dirichlet:${mode.dirichlet}`
}

/**
 * Gamma(shape, 1) by Marsaglia & Tsang (2000); for shape < 1, Gamma(shape + 1) * U^(1/shape)
 * (their boosting trick), which keeps small alphas exact.
 */
export function sampleGamma(shape: number, rng: Rng): number {
  if (shape < 1) {
    const u = (rng.nextUint32() + 1) / 4294967297
    return sampleGamma(shape + 1, rng) * u ** (1 / shape)
  }
  const d = shape - 1 / 3
  const c = 1 / Math.sqrt(9 * d)
  for (;;) {
    const x = rng.normal()
    const v = (1 + c * x) ** 3
    if (v <= 0) continue
    const u = (rng.nextUint32() + 1) / 4294967297
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v
  }
}

/** One draw from the symmetric Dirichlet(alpha) over `k` outcomes. */
export function sampleDirichlet(alpha: number, k: number, rng: Rng): number[] {
  const draws = Array.from({ length: k }, () => sampleGamma(alpha, rng))
  const total = draws.reduce((a, b) => a + b, 0)
  // All draws can underflow to 0 for tiny alpha: then one outcome takes everything, as the limit does.
  if (!(total > 0)) return draws.map((_, i) => (i === rng.int(k) ? 1 : 0))
  return draws.map((g) => g / total)
}

function groupByLabel(labels: readonly number[]): Map<number, number[]> {
  const byLabel = new Map<number, number[]>()
  labels.forEach((label, index) => {
    const list = byLabel.get(label) ?? []
    list.push(index)
    byLabel.set(label, list)
  })
  return new Map([...byLabel.entries()].sort((a, b) => a[0] - b[0]))
}

function splitIid(count: number, peers: number, rng: Rng): number[][] {
  const out: number[][] = Array.from({ length: peers }, () => [])
  rng.permutation(count).forEach((index, position) => (out[position % peers] as number[]).push(index))
  return out
}

function splitCategory(labels: readonly number[], peers: number): number[][] {
  const byLabel = groupByLabel(labels)
  if (byLabel.size < peers)
    throw new SimulateError(
      'SPLIT_IMPOSSIBLE',
      `a category split needs at least one class per peer: ${byLabel.size} classes for ${peers} peers`,
    )
  const out: number[][] = Array.from({ length: peers }, () => [])
  // Largest class first to the peer holding fewest items: balanced sizes, disjoint classes.
  const classes = [...byLabel.entries()].sort((a, b) => b[1].length - a[1].length || a[0] - b[0])
  for (const [, indices] of classes) {
    let target = 0
    for (let p = 1; p < peers; p++)
      if ((out[p] as number[]).length < (out[target] as number[]).length) target = p
    ;(out[target] as number[]).push(...indices)
  }
  return out
}

function splitDirichletOnce(
  byLabel: Map<number, number[]>,
  peers: number,
  alpha: number,
  rng: Rng,
): number[][] {
  const out: number[][] = Array.from({ length: peers }, () => [])
  for (const indices of byLabel.values()) {
    const shuffled = rng.permutation(indices.length).map((k) => indices[k] as number)
    const shares = sampleDirichlet(alpha, peers, rng)
    // Cumulative rounding: the counts sum exactly to the class size.
    let cumulative = 0
    let start = 0
    for (let p = 0; p < peers; p++) {
      cumulative += shares[p] as number
      const end =
        p === peers - 1
          ? shuffled.length
          : Math.min(shuffled.length, Math.round(cumulative * shuffled.length))
      ;(out[p] as number[]).push(...shuffled.slice(start, end))
      start = Math.max(start, end)
    }
  }
  return out
}

/**
 * Deals item indices (positions in `labels`) to `peers` peers; each list is sorted ascending.
 * Every peer gets at least `minPerPeer` items (Dirichlet draws are repeated, deterministically,
 * until that holds; SPLIT_IMPOSSIBLE if it never does).
 */
export function splitDataset(
  labels: readonly number[],
  peers: number,
  mode: SplitMode,
  seed: number,
  minPerPeer = 1,
): number[][] {
  if (!Number.isInteger(peers) || peers < 1)
    throw new SimulateError('BAD_OPTION', `peers must be a positive integer, got ${peers}`)
  if (labels.length < peers * minPerPeer)
    throw new SimulateError(
      'SPLIT_IMPOSSIBLE',
      `${labels.length} items cannot give ${peers} peers ${minPerPeer} each`,
    )
  const rng = new Rng(seed)
  let out: number[][]
  if (mode === 'iid') out = splitIid(labels.length, peers, rng)
  else if (mode === 'category') out = splitCategory(labels, peers)
  else {
    const alpha = mode.dirichlet
    if (!(alpha > 0 && Number.isFinite(alpha)))
      throw new SimulateError('BAD_OPTION', `Dirichlet alpha must be positive, got ${alpha}`)
    const byLabel = groupByLabel(labels)
    let attempt = 0
    for (;;) {
      out = splitDirichletOnce(byLabel, peers, alpha, rng)
      if (out.every((list) => list.length >= minPerPeer)) break
      if (++attempt >= DIRICHLET_MAX_ATTEMPTS)
        throw new SimulateError(
          'SPLIT_IMPOSSIBLE',
          `no Dirichlet(${alpha}) draw in ${DIRICHLET_MAX_ATTEMPTS} gave every peer ${minPerPeer} items; raise alpha or lower peers`,
        )
    }
  }
  for (const list of out) {
    list.sort((a, b) => a - b)
    if (list.length < minPerPeer)
      throw new SimulateError(
        'SPLIT_IMPOSSIBLE',
        `a peer would get ${list.length} items, fewer than ${minPerPeer}`,
      )
  }
  return out
}
