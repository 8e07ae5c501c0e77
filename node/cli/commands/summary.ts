// `coop summary`: the public training-content summary of a checkpoint, in the structure of the
// EU AI Office template (24 July 2025), from the signed lineage in a store.
import { parseCommandArgs, requireFlags } from '../args.ts'
import { type Command, UsageError } from '../command.ts'

const usage = `Usage: coop summary --checkpoint <dir> --store <dir> [--format json|md] [--audit <file>]...

Writes to stdout what the checkpoint learned from, following the EU AI Office's template for the
public summary of training content (24 July 2025): 1. general information (model, version,
dependencies such as the autoencoder component, modalities, data size); 2. data sources (consented
private data by rights holder and license, with item counts and credit shares); 3. processing
(opt-outs, revocations, unlearning receipts, memorization audits). The AI Act's obligation applies
to general-purpose models (presumed above 10^23 FLOP of training compute): at this scale the
summary is voluntary best practice.

Options:
  --checkpoint <dir>   a checkpoint directory of the store (an audit.dsse.json in it is reported)
  --store <dir>        the node store holding its lineage
  --format <f>         md (default) or json
  --audit <file>       a signed memorization audit of this checkpoint to report (repeatable)`

export const command: Command = {
  summary: 'public training-content summary of a checkpoint (EU AI Office template)',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      checkpoint: { type: 'string' },
      store: { type: 'string' },
      format: { type: 'string' },
      audit: { type: 'string', multiple: true },
    })
    requireFlags(values, ['checkpoint', 'store'])
    const format = values.format ?? 'md'
    if (format !== 'md' && format !== 'json')
      throw new UsageError(`--format must be md or json, got '${format}'`)
    const { buildSummary } = await import('../../summary/summary.ts')
    const summary = await buildSummary({
      checkpointDir: values.checkpoint,
      storeDir: values.store,
      ...(values.audit === undefined ? {} : { auditFiles: values.audit }),
    })
    if (format === 'json') process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
    else process.stdout.write((await import('../../summary/markdown.ts')).summaryMarkdown(summary))
    return 0
  },
}
