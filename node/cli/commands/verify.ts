// `coop verify <file>`: verifies any of the five signed document kinds, recognised by content.
import { readFile, stat } from 'node:fs/promises'
import { verifyCharter } from '../../../protocol/charter.ts'
import { MANIFEST_MAX_BYTES } from '../../../protocol/constants.ts'
import { verifyContribution } from '../../../protocol/contribution.ts'
import { identifyDocument } from '../../../protocol/document.ts'
import { ProtocolError } from '../../../protocol/errors.ts'
import { verifyManifest } from '../../../protocol/manifest.ts'
import { verifyProvenance } from '../../../protocol/provenance.ts'
import { verifyAudit } from '../../../protocol/audit.ts'
import { verifyReceipt } from '../../../protocol/receipt.ts'
import { verifyRevocation } from '../../../protocol/revocation.ts'
import { parseCommandArgs, singlePositional } from '../args.ts'
import { CliError, type Command } from '../command.ts'

const usage = `Usage: coop verify <file> [--charter <charter.json>] [--revocations <file>]...

Verifies a consent manifest, revocation notice, coop charter, contribution statement,
checkpoint provenance, memorization audit or unlearning receipt, recognised by its content. Exit 0 and a summary when valid; exit 1
and the error code (BAD_SIGNATURE, EXPIRED, SCHEMA, ...) when not.
  --charter       for provenance and receipts: check the publisher signatures and threshold against this
                  charter (without it, only that every signature verifies is checked)
  --revocations   for manifests: apply these revocation notices`

async function readBounded(path: string): Promise<Uint8Array> {
  let size: number
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new CliError('NOT_FOUND', `${path} is not a file`)
    size = info.size
  } catch (error) {
    if (error instanceof CliError) throw error
    throw new CliError('NOT_FOUND', `no file at ${path}`)
  }
  // The largest kind's limit, checked before reading; each verifier then applies its own.
  if (size > MANIFEST_MAX_BYTES)
    throw new ProtocolError('TOO_LARGE', `${path} is larger than ${MANIFEST_MAX_BYTES} bytes`)
  return new Uint8Array(await readFile(path))
}

export const command: Command = {
  summary: 'verify any signed document: manifest, revocation, charter, contribution, provenance, audit',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { charter: { type: 'string' }, revocations: { type: 'string', multiple: true } },
      { allowPositionals: true },
    )
    const bytes = await readBounded(singlePositional(positionals, 'file'))
    const kind = identifyDocument(bytes)
    const out: string[] = []
    switch (kind) {
      case 'manifest': {
        const revocations = await Promise.all((values.revocations ?? []).map(readBounded))
        const v = verifyManifest(bytes, { now: new Date(), revocations })
        out.push(
          `valid ConsentManifest ${v.digest}`,
          `issuer    ${v.issuer}`,
          `custodian ${v.custodian}`,
          `items     ${v.items.length} (merkle root ${v.merkleRoot})`,
        )
        if (v.revokedItems.size > 0) out.push(`revoked   ${v.revokedItems.size} items`)
        break
      }
      case 'revocation': {
        const v = verifyRevocation(bytes)
        out.push(
          `valid RevocationNotice ${v.digest}`,
          `issuer    ${v.issuer}`,
          `manifest  ${v.manifest}`,
          `items     ${v.items === 'all' ? 'all' : v.items.length}`,
          `revoked   ${v.revokedAt}`,
        )
        break
      }
      case 'charter': {
        const v = verifyCharter(bytes)
        out.push(
          `valid CoopCharter coop ${v.coopId}`,
          `publishers ${v.charter.publishers.length} (threshold ${v.charter.threshold}); signed by ${v.signers.join(', ')}`,
          `licenses  ${v.charter.acceptedLicenses.join(', ')}`,
          `admission ${v.charter.admission.mode}`,
        )
        break
      }
      case 'contribution': {
        const v = verifyContribution(bytes)
        const p = v.predicate
        out.push(
          `valid ContributionStatement ${v.digest}`,
          `contributor ${v.contributor}`,
          `coop      ${p.coop}`,
          `round     ${p.round} (${p.phase}), ${p.samples} samples, ${p.localSteps} steps, loss ${p.loss}`,
          `delta     ${v.delta} (${p.codec.kind})`,
          `manifests ${p.manifests.length}`,
        )
        break
      }
      case 'provenance': {
        let publishers: readonly string[]
        let threshold: number
        let coopId: string | undefined
        if (values.charter !== undefined) {
          const charter = verifyCharter(await readBounded(values.charter))
          publishers = charter.charter.publishers
          threshold = charter.charter.threshold
          coopId = charter.coopId
        } else {
          // Without a charter nobody says who may publish: check the signatures only, and say so.
          const signatures = (JSON.parse(new TextDecoder().decode(bytes)) as { signatures?: unknown })
            .signatures
          publishers = Array.isArray(signatures)
            ? signatures.map((s) => String((s as { keyid?: unknown })?.keyid))
            : []
          threshold = 1
        }
        const v = verifyProvenance(bytes, {
          publishers,
          threshold,
          ...(coopId === undefined ? {} : { coopId }),
        })
        const p = v.predicate
        out.push(
          `valid CheckpointProvenance ${v.digest}`,
          `signed by ${v.signers.join(', ')}`,
          `coop      ${p.coop}`,
          `round     ${p.round} (${p.phase}), ${p.contributions.length} contributions, ${p.manifests.length} manifests`,
        )
        for (const [name, digest] of v.files) out.push(`file      ${name} ${digest}`)
        out.push(`license   ${p.license}`)
        if (values.charter === undefined)
          out.push('note      publisher authority not checked: pass --charter <charter.json>')
        break
      }
      case 'audit': {
        const v = verifyAudit(bytes)
        const p = v.predicate
        out.push(
          `valid MemorizationAudit ${v.digest}`,
          `auditor   ${v.auditor}`,
          `checkpoint ${p.checkpoint ?? '(local training output)'}${p.round === null ? '' : ` round ${p.round}`}`,
          `images    ${p.images} audited, ${p.flagged.length} flagged (l2 < ${p.thresholds.l2}, ratio < ${p.thresholds.ratio})`,
          `samples   ${p.method.samples}, features ${p.method.features.extractor}`,
          `report    ${p.report} (sha256 of audit.json)`,
        )
        for (const [name, digest] of v.files) out.push(`file      ${name} ${digest}`)
        break
      }
      case 'receipt': {
        // Publisher authority as for a provenance: from --charter, else the signatures only.
        const charter =
          values.charter === undefined ? undefined : verifyCharter(await readBounded(values.charter))
        const signatures = (JSON.parse(new TextDecoder().decode(bytes)) as { signatures?: unknown })
          .signatures
        const v = verifyReceipt(bytes, {
          publishers:
            charter?.charter.publishers ??
            (Array.isArray(signatures)
              ? signatures.map((s) => String((s as { keyid?: unknown })?.keyid))
              : []),
          threshold: charter?.charter.threshold ?? 1,
          ...(charter === undefined ? {} : { coopId: charter.coopId }),
        })
        const p = v.predicate
        out.push(
          `valid UnlearningReceipt ${v.digest}`,
          `signed by ${v.signers.join(', ')}`,
          `coop      ${p.coop}`,
          `round     ${p.round} (${p.phase}) continues from ${p.newBase.provenance} (round ${p.newBase.round})`,
          `revoked   ${p.revokedItems.length} items by ${p.revocations.length} revocations`,
        )
        for (const s of p.superseded) out.push(`superseded ${s.provenance} (round ${s.round})`)
        if (charter === undefined)
          out.push('note      publisher authority not checked: pass --charter <charter.json>')
        break
      }
    }
    process.stdout.write(`${out.join('\n')}\n`)
    return 0
  },
}
