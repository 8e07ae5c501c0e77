// Byzantine peers for robustness studies: what a hostile trainer can send while speaking the
// protocol correctly. The attack replaces the honest pseudo-gradient before compression.
// - signflip: -delta (pushes the model up the loss surface; Damaskinos et al. 2018);
// - scale:<s>: s * delta (a boosted update, as in model-replacement attacks; Bagdasaryan et al. 2020);
// - noise:<sigma>: pure Gaussian noise N(0, sigma^2) in place of the delta (the "Gaussian attack").
import type { NamedTensor } from '../../protocol/compression.ts'
import { Rng } from '../../trainer/rng.ts'
import { SimulateError } from './errors.ts'

export type Attack =
  { kind: 'signflip' } | { kind: 'scale'; factor: number } | { kind: 'noise'; sigma: number }

export interface ByzantineSpec {
  /** The first `count` peers (peer-1 .. peer-count) attack in every round. */
  count: number
  attack: Attack
}

const NUMBER = '(-?[0-9]*\\.?[0-9]+(?:e-?[0-9]+)?)'

/** Parses `<k>:signflip`, `<k>:scale:<s>` or `<k>:noise:<sigma>`. */
export function parseByzantine(text: string, peers: number): ByzantineSpec {
  const match = new RegExp(`^([0-9]+):(signflip|scale:${NUMBER}|noise:${NUMBER})$`).exec(text)
  if (match === null)
    throw new SimulateError(
      'BAD_OPTION',
      `unknown --byzantine ${JSON.stringify(text)}: expected <k>:signflip, <k>:scale:<s> or <k>:noise:<sigma>`,
    )
  const count = Number(match[1])
  if (!(count >= 1 && count < peers))
    throw new SimulateError('BAD_OPTION', `--byzantine needs 1 <= k < peers (${peers}), got ${count}`)
  const spec = match[2] as string
  let attack: Attack
  if (spec === 'signflip') attack = { kind: 'signflip' }
  else if (spec.startsWith('scale:')) {
    const factor = Number(match[3])
    if (!Number.isFinite(factor)) throw new SimulateError('BAD_OPTION', 'scale factor must be finite')
    attack = { kind: 'scale', factor }
  } else {
    const sigma = Number(match[4])
    if (!(Number.isFinite(sigma) && sigma > 0))
      throw new SimulateError('BAD_OPTION', 'noise sigma must be positive')
    attack = { kind: 'noise', sigma }
  }
  return { count, attack }
}

export function formatByzantine(spec: ByzantineSpec): string {
  const { attack } = spec
  const what =
    attack.kind === 'signflip'
      ? 'signflip'
      : attack.kind === 'scale'
        ? `scale:${attack.factor}`
        : `noise:${attack.sigma}`
  return `${spec.count}:${what}`
}

/** The delta a Byzantine peer sends instead of `delta`; `seed` makes the noise attack reproducible. */
export function applyAttack(delta: NamedTensor[], attack: Attack, seed: number): NamedTensor[] {
  const rng = new Rng(seed)
  return delta.map((tensor) => {
    const data = new Float32Array(tensor.data.length)
    for (let i = 0; i < data.length; i++) {
      const v = tensor.data[i] as number
      data[i] =
        attack.kind === 'signflip'
          ? -v
          : attack.kind === 'scale'
            ? v * attack.factor
            : attack.sigma * rng.normal()
    }
    return { name: tensor.name, shape: [...tensor.shape], data }
  })
}
