// The federated simulator: n peers in one process, no network, but the same trainer session,
// delta codec, aggregator and outer optimiser as real nodes, plus a centralized baseline that
// trains on the union of the peers' data for the same number of sample-steps.
//
// One round, as a node runs it (issue 4, "Round engine"):
//   1. every peer starts from the global weights W and takes H local Adam steps on its own data
//      (its Adam moments persist across rounds, as in DiLoCo);
//   2. its pseudo-gradient W - local is attacked (Byzantine peers only), compressed with error
//      feedback, encoded as safetensors bytes and decoded again, as a publisher would receive it;
//   3. the decoded deltas are aggregated in digest order and the outer Nesterov step updates W;
//   4. the baseline trains on the pooled data for the same sample-steps: 'sequential' takes
//      peers * H steps with the peers' batch size; 'data-parallel' takes H steps with a batch
//      peers times larger, which is what a per-step dense gradient exchange between the same
//      peers would train (the bytes ratio's reference). Either can ride along as a second baseline;
//   5. both models are scored on the same held-out images by the same evaluation session.
import type { Aggregator } from '../../protocol/aggregation.ts'
import { aggregateDeltas, formatAggregator, outerStep } from '../../protocol/aggregation.ts'
import { formatOuterSchedule, outerLrAt, type OuterSchedule } from '../../protocol/outer-schedule.ts'
import type { Codec, NamedTensor } from '../../protocol/compression.ts'
import {
  bytesPerRoundDense,
  compressDelta,
  decompressDelta,
  formatCodec,
  layoutOf,
} from '../../protocol/compression.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { decodeSafetensors, encodeSafetensors } from '../../protocol/safetensors.ts'
import type { CoopConfig } from '../../configs/index.ts'
import type { ImageDataset } from '../../trainer/data.ts'
import { TrainerError } from '../../trainer/errors.ts'
import type { TrainerSession } from '../../trainer/session.ts'
import { createTrainerSession } from '../../trainer/session.ts'
import type { Logger, Phase } from '../../trainer/types.ts'
import { loadQualityModel, scoreModel } from '../../trainer/quality/index.ts'
import type { QualityModel } from '../../trainer/quality/index.ts'
import type { ByzantineSpec } from './byzantine.ts'
import { applyAttack, formatByzantine } from './byzantine.ts'
import {
  EVAL_SPLIT_SEED,
  MAX_INNER_STEPS,
  MAX_SIM_PEERS,
  MAX_ROUNDS,
  MIN_ITEMS_PER_PEER,
  RESULTS_VERSION,
} from './constants.ts'
import { holdOut, subsetDataset } from './data.ts'
import { SimulateError } from './errors.ts'
import type { SplitMode } from './split.ts'
import { formatSplit, splitDataset } from './split.ts'

export type AutoencoderSource =
  /** Weights of a trained autoencoder (e.g. from `--autoencoder <checkpoint>`), with where they came from. */
  | { kind: 'weights'; weights: NamedTensor[]; source: string }
  /** Train one centrally on the training pool for this many steps before the U-Net phase. */
  | { kind: 'train'; steps: number }

export interface SimulationOptions {
  config: CoopConfig
  phase: Phase
  peers: number
  rounds: number
  innerSteps: number
  split: SplitMode
  aggregator: Aggregator
  codec: Codec
  byzantine?: ByzantineSpec
  seed: number
  outerLr: number
  outerMomentum: number
  /** The charter's `rounds.outerSchedule` (protocol/outer-schedule.ts); absent: outerLr every round. */
  outerSchedule?: OuterSchedule
  dataset: ImageDataset
  /** Where the data came from, for results.json (a path or 'twemoji'). */
  dataSource: string
  /** Required for the U-Net phase. */
  autoencoder?: AutoencoderSource
  /** Held-out images that score both models; default config.training.evalBatch. */
  evalItems?: number
  /** Sample quality of both models (U-Net phase, class-conditional configs); absent = eval loss only. */
  quality?: SimulationQualityOptions
  /** The tfjs backend the run uses, recorded in results.json (results are reproducible per backend). */
  backend?: string
  /** The baseline the gap is measured against (default 'sequential'). */
  baseline?: BaselineMode
  /** A second baseline trained and scored alongside, for comparison (absent: none). */
  secondBaseline?: BaselineMode
}

export type BaselineMode = 'sequential' | 'data-parallel'
export const BASELINE_MODES: readonly BaselineMode[] = ['sequential', 'data-parallel']

export interface SimulationQualityOptions {
  /** Class-conditional samples per class for each score. */
  perClass: number
  /** Score every this-many rounds as well as after the last (0: after the last only). */
  every: number
  guidance: number
  /** DDIM steps. */
  steps: number
  /** Sampling seed (the same for both models and every round, so scores differ only by the model). */
  seed: number
}

/** Quality of one model (trainer/quality): see trainer/quality/README.md for how to read it. */
export interface QualityFigures {
  classAccuracy: number
  frechetDistance: number
  precision: number
  recall: number
  samples: number
}

export interface RoundResult {
  round: number
  /** null when the federated model diverged in this round. */
  federatedEvalLoss: number | null
  baselineEvalLoss: number
  /** (federated - baseline) / baseline * 100. */
  gapPercent: number | null
  /** Each peer's mean local training loss over the round's H steps (null: diverged). */
  peerTrainLoss: (number | null)[]
  /** Payload bytes one peer uploaded this round (mean over peers; all peers send the same codec). */
  bytesPerPeer: number
  /** What a per-step dense fp32 exchange would have sent over the same H steps. */
  denseBytesPerPeer: number
  /** denseBytesPerPeer / bytesPerPeer (0 for round 0). */
  bytesRatio: number
  cumulativeBytesPerPeer: number
  cumulativeDenseBytesPerPeer: number
  /** Images processed so far by all peers together, and by the baseline (equal by construction). */
  federatedSampleSteps: number
  baselineSampleSteps: number
  /** Present on the rounds the quality was scored (federated null when it diverged). */
  quality?: { federated: QualityFigures | null; baseline: QualityFigures; secondBaseline?: QualityFigures }
  /** The second baseline's eval loss and the federated gap to it, when one runs. */
  secondBaseline?: { mode: BaselineMode; evalLoss: number; gapPercent: number | null }
}

export interface SimulationResult {
  version: number
  settings: {
    config: string
    phase: Phase
    peers: number
    rounds: number
    innerSteps: number
    split: string
    aggregator: string
    compress: string
    byzantine: string | null
    seed: number
    outerLr: number
    outerMomentum: number
    /** 'constant' or 'warmup:<W>,final:<f>' (protocol/outer-schedule.ts). */
    outerSchedule: string
    batchSize: number
    evalItems: number
    baseline: BaselineMode
    secondBaseline: BaselineMode | null
    backend: string | null
    quality: (SimulationQualityOptions & { classifier: string }) | null
  }
  data: {
    source: string
    items: number
    classes: string[]
    evalItems: number
    /** Items and per-class counts each peer holds. */
    peers: { items: number; classes: Record<string, number> }[]
    baselineItems: number
  }
  autoencoder: { source: string; steps: number | null; evalLoss: number | null } | null
  parameters: number
  rounds: RoundResult[]
  final: {
    federatedEvalLoss: number | null
    baselineEvalLoss: number
    gapPercent: number | null
    bytesRatio: number
    totalBytesPerPeer: number
    totalDenseBytesPerPeer: number
    diverged: { round: number; reason: string } | null
    /** Quality after the last round (null when not scored). */
    quality: {
      federated: QualityFigures | null
      baseline: QualityFigures
      secondBaseline?: QualityFigures
    } | null
    secondBaseline: { mode: BaselineMode; evalLoss: number; gapPercent: number | null } | null
  }
}

export interface SimulationHooks {
  log?: Logger
  /** Called after each round (round 0 is the initial evaluation) with that round's wall time. */
  onRound?: (row: RoundResult, seconds: number) => void
  /** Called for notable steps (autoencoder pretraining), for the CLI to print. */
  onNote?: (message: string) => void
}

function checkOptions(options: SimulationOptions): void {
  const integer = (name: string, value: number, min: number, max: number) => {
    if (!(Number.isInteger(value) && value >= min && value <= max))
      throw new SimulateError('BAD_OPTION', `${name} must be an integer in [${min}, ${max}], got ${value}`)
  }
  integer('peers', options.peers, 1, MAX_SIM_PEERS)
  integer('rounds', options.rounds, 1, MAX_ROUNDS)
  integer('inner steps', options.innerSteps, 1, MAX_INNER_STEPS)
  integer('seed', options.seed, 0, 2 ** 31 - 1)
  if (
    options.byzantine !== undefined &&
    !(options.byzantine.count >= 1 && options.byzantine.count < options.peers)
  )
    throw new SimulateError(
      'BAD_OPTION',
      `Byzantine peers must number between 1 and peers - 1, got ${options.byzantine.count}`,
    )
  if (options.quality !== undefined) {
    if (options.phase !== 'unet')
      throw new SimulateError(
        'BAD_OPTION',
        'sample quality is measured on U-Net samples: use the U-Net phase',
      )
    integer('quality samples per class', options.quality.perClass, 2, 1024)
    integer('quality interval', options.quality.every, 0, MAX_ROUNDS)
    integer('quality sampling steps', options.quality.steps, 1, options.config.diffusion.timesteps)
    integer('quality seed', options.quality.seed, 0, 2 ** 31 - 1)
  }
  if (options.phase === 'unet' && options.autoencoder === undefined)
    throw new SimulateError(
      'BAD_OPTION',
      'the U-Net phase needs an autoencoder (weights or steps to train one)',
    )
}

function parameterCount(weights: NamedTensor[]): number {
  return weights.reduce((total, t) => total + t.data.length, 0)
}

/** Round-start weights minus local weights, per element, rounded to float32 (as a node computes it). */
function pseudoGradient(start: NamedTensor[], local: NamedTensor[]): NamedTensor[] {
  if (start.length !== local.length)
    throw new SimulateError('DIVERGED', 'local weights do not match the global layout')
  return start.map((w, t) => {
    const l = local[t] as NamedTensor
    if (l.name !== w.name || l.data.length !== w.data.length)
      throw new SimulateError('DIVERGED', `local tensor ${l.name} does not match ${w.name}`)
    const data = new Float32Array(w.data.length)
    for (let i = 0; i < data.length; i++) data[i] = (w.data[i] as number) - (l.data[i] as number)
    return { name: w.name, shape: [...w.shape], data }
  })
}

/** Raised inside a round when the federated model's numbers stop being finite. */
class Divergence extends Error {
  override name = 'Divergence'
}

function checkFinite(tensors: NamedTensor[], what: string): void {
  for (const tensor of tensors)
    for (let i = 0; i < tensor.data.length; i++)
      if (!Number.isFinite(tensor.data[i] as number))
        throw new Divergence(`${what} has a non-finite value in ${tensor.name}`)
}

function isDivergence(error: unknown): boolean {
  return error instanceof Divergence || (error instanceof TrainerError && error.code === 'NON_FINITE_LOSS')
}

async function scored(evaluator: TrainerSession, weights: NamedTensor[]): Promise<number> {
  await evaluator.setWeights(weights)
  return evaluator.evalLoss()
}

function classCounts(dataset: ImageDataset, indices: readonly number[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of dataset.classes) counts[name] = 0
  for (const index of indices) {
    const label = (dataset.items[index] as ImageDataset['items'][number]).label
    const name = label < 0 ? '(none)' : (dataset.classes[label] as string)
    counts[name] = (counts[name] ?? 0) + 1
  }
  return counts
}

/** Runs the simulation; deterministic for given options on a given backend. */
export async function runSimulation(
  options: SimulationOptions,
  hooks: SimulationHooks = {},
): Promise<SimulationResult> {
  checkOptions(options)
  const { config, phase, dataset, peers, innerSteps } = options
  const log = hooks.log
  const evalItems = options.evalItems ?? config.training.evalBatch
  const labels = dataset.items.map((item) => item.label)
  if (dataset.items.length < evalItems + peers * MIN_ITEMS_PER_PEER)
    throw new SimulateError(
      'DATA_TOO_SMALL',
      `${dataset.items.length} images cannot hold ${evalItems} for evaluation and ${MIN_ITEMS_PER_PEER} for each of ${peers} peers`,
    )
  for (const name of dataset.classes)
    if (config.classes.length > 0 && !config.classes.includes(name))
      throw new SimulateError(
        'DATA_MISMATCH',
        `data class '${name}' is not one of config ${config.name}'s classes`,
      )

  const { evaluation, pool } = holdOut(labels, evalItems, EVAL_SPLIT_SEED)
  const shares = splitDataset(
    pool.map((i) => labels[i] as number),
    peers,
    options.split,
    options.seed,
    MIN_ITEMS_PER_PEER,
  ).map((positions) => positions.map((p) => pool[p] as number))
  const poolData = subsetDataset(dataset, pool)
  const sessions: TrainerSession[] = []
  let qualityModel: QualityModel | undefined
  try {
    let autoencoder: NamedTensor[] | undefined
    let autoencoderInfo: SimulationResult['autoencoder'] = null
    if (phase === 'unet') {
      const source = options.autoencoder as AutoencoderSource
      if (source.kind === 'weights') {
        autoencoder = source.weights
        autoencoderInfo = { source: source.source, steps: null, evalLoss: null }
      } else {
        hooks.onNote?.(
          `training an autoencoder centrally for ${source.steps} steps on the pooled training images (the U-Net phase needs one)`,
        )
        const trainer = await createTrainerSession({
          config,
          phase: 'autoencoder',
          dataset: poolData,
          seed: options.seed,
          ...(log ? { log } : {}),
        })
        sessions.push(trainer)
        await trainer.trainSteps(source.steps)
        autoencoder = await trainer.getWeights()
        const evaluator = await createTrainerSession({
          config,
          phase: 'autoencoder',
          dataset: subsetDataset(dataset, evaluation),
          seed: options.seed,
        })
        sessions.push(evaluator)
        const evalLoss = await scored(evaluator, autoencoder)
        autoencoderInfo = { source: 'trained centrally by the simulator', steps: source.steps, evalLoss }
        hooks.onNote?.(`autoencoder trained: held-out reconstruction loss ${evalLoss.toPrecision(4)}`)
        trainer.dispose()
        evaluator.dispose()
      }
    }
    const withAutoencoder = autoencoder === undefined ? {} : { autoencoder }
    const baselineConfig = (mode: BaselineMode): CoopConfig =>
      mode === 'sequential'
        ? config
        : phase === 'unet'
          ? { ...config, unet: { ...config.unet, batchSize: config.unet.batchSize * peers } }
          : {
              ...config,
              autoencoder: { ...config.autoencoder, batchSize: config.autoencoder.batchSize * peers },
            }
    const baselineMode = options.baseline ?? 'sequential'
    const baselineSteps = (mode: BaselineMode) => (mode === 'sequential' ? innerSteps * peers : innerSteps)
    const baseline = await createTrainerSession({
      config: baselineConfig(baselineMode),
      phase,
      dataset: poolData,
      seed: options.seed,
      ...withAutoencoder,
      ...(log ? { log } : {}),
    })
    sessions.push(baseline)
    const secondMode = options.secondBaseline
    let second: TrainerSession | undefined
    if (secondMode !== undefined) {
      second = await createTrainerSession({
        config: baselineConfig(secondMode),
        phase,
        dataset: poolData,
        seed: options.seed,
        ...withAutoencoder,
      })
      sessions.push(second)
    }
    const evaluator = await createTrainerSession({
      config,
      phase,
      dataset: subsetDataset(dataset, evaluation),
      seed: options.seed,
      ...withAutoencoder,
    })
    sessions.push(evaluator)
    const peerSessions: TrainerSession[] = []
    for (let k = 0; k < peers; k++) {
      const session = await createTrainerSession({
        config,
        phase,
        dataset: subsetDataset(dataset, shares[k] as number[]),
        seed: options.seed + 1 + k,
        ...withAutoencoder,
      })
      sessions.push(session)
      peerSessions.push(session)
    }

    const qualityOptions = options.quality
    if (qualityOptions !== undefined) qualityModel = await loadQualityModel()
    // Samples of the classes the data holds, so the real reference holds the same classes.
    const qualityClasses = dataset.classes.filter((name) => config.classes.includes(name))
    const scoreQuality = async (unet: NamedTensor[]): Promise<QualityFigures> => {
      const q = await scoreModel(qualityModel as QualityModel, {
        config,
        autoencoder: autoencoder as NamedTensor[],
        unet,
        classes: qualityClasses,
        perClass: (qualityOptions as SimulationQualityOptions).perClass,
        guidance: (qualityOptions as SimulationQualityOptions).guidance,
        steps: (qualityOptions as SimulationQualityOptions).steps,
        seed: (qualityOptions as SimulationQualityOptions).seed,
      })
      return {
        classAccuracy: q.classAccuracy,
        frechetDistance: q.frechetDistance,
        precision: q.precision,
        recall: q.recall,
        samples: q.samples,
      }
    }
    let finalQuality: SimulationResult['final']['quality'] = null

    // Every peer and the baseline start from the same initial weights.
    let weights = await baseline.getWeights()
    await second?.setWeights(weights)
    let momentum: NamedTensor[] | undefined
    const parameters = parameterCount(weights)
    const residuals: (NamedTensor[] | undefined)[] = new Array(peers).fill(undefined)
    const batchSize = phase === 'autoencoder' ? config.autoencoder.batchSize : config.unet.batchSize
    const denseBytesPerPeer = bytesPerRoundDense(parameters, innerSteps)
    const rounds: RoundResult[] = []
    let diverged: SimulationResult['final']['diverged'] = null
    let cumulativeBytes = 0
    let cumulativeDense = 0
    let federatedSampleSteps = 0

    let started = performance.now()
    const initialLoss = await scored(evaluator, weights)
    const initial: RoundResult = {
      round: 0,
      federatedEvalLoss: initialLoss,
      baselineEvalLoss: initialLoss,
      gapPercent: 0,
      peerTrainLoss: new Array(peers).fill(null),
      bytesPerPeer: 0,
      denseBytesPerPeer: 0,
      bytesRatio: 0,
      cumulativeBytesPerPeer: 0,
      cumulativeDenseBytesPerPeer: 0,
      federatedSampleSteps: 0,
      baselineSampleSteps: 0,
    }
    rounds.push(initial)
    hooks.onRound?.(initial, (performance.now() - started) / 1000)

    for (let round = 1; round <= options.rounds; round++) {
      started = performance.now()
      const peerTrainLoss: (number | null)[] = new Array(peers).fill(null)
      let roundBytes = 0
      let federatedLoss: number | null = null
      try {
        const contributions: { digest: string; samples: number; delta: NamedTensor[] }[] = []
        for (let k = 0; k < peers; k++) {
          const session = peerSessions[k] as TrainerSession
          await session.setWeights(weights)
          const { lossMean, samples } = await session.trainSteps(innerSteps)
          peerTrainLoss[k] = lossMean
          federatedSampleSteps += samples
          let delta = pseudoGradient(weights, await session.getWeights())
          if (options.byzantine !== undefined && k < options.byzantine.count)
            delta = applyAttack(
              delta,
              options.byzantine.attack,
              (options.seed + 1) * 1_000_003 + round * 1009 + k,
            )
          checkFinite(delta, `peer ${k + 1}'s delta`)
          // Error feedback for top-k only, as the round engine does (node/round/engine.ts): int8's
          // rounding error is at most scale/2 per value and is not carried between rounds.
          const compressed = compressDelta(
            delta,
            options.codec,
            options.codec.kind === 'topk' ? residuals[k] : undefined,
          )
          residuals[k] = compressed.residual
          const payload = encodeSafetensors(compressed.entries)
          roundBytes += payload.length
          contributions.push({
            digest: sha256Digest(payload),
            samples,
            delta: decompressDelta(decodeSafetensors(payload).tensors, layoutOf(weights), options.codec),
          })
        }
        // The round engine's weight cap (node/round/limits.ts maxSamples): inner steps x batch size.
        const aggregated = aggregateDeltas(contributions, options.aggregator, {
          maxSamples: innerSteps * batchSize,
        })
        const next = outerStep(weights, momentum, aggregated, {
          // The lr a real node's publisher uses for this round of a phase of options.rounds rounds.
          lr: outerLrAt(options.outerLr, options.outerSchedule, round, options.rounds),
          momentum: options.outerMomentum,
        })
        checkFinite(next.weights, 'the outer step')
        weights = next.weights
        momentum = next.momentum
        const loss = await scored(evaluator, weights)
        if (!Number.isFinite(loss)) throw new Divergence(`federated eval loss became ${loss}`)
        federatedLoss = loss
      } catch (error) {
        if (!isDivergence(error)) throw error
        diverged = { round, reason: (error as Error).message }
        log?.warn({ round, reason: diverged.reason }, 'federated model diverged')
      }
      await baseline.trainSteps(baselineSteps(baselineMode))
      const baselineLoss = await scored(evaluator, await baseline.getWeights())
      let secondLoss: number | undefined
      if (second !== undefined) {
        await second.trainSteps(baselineSteps(secondMode as BaselineMode))
        secondLoss = await scored(evaluator, await second.getWeights())
      }
      cumulativeBytes += roundBytes / peers
      cumulativeDense += denseBytesPerPeer
      const row: RoundResult = {
        round,
        federatedEvalLoss: federatedLoss,
        baselineEvalLoss: baselineLoss,
        gapPercent: federatedLoss === null ? null : ((federatedLoss - baselineLoss) / baselineLoss) * 100,
        peerTrainLoss,
        bytesPerPeer: roundBytes / peers,
        denseBytesPerPeer,
        bytesRatio: roundBytes === 0 ? 0 : denseBytesPerPeer / (roundBytes / peers),
        cumulativeBytesPerPeer: cumulativeBytes,
        cumulativeDenseBytesPerPeer: cumulativeDense,
        federatedSampleSteps,
        baselineSampleSteps: baseline.samplesSeen(),
        ...(secondLoss === undefined
          ? {}
          : {
              secondBaseline: {
                mode: secondMode as BaselineMode,
                evalLoss: secondLoss,
                gapPercent: federatedLoss === null ? null : ((federatedLoss - secondLoss) / secondLoss) * 100,
              },
            }),
      }
      const lastRound = round === options.rounds || diverged !== null
      if (
        qualityOptions !== undefined &&
        (lastRound || (qualityOptions.every > 0 && round % qualityOptions.every === 0))
      ) {
        row.quality = {
          federated: federatedLoss === null ? null : await scoreQuality(weights),
          baseline: await scoreQuality(await baseline.getWeights()),
          ...(second === undefined ? {} : { secondBaseline: await scoreQuality(await second.getWeights()) }),
        }
        if (lastRound) finalQuality = row.quality
      }
      rounds.push(row)
      log?.info({ round, federated: federatedLoss, baseline: baselineLoss }, 'simulated round closed')
      hooks.onRound?.(row, (performance.now() - started) / 1000)
      if (diverged !== null) break
    }

    const last = rounds[rounds.length - 1] as RoundResult
    return {
      version: RESULTS_VERSION,
      settings: {
        config: config.name,
        phase,
        peers,
        rounds: options.rounds,
        innerSteps,
        split: formatSplit(options.split),
        aggregator: formatAggregator(options.aggregator),
        compress: formatCodec(options.codec),
        byzantine: options.byzantine === undefined ? null : formatByzantine(options.byzantine),
        seed: options.seed,
        outerLr: options.outerLr,
        outerMomentum: options.outerMomentum,
        outerSchedule: formatOuterSchedule(options.outerSchedule),
        batchSize,
        evalItems: evaluation.length,
        baseline: baselineMode,
        secondBaseline: secondMode ?? null,
        backend: options.backend ?? null,
        quality:
          qualityOptions === undefined
            ? null
            : { ...qualityOptions, classifier: (qualityModel as QualityModel).digest },
      },
      data: {
        source: options.dataSource,
        items: dataset.items.length,
        classes: dataset.classes,
        evalItems: evaluation.length,
        peers: shares.map((share) => ({ items: share.length, classes: classCounts(dataset, share) })),
        baselineItems: pool.length,
      },
      autoencoder: autoencoderInfo,
      parameters,
      rounds,
      final: {
        federatedEvalLoss: diverged === null ? last.federatedEvalLoss : null,
        baselineEvalLoss: last.baselineEvalLoss,
        gapPercent: diverged === null ? last.gapPercent : null,
        bytesRatio: cumulativeBytes === 0 ? 0 : cumulativeDense / cumulativeBytes,
        totalBytesPerPeer: cumulativeBytes,
        totalDenseBytesPerPeer: cumulativeDense,
        diverged,
        quality: finalQuality,
        secondBaseline:
          last.secondBaseline === undefined
            ? null
            : { ...last.secondBaseline, ...(diverged === null ? {} : { gapPercent: null }) },
      },
    }
  } finally {
    for (const session of sessions) session.dispose()
    qualityModel?.dispose()
  }
}
