// `coop simulate`: federated training of n peers in one process against a centralized
// baseline, for researchers (non-IID splits, aggregators, compression, Byzantine peers).
// The maths is the nodes' own (protocol/compression.ts, protocol/aggregation.ts, trainer/session.ts);
// see node/simulate/run.ts.
import { existsSync, readdirSync } from 'node:fs'
import { loadConfig } from '../../../configs/index.ts'
import { parseAggregator } from '../../../protocol/aggregation.ts'
import { parseCodec } from '../../../protocol/compression.ts'
import { canonicalize } from '../../../protocol/jcs.ts'
import { componentLogger } from '../../log.ts'
import type { ByzantineSpec } from '../../simulate/byzantine.ts'
import { parseByzantine } from '../../simulate/byzantine.ts'
import {
  DEFAULT_SIM_INNER_STEPS,
  DEFAULT_SIM_PEERS,
  DEFAULT_QUALITY_PER_CLASS,
  DEFAULT_QUALITY_SAMPLING_STEPS,
  DEFAULT_QUALITY_SEED,
  DEFAULT_ROUNDS,
  DEFAULT_SIM_OUTER_LR,
  DEFAULT_SIM_OUTER_MOMENTUM,
} from '../../simulate/constants.ts'
import { SimulateError } from '../../simulate/errors.ts'
import { parseSplit } from '../../simulate/split.ts'
import {
  backendFlag,
  parseCommandArgs,
  REQUESTED_BACKENDS,
  requireFlags,
  threadsFlag,
  wholeNumberFlag,
} from '../args.ts'
import type { Command } from '../command.ts'
import { UsageError } from '../command.ts'
import { parseOuterSchedule } from '../../../protocol/outer-schedule.ts'

const usage = `Usage: coop simulate --out <dir> [options]

Simulates a cooperative of n peers in one process (no network) with the nodes' own trainer,
delta compression, aggregation and outer optimiser (DiLoCo: H local Adam steps, then outer SGD
with Nesterov momentum on the aggregated pseudo-gradient), and trains a centralized baseline on
the union of the peers' data for the same number of sample-steps. Prints a table per round and
writes <out>/results.json, <out>/loss-vs-round.svg and <out>/loss-vs-bytes.svg.
The same options and seed give the same results.json on the same backend.

Options:
  --peers <n>               simulated peers (default ${DEFAULT_SIM_PEERS})
  --rounds <r>              rounds (default ${DEFAULT_ROUNDS})
  --inner-steps <h>         local steps per round, H (default ${DEFAULT_SIM_INNER_STEPS})
  --split <mode>            iid | category | dirichlet:<alpha> (default iid)
  --aggregator <a>          mean | median | trimmed:<f> | clip:<norm> (default mean)
  --compress <c>            none | int8 | topk:<fraction>[:2bit] (default int8)
  --byzantine <k>:<attack>  the first k peers attack: signflip | scale:<s> | noise:<sigma>
  --config <name|path>      tiny | emoji32 | gpu256 or a JSON file (default tiny)
  --phase <p>               unet | autoencoder (default unet)
  --autoencoder <dir>       autoencoder checkpoint for the U-Net phase (e.g. <coop train out>/autoencoder);
                            without it one is trained centrally first, for --autoencoder-steps
  --autoencoder-steps <n>   steps of that central autoencoder training (default: the config's autoencoder.steps)
  --baseline <b>            sequential (peers x H steps at the peers' batch size) | data-parallel
                            (H steps at a batch peers times larger: what per-step dense exchange
                            trains); same sample-steps either way (default sequential)
  --outer-lr <x>            outer learning rate (default ${DEFAULT_SIM_OUTER_LR})
  --outer-momentum <x>      outer Nesterov momentum (default ${DEFAULT_SIM_OUTER_MOMENTUM})
  --outer-schedule <s>      constant (default) or warmup:<rounds>,final:<fraction>: the charter's per-round outer lr
  --eval-items <n>          held-out images scoring both models (default: the config's training.evalBatch)
  --data <dir>              image folder <dir>/<class>/*.png (default: all of Twemoji, laid out in a temp folder)
  --seed <n>                seed of the split, the initial weights and the training streams (default 0)
  --quality-per-class <n>   sample quality (trainer/quality: class accuracy, Fréchet distance) of both
                            models after the last round, from n samples per class (default ${DEFAULT_QUALITY_PER_CLASS})
  --quality-every <r>       also score every r rounds (default 0: after the last only)
  --no-quality              skip the quality scoring (U-Net phase of class-conditional configs only)
  --backend <name>          ${REQUESTED_BACKENDS.join('|')} (default auto)
  --threads <n>             wasm: threads per training step, data-parallel (default min(2, cores))
  --out <dir>               output folder; must not exist or be empty`

function decimal(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const number = Number(value)
  if (value.trim() === '' || !Number.isFinite(number))
    throw new UsageError(`--${flag} must be a number, got '${value}'`)
  return number
}

/** Parses with the protocol's/simulator's own parsers, turning their typed errors into usage errors. */
function option<T>(flag: string, parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    if (error instanceof Error && 'code' in error) throw new UsageError(`--${flag}: ${error.message}`)
    throw error
  }
}

export const command: Command = {
  summary:
    'simulate federated training (splits, aggregators, compression, attacks) against a centralized baseline',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      peers: { type: 'string' },
      rounds: { type: 'string' },
      'inner-steps': { type: 'string' },
      split: { type: 'string' },
      aggregator: { type: 'string' },
      compress: { type: 'string' },
      byzantine: { type: 'string' },
      config: { type: 'string' },
      phase: { type: 'string' },
      autoencoder: { type: 'string' },
      'autoencoder-steps': { type: 'string' },
      'outer-lr': { type: 'string' },
      'outer-momentum': { type: 'string' },
      'outer-schedule': { type: 'string' },
      'eval-items': { type: 'string' },
      data: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
      threads: { type: 'string' },
      out: { type: 'string' },
      baseline: { type: 'string' },
      'quality-per-class': { type: 'string' },
      'quality-every': { type: 'string' },
      'no-quality': { type: 'boolean' },
    })
    requireFlags(values, ['out'])
    const out = values.out
    const peers = wholeNumberFlag('peers', values.peers) ?? DEFAULT_SIM_PEERS
    const rounds = wholeNumberFlag('rounds', values.rounds) ?? DEFAULT_ROUNDS
    const innerSteps = wholeNumberFlag('inner-steps', values['inner-steps']) ?? DEFAULT_SIM_INNER_STEPS
    const seed = wholeNumberFlag('seed', values.seed) ?? 0
    const split = option('split', () => parseSplit(values.split ?? 'iid'))
    const aggregator = option('aggregator', () => parseAggregator(values.aggregator ?? 'mean'))
    const codec = option('compress', () => parseCodec(values.compress ?? 'int8'))
    const byzantine: ByzantineSpec | undefined =
      values.byzantine === undefined
        ? undefined
        : option('byzantine', () => parseByzantine(values.byzantine as string, peers))
    const phase = values.phase ?? 'unet'
    if (phase !== 'unet' && phase !== 'autoencoder')
      throw new UsageError(`--phase must be unet or autoencoder, got '${phase}'`)
    const backend = backendFlag(values.backend)
    const baselineMode = values.baseline ?? 'sequential'
    if (baselineMode !== 'sequential' && baselineMode !== 'data-parallel')
      throw new UsageError(`--baseline must be sequential or data-parallel, got '${baselineMode}'`)
    const threads = threadsFlag(values.threads)
    const outerLr = decimal('outer-lr', values['outer-lr'], DEFAULT_SIM_OUTER_LR)
    const outerMomentum = decimal('outer-momentum', values['outer-momentum'], DEFAULT_SIM_OUTER_MOMENTUM)
    const outerSchedule = option('outer-schedule', () =>
      parseOuterSchedule(values['outer-schedule'] ?? 'constant'),
    )
    const config = loadConfig(values.config ?? 'tiny')
    const evalItems = wholeNumberFlag('eval-items', values['eval-items']) ?? config.training.evalBatch
    const autoencoderSteps =
      wholeNumberFlag('autoencoder-steps', values['autoencoder-steps']) ?? config.autoencoder.steps
    if (
      phase === 'autoencoder' &&
      (values.autoencoder !== undefined || values['autoencoder-steps'] !== undefined)
    )
      throw new UsageError('--autoencoder and --autoencoder-steps apply to the U-Net phase only')
    const qualityPerClass =
      wholeNumberFlag('quality-per-class', values['quality-per-class'], { min: 2, max: 1024 }) ??
      DEFAULT_QUALITY_PER_CLASS
    const qualityEvery = wholeNumberFlag('quality-every', values['quality-every']) ?? 0
    const scoreQuality = values['no-quality'] !== true && phase === 'unet' && config.classes.length > 0
    if (
      values['no-quality'] === true &&
      (values['quality-per-class'] !== undefined || values['quality-every'] !== undefined)
    )
      throw new UsageError('--no-quality excludes --quality-per-class and --quality-every')
    if (existsSync(out) && readdirSync(out).length > 0)
      throw new SimulateError(
        'OUT_NOT_EMPTY',
        `${out} exists and is not empty; results are never mixed with other files`,
      )

    const log = componentLogger('simulate')
    const { initBackend } = await import('../../../trainer/backend.ts')
    const { loadImageFolder } = await import('../../../trainer/data.ts')
    const { runSimulation } = await import('../../simulate/run.ts')
    const { ensureTwemoji } = await import('../../simulate/data.ts')
    const { qualityLine, summaryLines, tableHeader, tableRow, writeSimulationReport } =
      await import('../../simulate/report.ts')
    const print = (line: string) => process.stdout.write(`${line}\n`)

    const choice = await initBackend(backend, log, { threads })
    let dataDir = values.data
    let dataSource = values.data ?? 'twemoji'
    if (dataDir === undefined) {
      const twemoji = await ensureTwemoji()
      dataDir = twemoji.dir
      dataSource = 'twemoji (all categories but component, without the quality hold-out; CC-BY 4.0)'
      print(`data: Twemoji ${twemoji.laidOut ? 'laid out in' : 'from'} ${dataDir}`)
    }
    const dataset = await loadImageFolder({ dir: dataDir, size: config.image.size, log })

    let autoencoder: import('../../simulate/run.ts').AutoencoderSource | undefined
    if (phase === 'unet') {
      if (values.autoencoder !== undefined) {
        const { loadCheckpoint } = await import('../../../trainer/checkpoint.ts')
        const checkpoint = await loadCheckpoint(values.autoencoder)
        const savedPhase = checkpoint.metadata.phase
        if (savedPhase !== undefined && savedPhase !== 'autoencoder')
          throw new SimulateError(
            'BAD_OPTION',
            `${values.autoencoder} holds a ${savedPhase} checkpoint, not an autoencoder`,
          )
        if (
          canonicalize(checkpoint.config.autoencoder) !== canonicalize(config.autoencoder) ||
          checkpoint.config.image.size !== config.image.size
        )
          throw new SimulateError(
            'BAD_OPTION',
            `the autoencoder in ${values.autoencoder} was trained with another configuration than ${config.name}`,
          )
        autoencoder = {
          kind: 'weights',
          weights: checkpoint.weights,
          source: `checkpoint ${values.autoencoder}`,
        }
        print(`autoencoder: loaded from ${values.autoencoder}`)
      } else {
        autoencoder = { kind: 'train', steps: autoencoderSteps }
      }
    }

    print(
      `simulating ${peers} peers x ${rounds} rounds x H=${innerSteps} on ${config.name} (${phase}), split ${values.split ?? 'iid'}, ` +
        `aggregator ${values.aggregator ?? 'mean'}, compress ${values.compress ?? 'int8'}${byzantine ? `, byzantine ${values.byzantine}` : ''}, ` +
        `outer lr ${outerLr} momentum ${outerMomentum}, seed ${seed}, backend ${choice.name}, ${dataset.items.length} images`,
    )
    let headerPrinted = false
    const result = await runSimulation(
      {
        config,
        phase,
        peers,
        rounds,
        innerSteps,
        split,
        aggregator,
        codec,
        ...(byzantine === undefined ? {} : { byzantine }),
        seed,
        outerLr,
        outerMomentum,
        ...(outerSchedule === undefined ? {} : { outerSchedule }),
        dataset,
        dataSource,
        ...(autoencoder === undefined ? {} : { autoencoder }),
        evalItems,
        baseline: baselineMode,
        backend: choice.name,
        ...(scoreQuality
          ? {
              quality: {
                perClass: qualityPerClass,
                every: qualityEvery,
                guidance: config.diffusion.guidance,
                steps: Math.min(DEFAULT_QUALITY_SAMPLING_STEPS, config.diffusion.timesteps),
                seed: DEFAULT_QUALITY_SEED,
              },
            }
          : {}),
      },
      {
        log,
        onNote: (message) => print(message),
        onRound: (row, seconds) => {
          if (!headerPrinted) {
            print(tableHeader())
            headerPrinted = true
          }
          print(tableRow(row, seconds))
          const quality = qualityLine(row)
          if (quality !== undefined) print(quality)
        },
      },
    )
    for (const line of summaryLines(result)) print(line)
    const files = await writeSimulationReport(out, result)
    print(`wrote ${files.join(', ')}`)
    return 0
  },
}
