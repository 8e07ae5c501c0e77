// Defaults and limits of `coop simulate`. Each value carries the reason it has that size.
import { DEFAULT_OUTER_LR, DEFAULT_OUTER_MOMENTUM } from '../round/constants.ts'

/** Dirichlet draws tried before a split that leaves some peer empty is declared impossible; with alpha >= 0.05 and a few peers one of the first draws succeeds. */
export const DIRICHLET_MAX_ATTEMPTS = 1000
/** Upper bound on simulated peers: each holds a model, Adam moments and EMA in one process; 256 emoji32 peers already need ~6 GB. */
export const MAX_SIM_PEERS = 256
/** Upper bound on rounds, so a typo cannot start a run of days. */
export const MAX_ROUNDS = 100_000
/** Upper bound on inner steps per round (DiLoCo's largest setting is 2,000). */
export const MAX_INNER_STEPS = 100_000
/** Default peers: four, as the demo. */
export const DEFAULT_SIM_PEERS = 4
/** Default rounds: enough to see the curves separate on tiny. */
export const DEFAULT_ROUNDS = 5
/** Default inner steps per round: small enough for a CPU, large enough that communication is rare. */
export const DEFAULT_SIM_INNER_STEPS = 20
/** Outer optimiser defaults are the round engine's (DiLoCo's), so the simulator studies what nodes run. */
export const DEFAULT_SIM_OUTER_LR = DEFAULT_OUTER_LR
export const DEFAULT_SIM_OUTER_MOMENTUM = DEFAULT_OUTER_MOMENTUM
/** Every peer keeps at least one batch worth of images; fewer and its trainer would repeat one image per batch. */
export const MIN_ITEMS_PER_PEER = 4
/** Seed of the held-out evaluation set (independent of --seed, so runs with different seeds are scored on the same images). */
export const EVAL_SPLIT_SEED = 0xe7a1
/** results.json schema version (2: settings record the eval items, backend and quality settings; quality per scored round). */
export const RESULTS_VERSION = 2
/** Class-conditional samples per class when `coop simulate` scores quality: the demo's 16, enough for a stable class accuracy (144 samples on Twemoji). */
export const DEFAULT_QUALITY_PER_CLASS = 16
/** DDIM steps of the quality samples: the demo grids' 20. */
export const DEFAULT_QUALITY_SAMPLING_STEPS = 20
/** Sampling seed of the quality samples: fixed, so runs with different training seeds are scored on the same noise. */
export const DEFAULT_QUALITY_SEED = 7
