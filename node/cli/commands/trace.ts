// `coop trace`: what a checkpoint learned from, and where an image went. Reads the store's
// checkpoint directories and blobs only (no database lock), so it works while the node runs.
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { sha256Digest } from '../../../protocol/digest.ts'
import { imageUnlearning, type ImageUnlearning } from '../../round/unlearning-files.ts'
import { loadLineage, type LoadedCheckpoint } from '../../round/audit.ts'
import { sniffFileKind, withArticle } from '../../file-kind.ts'
import { assertStoreFolder } from '../../store/dirs.ts'
import type { Command } from '../command.ts'
import { CliError, UsageError } from '../command.ts'

const usage = `Usage: coop trace --store <dir> (--image <file|sha256:...> | --checkpoint <digest>) [--json]

  --image       every checkpoint whose lineage includes a contribution that trained on the image
                (a file is hashed; or give its sha256: digest), with the rounds and contributing peers;
                a revoked image says so, with the checkpoint that recorded its revocation
  --checkpoint  the attribution list the checkpoint's licenses require: rights holders, licenses,
                item counts. The digest is the checkpoint id (provenance statement digest), the
                sha256 of its provenance.json or of its model.safetensors.
  --json        machine-readable output`

const DIGEST = /^sha256:[0-9a-f]{64}$/

/** Where a revocation of the image was recorded: the first checkpoint listing it as excluded. */
interface RevokedAt {
  checkpoint: string
  phase: string
  round: number
  /** The revocations that checkpoint recorded (one of them withdrew the image). */
  revocations: string[]
}

/**
 * The earliest verified checkpoint whose exclusion details (checked against its provenance) list
 * the image among the items revoked since its parent. Checkpoints record what the publisher knew at closing; a revocation this
 * node received after the latest checkpoint is not in any file yet (the trace reads no database).
 */
function revocationOf(image: string, checkpoints: LoadedCheckpoint[]): RevokedAt | undefined {
  let first: RevokedAt | undefined
  for (const c of checkpoints) {
    const p = c.verified.predicate
    const excluded = c.exclusions
    if (excluded === undefined || !excluded.items.includes(image)) continue
    if (first !== undefined && first.round <= p.round) continue
    first = {
      checkpoint: c.verified.digest,
      phase: p.phase,
      round: p.round,
      revocations: [...excluded.revocations],
    }
  }
  return first
}

export const command: Command = {
  summary: 'trace an image to checkpoints, or list what a checkpoint must attribute',
  usage,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        store: { type: 'string' },
        image: { type: 'string' },
        checkpoint: { type: 'string' },
        json: { type: 'boolean' },
      },
    })
    if (values.store === undefined) throw new UsageError('--store is required')
    if ((values.image === undefined) === (values.checkpoint === undefined))
      throw new UsageError('give exactly one of --image or --checkpoint')
    await assertStoreFolder(values.store)
    const { index, checkpoints } = await loadLineage(values.store)
    if (values.image !== undefined) {
      if (!DIGEST.test(values.image)) {
        const kind = await sniffFileKind(values.image)
        if (kind === 'missing') throw new CliError('NOT_FOUND', `--image ${values.image}: no such file`)
        if (kind !== 'image')
          throw new CliError(
            'WRONG_FILE_KIND',
            `--image ${values.image} is ${withArticle(kind)}, not an image`,
          )
      }
      const image = DIGEST.test(values.image)
        ? values.image
        : sha256Digest(new Uint8Array(await readFile(values.image)))
      const entries = index.traceImage(image)
      const manifests = index.manifestsWithImage(image).map((m) => m.id)
      const revoked = revocationOf(image, checkpoints)
      const unlearning = await imageUnlearning(index, checkpoints, entries)
      if (values.json === true) {
        process.stdout.write(
          `${JSON.stringify({ image, manifests, revoked: revoked ?? null, checkpoints: entries, ...unlearning }, null, 2)}\n`,
        )
        return 0
      }
      const lines = [
        `image ${image}`,
        `in manifests: ${manifests.length === 0 ? 'none known here' : manifests.join(', ')}`,
      ]
      if (revoked !== undefined)
        lines.push(
          `REVOKED: its rights holder withdrew consent; excluded from training since ${revoked.phase} round ${revoked.round} (checkpoint ${revoked.checkpoint}, recording revocation ${revoked.revocations.join(', ')})`,
        )
      if (entries.length === 0)
        lines.push(
          `no checkpoint in this store learned from it (${checkpoints.length} verified checkpoint(s) searched)`,
        )
      else if (revoked !== undefined)
        lines.push(
          'checkpoints that learned from it before the revocation (what they learned stays in their weights):',
        )
      for (const e of entries) {
        const rounds = [...new Set(e.via.map((v) => v.round))].sort((a, b) => a - b)
        const peers = [...new Set(e.via.map((v) => v.peer))].sort()
        lines.push(
          `${e.phase} round ${e.round} ${e.checkpoint}  via rounds ${rounds.join(',')} from ${peers.join(', ')}`,
        )
      }
      lines.push(...unlearningLines(unlearning, entries.length > 0))
      process.stdout.write(`${lines.join('\n')}\n`)
      return 0
    }
    const wanted = values.checkpoint as string
    if (!DIGEST.test(wanted)) throw new UsageError('--checkpoint takes a sha256:<64 hex> digest')
    const match =
      checkpoints.find(
        (c) => c.verified.digest === wanted || c.verified.files.get('model.safetensors') === wanted,
      ) ??
      (await (async () => {
        for (const c of checkpoints) {
          const bytes = new Uint8Array(await readFile(`${c.dir}/provenance.json`))
          if (sha256Digest(bytes) === wanted) return c
        }
        return undefined
      })())
    if (match === undefined)
      throw new CliError('UNKNOWN_CHECKPOINT', `no verified checkpoint ${wanted} in ${values.store}`)
    const attribution = index.attribution(match.verified.digest)
    const license = match.verified.predicate.license
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ ...attribution, license }, null, 2)}\n`)
      return 0
    }
    const lines = [
      `checkpoint ${attribution.checkpoint} (${attribution.phase} round ${attribution.round})`,
      `license    ${license}`,
      `lineage    ${attribution.contributions} contributions over ${attribution.rounds} rounds`,
      '',
      'attribution:',
      ...attribution.entries.map(
        (e) =>
          `  ${e.name} (${e.license}) - ${e.items} item(s)${e.uri === undefined ? '' : ` - ${e.uri}`}${e.text === undefined ? '' : `\n    "${e.text}"`}\n    issuer ${e.issuer}; trained by ${e.contributors.join(', ')}`,
      ),
    ]
    if (attribution.unknownManifests.length > 0)
      lines.push('', `manifests not available in this store: ${attribution.unknownManifests.join(', ')}`)
    process.stdout.write(`${lines.join('\n')}\n`)
    return 0
  },
}

/** "used by checkpoints X..Y (superseded by receipt R)" and whether the current lineage uses the image. */
function unlearningLines(u: ImageUnlearning, used: boolean): string[] {
  const out: string[] = []
  for (const s of u.superseded) {
    const rounds = s.checkpoints.map((c) => c.round)
    const span = rounds.length === 1 ? `round ${rounds[0]}` : `rounds ${rounds[0]}..${rounds.at(-1)}`
    out.push(
      `used by checkpoints of ${span} (${s.checkpoints.map((c) => c.checkpoint).join(', ')}), superseded by receipt ${s.receipt} (rollback at round ${s.rollbackRound})`,
    )
  }
  if (used && u.current !== undefined)
    out.push(
      u.current.uses
        ? `USED by the current lineage (${u.current.phase} round ${u.current.round} ${u.current.checkpoint})`
        : `not used by the current lineage (${u.current.phase} round ${u.current.round} ${u.current.checkpoint})`,
    )
  return out
}
