// `coop credit`: each rights holder's share of a checkpoint's training, in sample-steps through
// its whole lineage, recomputed from the signed provenance and contribution statements in a store.
import { SPLIT_RULE } from '../../credit/ledger.ts'
import { parseCommandArgs, requireFlags } from '../args.ts'
import type { Command } from '../command.ts'

const usage = `Usage: coop credit --checkpoint <digest|dir> --store <dir> [--json]

Each rights holder's share of what the checkpoint learned, counted in sample-steps (the training
samples the signed contributions processed) through its whole lineage, the autoencoder component
included. Rule: ${SPLIT_RULE}. Shares sum to 1.

Options:
  --checkpoint <digest|dir>  the checkpoint id (provenance statement digest), its model digest,
                             or its directory
  --store <dir>              a node store holding the lineage's checkpoints and statements
  --json                     {"holders":[{"did","name","license","share",...}], ...}`

/** The ledger as text lines, shared with `coop checkpoint verify --credit`. */
export function ledgerLines(ledger: import('../../credit/ledger.ts').Ledger): string[] {
  return [
    `checkpoint ${ledger.checkpoint} (${ledger.phase} round ${ledger.round})`,
    `lineage    ${ledger.contributions} contributions, ${ledger.sampleSteps} sample-steps${ledger.contributorSignatures === undefined ? '' : ` (${ledger.contributorSignatures} node signatures checked)`}`,
    ...ledger.holders.map(
      (h) =>
        `share      ${(h.share * 100).toFixed(2).padStart(6)} %  ${h.name} (${h.license})  ${h.did ?? 'unknown'}  ${Math.round(h.sampleSteps)} sample-steps`,
    ),
  ]
}

export const command: Command = {
  summary: "each rights holder's share of a checkpoint's training (sample-steps through its lineage)",
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      checkpoint: { type: 'string' },
      store: { type: 'string' },
      json: { type: 'boolean' },
    })
    requireFlags(values, ['checkpoint', 'store'])
    const { ledgerFromStore } = await import('../../credit/ledger.ts')
    const ledger = await ledgerFromStore(values.store, values.checkpoint)
    if (values.json === true) process.stdout.write(`${JSON.stringify(ledger, null, 2)}\n`)
    else process.stdout.write(`${ledgerLines(ledger).join('\n')}\n`)
    return 0
  },
}
