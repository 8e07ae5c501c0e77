// `coop checkpoint verify <dir>`: checks a checkpoint directory on its own terms: the publishers'
// signature over its provenance (against the charter), the digests of its files, and, when the
// parent checkpoint and the listed contributions are at hand, the bit-exact recomputation.
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { verifyCheckpointDir } from '../../round/audit.ts'
import type { Command } from '../command.ts'
import { UsageError } from '../command.ts'

const usage = `Usage: coop checkpoint verify <checkpoint dir> [--store <dir>] [--charter <file>] [--require-recompute] [--credit] [--json]

Verifies a checkpoint directory (model.safetensors, momentum.safetensors, config.json,
provenance.json, charter.json):
  1. the charter's signature and the provenance's publisher signatures (threshold);
  2. every file against the digest the provenance signs;
  3. the recomputation: parent checkpoint + listed contributions -> the same bytes. The parent is
     looked up among sibling directories and in --store; contributions in --store's blobs.
Exit 0 when valid (recomputation passed, or unavailable without --require-recompute),
1 with an error code otherwise.

Options:
  --store <dir>          a node store holding the parent and the contribution payloads
  --charter <file>       the charter to verify against (default: the directory's charter.json)
  --require-recompute    fail (RECOMPUTE_UNAVAILABLE) when the recomputation cannot run
  --credit               also recompute the credit ledger (coop credit) from --store's signed
                         provenance and contribution statements
  --json                 print the report as JSON`

export const command: Command = {
  summary: 'verify a checkpoint: signatures, file digests, recomputation',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub !== 'verify')
      throw new UsageError(sub === undefined ? 'missing subcommand: verify' : `unknown subcommand '${sub}'`)
    const { values, positionals } = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: true,
      options: {
        store: { type: 'string' },
        charter: { type: 'string' },
        'require-recompute': { type: 'boolean' },
        credit: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    })
    if (positionals.length !== 1) throw new UsageError('give exactly one checkpoint directory')
    const charter = values.charter === undefined ? undefined : new Uint8Array(await readFile(values.charter))
    const report = await verifyCheckpointDir(positionals[0] as string, {
      ...(values.store === undefined ? {} : { storeDir: values.store }),
      ...(charter === undefined ? {} : { charter }),
    })
    if (report.ok && report.recomputation === 'unavailable' && values['require-recompute'] === true) {
      report.ok = false
      report.message = `recomputation unavailable: missing ${report.missing.join(', ')}`
    }
    let credit: import('../../credit/ledger.ts').Ledger | undefined
    if (values.credit === true) {
      if (values.store === undefined) throw new UsageError('--credit needs --store')
      if (report.ok) {
        const { ledgerFromStore } = await import('../../credit/ledger.ts')
        credit = await ledgerFromStore(values.store, positionals[0] as string)
      }
    }
    const code = report.ok
      ? undefined
      : (report.code ?? (report.recomputation === 'unavailable' ? 'RECOMPUTE_UNAVAILABLE' : 'BAD_CHECKPOINT'))
    if (values.json === true) {
      process.stdout.write(
        `${JSON.stringify({ ...report, ...(code === undefined ? {} : { code }), ...(credit === undefined ? {} : { credit }) }, null, 2)}\n`,
      )
    } else {
      const lines = [
        `checkpoint ${report.checkpoint ?? '?'} (${report.phase ?? '?'} round ${report.round ?? '?'})`,
        `coop       ${report.coop ?? '?'}`,
        `signed by  ${(report.signers ?? []).join(', ') || '-'}`,
        ...report.files.map((f) => `file       ${f.ok ? 'ok  ' : 'BAD '} ${f.name} ${f.digest}`),
        `recompute  ${report.recomputation}${report.missing.length > 0 ? ` (missing: ${report.missing.join('; ')})` : ''}`,
        ...(credit === undefined ? [] : (await import('./credit.ts')).ledgerLines(credit).slice(1)),
        report.ok ? 'VALID' : `INVALID ${code}: ${report.message ?? ''}`,
      ]
      process.stdout.write(`${lines.join('\n')}\n`)
    }
    return report.ok ? 0 : 1
  },
}
