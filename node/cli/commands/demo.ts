// `coop demo`: a local cooperative on Twemoji, end to end, in one command (see node/demo/run.ts).
import { parseArgs } from 'node:util'
import type { Command } from '../command.ts'
import { UsageError } from '../command.ts'
import { DEFAULT_PEERS, DEFAULT_RUN, MAX_PEERS, SMOKE_RUN } from '../../demo/constants.ts'
import { MAX_TRAINING_THREADS } from '../../../trainer/constants.ts'
import { loadConfig } from '../../../configs/index.ts'

import { backendFlag, parseOverride, REQUESTED_BACKENDS } from '../args.ts'

const usage = `Usage: coop demo [--out demo-out] [--smoke] [--peers ${DEFAULT_PEERS}] [--rounds N] [--backend auto]

Runs a local cooperative on Twemoji (CC-BY 4.0): splits the images by category across the
peers, gives each peer a rights-holder key and a signed consent manifest, writes a charter,
starts the peers as real \`coop start\` processes on loopback, trains the autoencoder then the
U-Net over several rounds, and leaves checkpoints, sample grids, a loss plot, metrics.json and
report.html in --out.

Options:
  --out <dir>                 output folder (default demo-out). Running again with the same
                              folder resumes the run, or refuses if the parameters differ.
  --smoke                     the same path on the tiny config, in about a minute
  --peers <n>                 number of peers, 2..${MAX_PEERS} (default ${DEFAULT_PEERS}); the first one publishes
  --rounds <n>                U-Net rounds (default: as many as fit 15 minutes, planned from a
                              training step measured at the start; smoke ${SMOKE_RUN.unetRounds})
  --ae-rounds <n>             autoencoder rounds before them (default ${DEFAULT_RUN.autoencoderRounds}; smoke ${SMOKE_RUN.autoencoderRounds})
  --inner-steps <n>           local steps per round (default ${DEFAULT_RUN.innerSteps}; smoke ${SMOKE_RUN.innerSteps})
  --images-per-category <n>   images taken from each category (default ${DEFAULT_RUN.imagesPerCategory}; smoke ${SMOKE_RUN.imagesPerCategory})
  --categories <list>         comma-separated Twemoji category slugs (e.g. flags,smileys-emotion),
                              or 'all' (default all; the peers need one category each at least)
  --backend <name>            ${REQUESTED_BACKENDS.join('|')} (default auto)
  --threads <n>               wasm: training threads of each peer (default: the cores shared out
                              among the peers, at least 1: 1 for 4 peers on 2 cores)
  --set <key=value>           a model config override on top of the demo's, e.g.
                              --set unet.lr=0.002 (repeatable; the charter embeds the result)
  --plain                     plain progress lines even on a terminal`

function positiveInt(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got '${value}'`)
  const n = Number.parseInt(value, 10)
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`)
  return n
}

function parseCategories(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined
  if (value === 'all') return []
  const list = [
    ...new Set(
      value
        .split(',')
        .map((c) => c.trim())
        .filter((c) => c.length > 0),
    ),
  ].sort()
  if (list.length === 0) throw new UsageError("--categories needs at least one category, or 'all'")
  return list
}

export const command: Command = {
  summary: 'run a local 4-peer cooperative on Twemoji and write a provenance report',
  usage,
  async run(argv) {
    let parsed: ReturnType<typeof parse>
    try {
      parsed = parse(argv)
    } catch (error) {
      if (error instanceof UsageError) throw error
      throw new UsageError((error as Error).message)
    }
    const { values } = parsed
    const backend = backendFlag(values.backend)
    const preset = values.smoke ? SMOKE_RUN : DEFAULT_RUN
    const configOverrides = {
      ...preset.configOverrides,
      ...Object.fromEntries((values.set ?? []).map(parseOverride)),
    }
    // A bad --set is a bad command line: refused here, before any setup is written.
    try {
      loadConfig(preset.config, configOverrides)
    } catch (error) {
      throw new UsageError(`--set: ${(error as Error).message}`)
    }
    const { runDemo } = await import('../../demo/run.ts')
    return runDemo({
      out: values.out ?? 'demo-out',
      smoke: values.smoke ?? false,
      // The default run fits its U-Net rounds to this machine's measured speed; --rounds fixes them.
      planRounds: values.smoke !== true && values.rounds === undefined,
      backend,
      ...(values.threads === undefined
        ? {}
        : { threads: positiveInt('threads', values.threads, 1, MAX_TRAINING_THREADS) as number }),
      plain: values.plain ?? false,
      params: {
        config: preset.config,
        configOverrides,
        peers: positiveInt('peers', values.peers, 2, MAX_PEERS) ?? DEFAULT_PEERS,
        unetRounds: positiveInt('rounds', values.rounds, 1, 1000) ?? preset.unetRounds,
        autoencoderRounds: positiveInt('ae-rounds', values['ae-rounds'], 1, 1000) ?? preset.autoencoderRounds,
        innerSteps: positiveInt('inner-steps', values['inner-steps'], 1, 100_000) ?? preset.innerSteps,
        categories: parseCategories(values.categories) ?? [...preset.categories],
        imagesPerCategory:
          positiveInt('images-per-category', values['images-per-category'], 1, 10_000) ??
          preset.imagesPerCategory,
      },
    })
  },
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      smoke: { type: 'boolean' },
      peers: { type: 'string' },
      rounds: { type: 'string' },
      'ae-rounds': { type: 'string' },
      'inner-steps': { type: 'string' },
      'images-per-category': { type: 'string' },
      set: { type: 'string', multiple: true },
      backend: { type: 'string' },
      threads: { type: 'string' },
      categories: { type: 'string' },
      plain: { type: 'boolean' },
    },
  })
}
