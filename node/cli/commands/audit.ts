// `coop audit memorization`: does a checkpoint reproduce its training images? Samples the
// checkpoint, finds each training image's nearest samples, flags near-copies, writes audit.json
// and audit.html, and with --key signs the result (docs/PROTOCOL.md §9b).
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { parseCommandArgs, backendFlag, REQUESTED_BACKENDS, requireFlags, wholeNumberFlag } from '../args.ts'
import { CliError, type Command, UsageError } from '../command.ts'
import { componentLogger } from '../../log.ts'
import { writeFileDurable } from '../../store/durable.ts'
import { sha256Digest } from '../../../protocol/digest.ts'
import { canonicalize } from '../../../protocol/jcs.ts'
import {
  AUDIT_DEFAULT_SAMPLES_PER_CLASS,
  AUDIT_L2_THRESHOLD,
  AUDIT_MAX_SAMPLES_PER_CLASS,
} from '../../audit/constants.ts'

const usage = `Usage: coop audit memorization --checkpoint <dir> --data <dir> [options]

Samples the checkpoint (class-conditional where it is: --samples-per-class per class of the data
folder), finds for every training image under --data its nearest sample in pixel space
(normalised l2) and in the autoencoder's latent space, and flags near-copies: l2 < ${AUDIT_L2_THRESHOLD}
(Carlini et al. 2023) and a nearest/second-nearest ratio < 1/3. Writes audit.json (per image
{sha256, nearest, ratio, flagged}; per rights holder the worst case and the count flagged; the
method and thresholds) and audit.html (per holder, their closest image beside the sample).

Options:
  --checkpoint <dir>        a cooperative U-Net checkpoint directory (<store>/checkpoints/unet-rNNNNNN,
                            or a copy with its autoencoder checkpoint beside it), or a coop train output
  --data <dir>              the training images to audit (<dir>/<class>/*.png, or flat)
  --samples-per-class <n>   samples per class (default ${AUDIT_DEFAULT_SAMPLES_PER_CLASS})
  --out <file>              audit.json path (default audit.json); audit.html is written beside it
  --key <node key>          also sign the result: <out without .json>.dsse.json (an in-toto statement)
  --consent <manifest>      a consent manifest naming rights holders (repeatable); the store's own
                            manifests are read too
  --store <dir>             the store holding the checkpoint's autoencoder and manifests
                            (default: the store the checkpoint directory sits in)
  --backend <name>          ${REQUESTED_BACKENDS.join('|')} (default auto)
  --force                   overwrite existing outputs
  --json                    print the summary as JSON
Exit 0 when the audit ran (whatever it found), 1 with an error code otherwise.`

function outputsFor(out: string): { json: string; html: string; statement: string } {
  const base = out.endsWith('.json') ? out.slice(0, -'.json'.length) : out
  return { json: out, html: `${base}.html`, statement: `${base}.dsse.json` }
}

async function memorization(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    checkpoint: { type: 'string' },
    data: { type: 'string' },
    'samples-per-class': { type: 'string' },
    out: { type: 'string' },
    key: { type: 'string' },
    consent: { type: 'string', multiple: true },
    store: { type: 'string' },
    backend: { type: 'string' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
  })
  requireFlags(values, ['checkpoint', 'data'])
  const samplesPerClass =
    wholeNumberFlag('samples-per-class', values['samples-per-class'], {
      min: 1,
      max: AUDIT_MAX_SAMPLES_PER_CLASS,
    }) ?? AUDIT_DEFAULT_SAMPLES_PER_CLASS
  const backend = backendFlag(values.backend)
  const outputs = outputsFor(values.out ?? 'audit.json')
  // Refuse before any work: an hour of sampling must not end in a refusal.
  if (values.force !== true)
    for (const path of [outputs.json, outputs.html, ...(values.key === undefined ? [] : [outputs.statement])])
      if (existsSync(path))
        throw new CliError('OUTPUT_EXISTS', `${path} exists; pass --force to overwrite it`)
  const log = componentLogger('audit')
  const started = performance.now()
  const { initBackend } = await import('../../../trainer/backend.ts')
  const { loadAuditSource } = await import('../../audit/source.ts')
  const { runAudit } = await import('../../audit/memorization.ts')
  const { auditPage } = await import('../../audit/html.ts')
  const key =
    values.key === undefined ? undefined : await (await import('../../keystore.ts')).readKeyFile(values.key)
  await initBackend(backend, log)
  const source = await loadAuditSource(values.checkpoint, values.store)
  const run = await runAudit({
    source,
    dataDir: values.data,
    samplesPerClass,
    ...(values.consent === undefined ? {} : { consentFiles: values.consent }),
    log,
  })
  const reportBytes = new TextEncoder().encode(`${JSON.stringify(run.report, null, 2)}\n`)
  await writeFileDurable(outputs.json, reportBytes)
  await writeFileDurable(outputs.html, await auditPage(run))
  let statementDigest: string | undefined
  if (key !== undefined) {
    const { signAuditReport } = await import('../../audit/statement.ts')
    const { verifyAudit } = await import('../../../protocol/audit.ts')
    const envelope = signAuditReport(run.report, sha256Digest(reportBytes), key)
    await writeFileDurable(outputs.statement, canonicalize(envelope))
    // Refuse to leave a statement its own verifier would reject.
    statementDigest = verifyAudit(new Uint8Array(await readFile(outputs.statement))).digest
  }
  const seconds = (performance.now() - started) / 1000
  const { summary } = run.report
  if (values.json === true) {
    process.stdout.write(
      `${JSON.stringify({ ...summary, seconds, outputs: { ...outputs, ...(key === undefined ? { statement: undefined } : {}) }, statement: statementDigest, holders: run.report.holders.map((h) => ({ issuer: h.issuer, name: h.name, images: h.images, flagged: h.flagged, closestL2: h.closest?.l2 ?? null })) }, null, 2)}\n`,
    )
    return 0
  }
  const lines = [
    `checkpoint ${run.report.checkpoint.id ?? run.report.checkpoint.dir}`,
    `samples    ${summary.samples} (${samplesPerClass} per class), features ${run.report.method.features.extractor}`,
    `images     ${summary.images} audited, ${summary.flagged} flagged as near-copies`,
    ...run.report.holders.map(
      (h) =>
        `holder     ${h.name} (${h.issuer ?? 'no manifest'}): ${h.flagged}/${h.images} flagged, closest l2 ${h.closest?.l2.toFixed(3) ?? '-'} ratio ${h.closest?.ratio.toFixed(2) ?? '-'}`,
    ),
    `wrote      ${outputs.json}, ${outputs.html}${key === undefined ? '' : `, ${outputs.statement} (statement ${statementDigest})`}`,
    `time       ${seconds.toFixed(1)} s`,
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}

export const command: Command = {
  summary: 'audit a checkpoint for memorized training images',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === 'memorization') return memorization(rest)
    throw new UsageError(
      sub === undefined ? 'missing subcommand: memorization' : `unknown subcommand '${sub}'`,
    )
  },
}
