// `coop checkpoint verify <dir>`: checks a checkpoint directory against the charter the user
// trusts (never the directory's own copy alone): the publishers' signature over its provenance,
// the digests of its files, each listed contribution against the statement its contributor
// signed, and, when the parent checkpoint and the listed contributions are at hand, the
// bit-exact recomputation.
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { type VerifyReport, verifyCheckpointDir } from '../../round/audit.ts'
import type { CharterSource } from '../../round/pinned-charter.ts'
import { sniffFileKind, withArticle } from '../../file-kind.ts'
import { assertStoreFolder } from '../../store/dirs.ts'
import type { Command } from '../command.ts'
import { CliError, UsageError } from '../command.ts'

const usage = `Usage: coop checkpoint verify <checkpoint dir> (--store <dir> | --charter <file> | --coop <id>) [--require-recompute] [--credit] [--json]

Verifies a checkpoint directory (model.safetensors, momentum.safetensors, config.json,
provenance.json, charter.json):
  1. the charter you trust: --charter, or --coop (a copy whose digest is that coop id, in the
     store or the directory), or the --store's charter.json. The directory's own charter.json is
     never trusted alone, and must be the same coop's (CHARTER_MISMATCH otherwise);
  2. the provenance's publisher signatures (threshold) against that charter;
  3. every file against the digest the provenance signs (file names are plain names);
  4. every listed contribution against the statement its contributor signed: the listed delta is
     the one it names (CONTRIBUTION_MISMATCH otherwise); the parent's weights and momentum against
     the parent's own signed digests (PARENT_MISMATCH when the parent is not the one named);
  5. the recomputation: parent checkpoint + listed contributions -> the same bytes. The parent is
     looked up among sibling directories and in --store; contributions in --store's blobs.
The last line says what was checked: VALID (signature, digests, recomputation), or for a
genesis checkpoint VALID (signature, digests; genesis: nothing to recompute), or when the parent
or a contribution is not at hand VALID (signature, digests; recomputation not checked: ...).

Exit codes:
  0  valid, everything checked (recomputation passed, or genesis)
  3  signature and digests valid, recomputation not checked (pass --store; see 'missing')
  1  invalid (the error code says which check failed), or --require-recompute could not recompute
  2  usage error

Options:
  --store <dir>          a node store holding the parent and the contribution payloads
  --charter <file>       the charter to verify against
  --coop <id>            the coop id (sha256:...) the checkpoint must belong to
  --require-recompute    fail (RECOMPUTE_UNAVAILABLE) when the recomputation cannot run
  --credit               also recompute the credit ledger (coop credit) from --store's signed
                         provenance and contribution statements
  --json                 print the report as JSON`

/** Signature and file digests verified, recomputation not checked: not a failure, not a full pass. */
export const EXIT_PARTIAL = 3

/** What VALID covers, so that a partial check is never read as a full one. */
function checkedSummary(report: VerifyReport, storeGiven: boolean): string {
  switch (report.recomputation) {
    case 'passed':
      return 'signature, digests, recomputation'
    case 'genesis':
      return 'signature, digests; genesis: nothing to recompute'
    default:
      return `signature, digests; recomputation not checked: ${storeGiven ? 'the store lacks what is missing' : 'pass --store <the node store>'}`
  }
}

const CHARTER_SOURCE_TEXT: Record<CharterSource, string> = {
  explicit: '--charter',
  'coop-id': 'a copy matching --coop',
  store: "the store's charter.json",
}

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
        coop: { type: 'string' },
        'require-recompute': { type: 'boolean' },
        credit: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    })
    if (positionals.length !== 1) throw new UsageError('give exactly one checkpoint directory')
    const dir = positionals[0] as string
    const kind = await sniffFileKind(dir)
    if (kind === 'missing') throw new CliError('NOT_FOUND', `no checkpoint directory at ${dir}`)
    if (kind !== 'folder')
      throw new CliError('WRONG_FILE_KIND', `${dir} is ${withArticle(kind)}: give the checkpoint's directory`)
    if (values.store !== undefined) await assertStoreFolder(values.store)
    const charter = values.charter === undefined ? undefined : new Uint8Array(await readFile(values.charter))
    const report = await verifyCheckpointDir(dir, {
      ...(values.store === undefined ? {} : { storeDir: values.store }),
      ...(charter === undefined ? {} : { charter }),
      ...(values.coop === undefined ? {} : { coopId: values.coop }),
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
      ? report.recomputation === 'unavailable'
        ? 'RECOMPUTE_UNAVAILABLE'
        : undefined
      : (report.code ?? (report.recomputation === 'unavailable' ? 'RECOMPUTE_UNAVAILABLE' : 'BAD_CHECKPOINT'))
    if (values.json === true) {
      process.stdout.write(
        `${JSON.stringify({ ...report, ...(code === undefined ? {} : { code }), ...(credit === undefined ? {} : { credit }) }, null, 2)}\n`,
      )
    } else {
      const lines = [
        `checkpoint ${report.checkpoint ?? '?'} (${report.phase ?? '?'} round ${report.round ?? '?'})`,
        `coop       ${report.coop ?? '?'}${report.charterSource === undefined ? '' : ` (charter from ${CHARTER_SOURCE_TEXT[report.charterSource]})`}`,
        `signed by  ${(report.signers ?? []).join(', ') || '-'}`,
        ...report.files.map((f) => `file       ${f.ok ? 'ok  ' : 'BAD '} ${f.name} ${f.digest}`),
        ...(report.exclusions === undefined
          ? []
          : [
              `excluded   ${report.exclusions.items} revoked items (${report.exclusions.revocations} revocations), ${report.exclusions.expiredManifests} expired manifests; details ${report.exclusions.details}`,
            ]),
        `recompute  ${report.recomputation}${report.missing.length > 0 ? ` (missing: ${report.missing.join('; ')})` : ''}`,
        ...unlearningLines(report),
        ...(credit === undefined ? [] : (await import('./credit.ts')).ledgerLines(credit).slice(1)),
        report.ok
          ? `VALID (${checkedSummary(report, values.store !== undefined)})`
          : `INVALID ${code}: ${report.message ?? ''}`,
      ]
      process.stdout.write(`${lines.join('\n')}\n`)
    }
    if (!report.ok) return 1
    return report.recomputation === 'unavailable' ? EXIT_PARTIAL : 0
  },
}

/** The unlearning line: the charter's policy and, under rollback, the lineage check and receipt. */
function unlearningLines(report: VerifyReport): string[] {
  const u = report.unlearning
  if (u === undefined || u.policy === 'exclude') return []
  const lineage =
    u.lineage === 'excludes-revoked'
      ? `lineage excludes all ${u.revokedItems ?? 0} revoked item(s)`
      : u.lineage === 'unavailable'
        ? 'lineage not checked (pass --store <the node store>)'
        : ''
  return [
    `unlearning rollback; ${lineage}`,
    ...(u.receipt === undefined ? [] : [`receipt    ${u.receipt} (continues from ${u.newBase ?? '?'})`]),
  ]
}
