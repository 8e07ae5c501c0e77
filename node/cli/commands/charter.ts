// `coop charter create`: writes a cooperative's signed genesis document. Its digest is the coop id
// every topic, statement and checkpoint of the cooperative is scoped by.
import { parseArgs } from 'node:util'
import { loadConfig } from '../../../configs/index.ts'
import { parseAggregator } from '../../../protocol/aggregation.ts'
import { createCharter, type CoopCharter, DEFAULT_INTENDED_USE } from '../../../protocol/charter.ts'
import { AUDIT_DEFAULT_SAMPLES_PER_CLASS } from '../../audit/constants.ts'
import { parseCodec } from '../../../protocol/compression.ts'
import { parseOuterSchedule, type OuterSchedule } from '../../../protocol/outer-schedule.ts'
import { envelopeBytes } from '../../../protocol/dsse.ts'
import { peerIdString } from '../../../protocol/keys.ts'
import { readKeyFile } from '../../keystore.ts'
import { assertComponentFits, readAutoencoderComponent } from '../../round/component.ts'
import {
  DEFAULT_DEADLINE_SECONDS,
  DEFAULT_INNER_STEPS,
  DEFAULT_OUTER_LR,
  DEFAULT_OUTER_MOMENTUM,
} from '../../round/constants.ts'
import { writeFileDurable } from '../../store/durable.ts'
import { assertFileOutputFree } from '../outputs.ts'
import type { Command } from '../command.ts'
import { CliError, UsageError } from '../command.ts'

/** Twemoji is CC-BY 4.0; CC0 adds public-domain images. Charters name their own list with --accept-license. */
const DEFAULT_LICENSES = ['CC-BY-4.0', 'CC0-1.0']
const DEFAULT_AE_ROUNDS = 3
const DEFAULT_UNET_ROUNDS = 10
const DEFAULT_QUORUM = 2

const usage = `Usage: coop charter create --config <name|path> --publisher <peerId>... --key <file>... --out <charter.json> [options]

Writes the cooperative's charter: the model configuration, round parameters, publishers and
their signing threshold, admission policy and accepted licenses, signed by the publishers'
node keys (--key, at least --threshold of them). Prints the coop id (the charter's digest).

Options:
  --config <name|path>       tiny | emoji32 | gpu256, or a JSON config file
  --publisher <peerId>       a publisher's PeerId (repeatable; see \`coop keys new\`)
  --key <file>               a publisher's node key file, to sign the charter (repeatable)
  --threshold <n>            publisher signatures a checkpoint needs (default 1)
  --accept-license <SPDX>    a license accepted for training (repeatable; default ${DEFAULT_LICENSES.join(', ')})
  --commercial yes|no        the cooperative intends commercial use of its model (default no)
  --redistribute-weights yes|no
                             the cooperative redistributes its weights beyond its members (default no);
                             manifests whose scope forbids the intended use are refused at admission
  --admission <mode>         open | allowlist (default open)
  --allow <peerId>           an admitted peer for --admission allowlist (repeatable)
  --inner-steps <H>          local Adam steps per round (default ${DEFAULT_INNER_STEPS})
  --outer-lr <lr>            outer Nesterov SGD learning rate (default ${DEFAULT_OUTER_LR})
  --outer-momentum <m>       outer momentum (default ${DEFAULT_OUTER_MOMENTUM})
  --outer-schedule <s>       per-round outer lr: constant (default) or warmup:<rounds>,final:<fraction>
                             (linear warm-up, then linear decay to fraction x lr at each phase's last round)
  --aggregator <a>           mean | median | trimmed:<fraction> | clip:<norm> (default mean)
  --compress <c>             int8 | topk:<fraction>[:2bit] | none (default int8)
  --ae-rounds <n>            cooperative autoencoder rounds (default ${DEFAULT_AE_ROUNDS})
  --autoencoder <dir>        adopt a published autoencoder checkpoint (model.safetensors +
                             provenance.json) instead of training one; excludes --ae-rounds
  --unet-rounds <n>          U-Net rounds (default ${DEFAULT_UNET_ROUNDS})
  --quorum <n>               contributions that close a round (default ${DEFAULT_QUORUM})
  --deadline <seconds>       a round closes after this with >= 1 contribution (default ${DEFAULT_DEADLINE_SECONDS})
  --audit-every <n>          require a signed memorization audit of every n-th U-Net round's checkpoint
                             by the publisher, on its own images (docs/PROTOCOL.md §9b)
  --audit-samples-per-class <n>  samples per class of those audits (default ${AUDIT_DEFAULT_SAMPLES_PER_CLASS})
  --on-revocation <mode>     exclude: later rounds train without revoked items (default);
                             rollback: the next checkpoint continues from the newest one whose whole
                             lineage never used them, with a signed unlearning receipt (§9d)
  --name <text>              a human-readable name
  --out <file>               where to write the charter (DSSE envelope JSON); must not exist
  --force                    overwrite an existing --out (this makes a new coop id)`

function wholeNumber(flag: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < min)
    throw new UsageError(`--${flag} must be a whole number >= ${min}, got '${value}'`)
  return Number(value)
}

function onRevocation(value: string): 'exclude' | 'rollback' {
  if (value !== 'exclude' && value !== 'rollback')
    throw new UsageError(`--on-revocation must be exclude or rollback, got '${value}'`)
  return value
}

function decimal(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n))
    throw new UsageError(`--${flag} must be a number, got '${value}'`)
  return n
}

function yesNo(flag: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (value === 'yes') return true
  if (value === 'no') return false
  throw new UsageError(`--${flag} must be yes or no, got '${value}'`)
}

const sortedUnique = (values: string[]): string[] =>
  [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))

async function create(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      config: { type: 'string' },
      publisher: { type: 'string', multiple: true },
      key: { type: 'string', multiple: true },
      threshold: { type: 'string' },
      'accept-license': { type: 'string', multiple: true },
      commercial: { type: 'string' },
      'redistribute-weights': { type: 'string' },
      admission: { type: 'string' },
      allow: { type: 'string', multiple: true },
      'inner-steps': { type: 'string' },
      'outer-lr': { type: 'string' },
      'outer-momentum': { type: 'string' },
      'outer-schedule': { type: 'string' },
      aggregator: { type: 'string' },
      compress: { type: 'string' },
      'ae-rounds': { type: 'string' },
      autoencoder: { type: 'string' },
      'unet-rounds': { type: 'string' },
      quorum: { type: 'string' },
      deadline: { type: 'string' },
      name: { type: 'string' },
      'audit-every': { type: 'string' },
      'on-revocation': { type: 'string' },
      'audit-samples-per-class': { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
    },
  })
  if (values.config === undefined) throw new UsageError('--config is required')
  if (values.out === undefined) throw new UsageError('--out is required')
  // Refused before any work: overwriting a charter silently changes the coop id.
  await assertFileOutputFree(values.out, values.force === true)
  const publishers = sortedUnique(values.publisher ?? [])
  if (publishers.length === 0) throw new UsageError('at least one --publisher is required')
  const keyFiles = values.key ?? []
  if (keyFiles.length === 0)
    throw new UsageError('at least one --key (a publisher node key) is required to sign the charter')
  const admissionMode = values.admission ?? 'open'
  if (admissionMode !== 'open' && admissionMode !== 'allowlist')
    throw new UsageError(`--admission must be open or allowlist, got '${admissionMode}'`)
  const allow = sortedUnique(values.allow ?? [])
  if (admissionMode === 'allowlist' && allow.length === 0)
    throw new UsageError('--admission allowlist needs at least one --allow <peerId>')
  if (admissionMode === 'open' && allow.length > 0)
    throw new UsageError('--allow only applies to --admission allowlist')

  let aggregator: CoopCharter['rounds']['aggregator']
  let compression: CoopCharter['rounds']['compression']
  try {
    aggregator = parseAggregator(values.aggregator ?? 'mean')
    compression = parseCodec(values.compress ?? 'int8')
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
  if (values.autoencoder !== undefined && values['ae-rounds'] !== undefined)
    throw new UsageError(
      '--autoencoder and --ae-rounds exclude each other: a component autoencoder is not trained',
    )
  const model = loadConfig(values.config)
  const component =
    values.autoencoder === undefined ? undefined : await readAutoencoderComponent(values.autoencoder)
  if (component !== undefined) assertComponentFits(model, component)
  const keys = await Promise.all(keyFiles.map((path) => readKeyFile(path)))
  for (const [i, key] of keys.entries()) {
    const id = peerIdString(key.publicKey)
    if (!publishers.includes(id))
      throw new CliError(
        'KEY_NOT_PUBLISHER',
        `${keyFiles[i]} is the key of ${id}, which is not a --publisher`,
      )
  }
  let outerSchedule: OuterSchedule | undefined
  try {
    outerSchedule = parseOuterSchedule(values['outer-schedule'] ?? 'constant')
  } catch (error) {
    throw new UsageError(`--outer-schedule: ${(error as Error).message}`)
  }
  const charter: CoopCharter = {
    ...(values.name === undefined ? {} : { name: values.name }),
    model: model as unknown as CoopCharter['model'],
    rounds: {
      innerSteps: wholeNumber('inner-steps', values['inner-steps'], DEFAULT_INNER_STEPS, 1),
      outerLr: decimal('outer-lr', values['outer-lr'], DEFAULT_OUTER_LR),
      outerMomentum: decimal('outer-momentum', values['outer-momentum'], DEFAULT_OUTER_MOMENTUM),
      ...(outerSchedule === undefined ? {} : { outerSchedule }),
      aggregator,
      compression,
      quorum: wholeNumber('quorum', values.quorum, DEFAULT_QUORUM, 1),
      deadlineSeconds: wholeNumber('deadline', values.deadline, DEFAULT_DEADLINE_SECONDS, 1),
    },
    publishers,
    threshold: wholeNumber('threshold', values.threshold, 1, 1),
    admission: admissionMode === 'open' ? { mode: 'open' } : { mode: 'allowlist', peers: allow },
    acceptedLicenses: sortedUnique(values['accept-license'] ?? DEFAULT_LICENSES),
    // The safe default promises the least: every manifest's scope allows non-commercial use kept
    // within the cooperative, so no consent is refused for a use nobody asked for.
    intendedUse: {
      commercialUse: yesNo('commercial', values.commercial, DEFAULT_INTENDED_USE.commercialUse),
      weightRedistribution: yesNo(
        'redistribute-weights',
        values['redistribute-weights'],
        DEFAULT_INTENDED_USE.weightRedistribution,
      ),
    },
    phases: {
      autoencoder:
        component === undefined
          ? { mode: 'cooperative', rounds: wholeNumber('ae-rounds', values['ae-rounds'], DEFAULT_AE_ROUNDS) }
          : { mode: 'component', checkpoint: component.modelDigest, provenance: component.verified.digest },
      unet: { rounds: wholeNumber('unet-rounds', values['unet-rounds'], DEFAULT_UNET_ROUNDS) },
    },
    ...(values['audit-every'] === undefined
      ? {}
      : {
          audit: {
            every: wholeNumber('audit-every', values['audit-every'], 1, 1),
            samplesPerClass: wholeNumber(
              'audit-samples-per-class',
              values['audit-samples-per-class'],
              AUDIT_DEFAULT_SAMPLES_PER_CLASS,
              1,
            ),
          },
        }),
    // Written only when given: a charter without it means exclude, and keeps its coop id.
    ...(values['on-revocation'] === undefined ? {} : { onRevocation: onRevocation(values['on-revocation']) }),
    createdAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
  }
  if (values['audit-samples-per-class'] !== undefined && values['audit-every'] === undefined)
    throw new UsageError('--audit-samples-per-class needs --audit-every')
  if (charter.phases.autoencoder.mode === 'cooperative' && charter.phases.autoencoder.rounds === 0)
    throw new UsageError(
      "--ae-rounds must be at least 1: the U-Net trains on the cooperative autoencoder's latents",
    )
  const { envelope, coopId } = createCharter(charter, keys)
  await writeFileDurable(values.out, envelopeBytes(envelope))
  const use = charter.intendedUse
  process.stdout.write(
    `coop id: ${coopId}\nintended use: commercial ${use.commercialUse ? 'yes' : 'no'}, weight redistribution ${use.weightRedistribution ? 'yes' : 'no'}\nwrote ${values.out}\n`,
  )
  return 0
}

export const command: Command = {
  summary: 'create a cooperative charter (model, rounds, publishers, admission, licenses)',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub !== 'create')
      throw new UsageError(sub === undefined ? 'missing subcommand: create' : `unknown subcommand '${sub}'`)
    return await create(rest)
  },
}
