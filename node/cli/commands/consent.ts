// `coop consent create|verify|revoke`: a rights holder signs consent for an image folder,
// anyone checks a manifest (optionally against the folder), and the issuer withdraws it.
import { writeFileDurable } from '../../store/durable.ts'
import { createHash } from 'node:crypto'
import { open, readdir, readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join, relative } from 'node:path'
import {
  MANIFEST_MAX_BYTES,
  MANIFEST_MAX_ITEM_BYTES,
  MANIFEST_MAX_ITEMS,
  REVOCATION_MAX_BYTES,
} from '../../../protocol/constants.ts'
import { isDigest } from '../../../protocol/digest.ts'
import { sniffMediaType } from '../../../protocol/media-type.ts'
import { ProtocolError } from '../../../protocol/errors.ts'
import { canonicalize } from '../../../protocol/jcs.ts'
import { didKeyFromPublicKey, peerIdString, publicKeyFromIdentity } from '../../../protocol/keys.ts'
import {
  createManifest,
  type ManifestItem,
  verifyManifest,
  type VerifiedManifest,
} from '../../../protocol/manifest.ts'
import { createRevocation, verifyRevocation } from '../../../protocol/revocation.ts'
import { describeSignals } from '../../../protocol/data-mining.ts'
import { readEmbeddedOptOut } from '../../../trainer/embedded-metadata.ts'
import { readKeyFile } from '../../keystore.ts'
import { sniffFileKind, withArticle } from '../../file-kind.ts'
import { parseCommandArgs, requireFlags, singlePositional } from '../args.ts'
import { assertFileOutputFree } from '../outputs.ts'
import { CliError, type Command, UsageError } from '../command.ts'

const usage = `Usage:
  coop consent create <dir> --key <file> --license <SPDX> --attribution-name <s>
        [--attribution-uri <u>] [--attribution-text <t>] --custodian <peerId>
        [--valid-until <ISO date>] [--commercial yes|no] [--redistribute-weights yes|no]
        --out <manifest.json> [--force]
      Hash every image under <dir> and sign a consent manifest (W3C VC 2.0, eddsa-jcs-2022)
      letting node <peerId> train on them. Defaults: --commercial no, --redistribute-weights yes.
      A file whose own metadata forbids AI or generative training (XMP plus:DataMining
      DMI-PROHIBITED-*, or a CAWG entry notAllowed/constrained) is left out and listed: the
      most restrictive signal wins, and trainers refuse such files even when a manifest lists them.
  coop consent verify <manifest.json> [--dir <dir>] [--revocations <file>]... [--accept <SPDX,...>]
      Exit 0 with a summary when valid, 1 with the error code when not. With --dir, also list
      images in the folder that the manifest does not cover and items missing from the folder.
  coop consent revoke <manifest.json> --key <file> [--items <sha256:...,...>] [--reason <text>]
        --out <revocation.json> [--force]
      Withdraw consent for the listed items, or for all items when --items is omitted.

An existing --out is never overwritten unless --force is given.`

/** Files larger than this are read in chunks; below it one read is faster and as bounded. */
const READ_CHUNK_BYTES = 1024 * 1024
/** Files hashed concurrently: enough to keep the disk and the hash busy without fd pressure. */
const HASH_CONCURRENCY = 16
/** Show a progress bar from this many files on, on a terminal only. */
const PROGRESS_MIN_FILES = 500

export interface ScannedImage {
  path: string
  digest: string
  mediaType: ManifestItem['mediaType']
  byteLength: number
}

export interface FolderScan {
  images: ScannedImage[]
  /** Regular files that are not PNG, JPEG, GIF or WebP by their first bytes. */
  skipped: string[]
  bytesHashed: number
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true })
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const entry of entries) {
      const full = join(folder, entry.name)
      // Symlinks are not followed: they could leave the folder or loop.
      if (entry.isDirectory()) await walk(full)
      else if (entry.isFile()) out.push(full)
    }
  }
  await walk(dir)
  return out
}

async function hashFile(
  path: string,
  buffer: Buffer,
): Promise<{ digest: string; head: Uint8Array; size: number }> {
  const handle = await open(path, 'r')
  try {
    const hash = createHash('sha256')
    let size = 0
    let head: Uint8Array | undefined
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null)
      if (bytesRead === 0) break
      if (head === undefined) head = Uint8Array.from(buffer.subarray(0, Math.min(16, bytesRead)))
      size += bytesRead
      if (size > MANIFEST_MAX_ITEM_BYTES)
        throw new CliError('TOO_LARGE', `${path} is larger than ${MANIFEST_MAX_ITEM_BYTES} bytes`)
      hash.update(buffer.subarray(0, bytesRead))
    }
    return { digest: `sha256:${hash.digest('hex')}`, head: head ?? new Uint8Array(0), size }
  } finally {
    await handle.close()
  }
}

interface ProgressBar {
  start(total: number, start: number): void
  increment(): void
  stop(): void
}

function createBar(total: number): ProgressBar | undefined {
  if (total < PROGRESS_MIN_FILES || !process.stderr.isTTY) return undefined
  const require = createRequire(import.meta.url)
  const cliProgress = require('cli-progress') as {
    SingleBar: new (options: Record<string, unknown>) => ProgressBar
  }
  const bar = new cliProgress.SingleBar({
    format: 'hashing |{bar}| {value}/{total} files | ETA {eta_formatted}',
    stream: process.stderr,
    hideCursor: true,
  })
  bar.start(total, 0)
  return bar
}

/** Hashes every regular file under `dir` (streaming, bounded concurrency) and sniffs image types. */
export async function scanImageFolder(
  dir: string,
  options: { progress?: boolean } = {},
): Promise<FolderScan> {
  let info: Awaited<ReturnType<typeof stat>>
  try {
    info = await stat(dir)
  } catch {
    throw new CliError('NOT_FOUND', `no folder at ${dir}`)
  }
  if (!info.isDirectory()) throw new CliError('NOT_FOUND', `${dir} is not a folder`)
  const files = await listFiles(dir)
  const bar = options.progress === false ? undefined : createBar(files.length)
  const results: ({ path: string; digest: string; head: Uint8Array; size: number } | undefined)[] = new Array(
    files.length,
  )
  let next = 0
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES)
    while (next < files.length) {
      const index = next++
      const path = files[index] as string
      results[index] = { path, ...(await hashFile(path, buffer)) }
      bar?.increment()
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, files.length) }, worker))
  } finally {
    bar?.stop()
  }
  const images: ScannedImage[] = []
  const skipped: string[] = []
  let bytesHashed = 0
  for (const result of results) {
    if (result === undefined) continue
    bytesHashed += result.size
    const mediaType = result.size > 0 ? sniffMediaType(result.head) : undefined
    if (mediaType === undefined) skipped.push(result.path)
    else images.push({ path: result.path, digest: result.digest, mediaType, byteLength: result.size })
  }
  return { images, skipped, bytesHashed }
}

/** Images whose own metadata forbids AI or generative training, with the signals that say so. */
async function findOptedOut(images: ScannedImage[]): Promise<{ image: ScannedImage; reason: string }[]> {
  const refused: { image: ScannedImage; reason: string }[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < images.length) {
      const image = images[next++] as ScannedImage
      try {
        const verdict = await readEmbeddedOptOut(image.path)
        if (!verdict.allowed) refused.push({ image, reason: describeSignals(verdict.refusing) })
      } catch (error) {
        // Not decodable: no trainer can use it either; it stays listed as its bytes are what was consented.
        if (error instanceof CliError) throw error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, images.length) }, worker))
  return refused.sort((a, b) => (a.image.path < b.image.path ? -1 : a.image.path > b.image.path ? 1 : 0))
}

function yesNo(name: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (value === 'yes') return true
  if (value === 'no') return false
  throw new UsageError(`--${name} must be yes or no`)
}

function parseDate(name: string, text: string): Date {
  const ms = Date.parse(text)
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || !Number.isFinite(ms))
    throw new UsageError(`--${name} must be an ISO 8601 date, e.g. 2027-01-01 or 2027-01-01T00:00:00Z`)
  return new Date(ms)
}

/**
 * Writes the canonical JSON atomically (temp file + rename), so readers never see half a file.
 * No trailing newline: the canonical bytes are the only accepted encoding.
 */
async function writeDocument(path: string, document: unknown): Promise<void> {
  await writeFileDurable(path, canonicalize(document))
}

/** The folder to sign for: a manifest or key given here by mistake is named, not hashed. */
async function assertImageFolder(folder: string): Promise<void> {
  const kind = await sniffFileKind(folder)
  if (kind === 'missing') throw new CliError('NOT_FOUND', `no folder at ${folder}`)
  if (kind !== 'folder')
    throw new CliError(
      'WRONG_FILE_KIND',
      `${folder} is ${withArticle(kind)}, not a folder of images to sign for`,
    )
}

async function readDocument(path: string, maxBytes: number): Promise<Uint8Array> {
  let info: Awaited<ReturnType<typeof stat>>
  try {
    info = await stat(path)
  } catch {
    throw new CliError('NOT_FOUND', `no file at ${path}`)
  }
  if (!info.isFile()) throw new CliError('NOT_FOUND', `${path} is not a file`)
  // Checked before reading: a huge file is rejected without being loaded.
  if (info.size > maxBytes) throw new ProtocolError('TOO_LARGE', `${path} is larger than ${maxBytes} bytes`)
  return new Uint8Array(await readFile(path))
}

async function create(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      key: { type: 'string' },
      license: { type: 'string' },
      'attribution-name': { type: 'string' },
      'attribution-uri': { type: 'string' },
      'attribution-text': { type: 'string' },
      custodian: { type: 'string' },
      'valid-until': { type: 'string' },
      commercial: { type: 'string' },
      'redistribute-weights': { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
    },
    { allowPositionals: true },
  )
  const folder = singlePositional(positionals, 'folder')
  requireFlags(values, ['key', 'license', 'attribution-name', 'custodian', 'out'])
  // Before hashing anything: a second manifest written over the first changes its digest.
  await assertFileOutputFree(values.out, values.force === true)
  await assertImageFolder(folder)
  const custodian = values.custodian
  if (custodian.startsWith('did:'))
    throw new UsageError('--custodian must be a node PeerId (12D3KooW...), not a did')
  publicKeyFromIdentity(custodian)
  const validUntil =
    values['valid-until'] === undefined ? undefined : parseDate('valid-until', values['valid-until'])
  const commercialUse = yesNo('commercial', values.commercial, false)
  const weightRedistribution = yesNo('redistribute-weights', values['redistribute-weights'], true)
  const key = await readKeyFile(values.key)
  const started = performance.now()
  const scan = await scanImageFolder(folder)
  const unique = new Map<string, ScannedImage>()
  for (const image of scan.images) if (!unique.has(image.digest)) unique.set(image.digest, image)
  if (unique.size === 0) throw new CliError('NO_IMAGES', `no PNG, JPEG, GIF or WebP files under ${folder}`)
  const optedOut = await findOptedOut([...unique.values()])
  for (const refused of optedOut) {
    unique.delete(refused.image.digest)
    process.stderr.write(
      `refused: ${relative(folder, refused.image.path)}: its metadata forbids AI training: ${refused.reason}\n`,
    )
  }
  if (unique.size === 0)
    throw new CliError(
      'NO_IMAGES',
      `every image under ${folder} forbids AI training in its own metadata (${optedOut.length} refused)`,
    )
  if (unique.size > MANIFEST_MAX_ITEMS)
    throw new ProtocolError(
      'TOO_LARGE',
      `${unique.size} images; a manifest holds at most ${MANIFEST_MAX_ITEMS}: split the folder`,
    )
  const now = new Date()
  if (validUntil !== undefined && validUntil.getTime() <= now.getTime())
    throw new UsageError('--valid-until must be in the future')
  const manifest = createManifest({
    issuerKey: key,
    custodian,
    license: values.license,
    attribution: {
      name: values['attribution-name'],
      ...(values['attribution-uri'] === undefined ? {} : { uri: values['attribution-uri'] }),
      ...(values['attribution-text'] === undefined ? {} : { text: values['attribution-text'] }),
    },
    scope: { commercialUse, weightRedistribution },
    items: [...unique.values()].map(({ digest, mediaType, byteLength }) => ({
      digest,
      mediaType,
      byteLength,
    })),
    validFrom: now,
    ...(validUntil === undefined ? {} : { validUntil }),
  })
  await writeDocument(values.out, manifest)
  const verified = verifyManifest(await readDocument(values.out, MANIFEST_MAX_BYTES), { now })
  const seconds = (performance.now() - started) / 1000
  const lines = [
    `manifest  ${values.out}`,
    `digest    ${verified.digest}`,
    `issuer    ${verified.issuer}`,
    `custodian ${verified.custodian}`,
    `items     ${verified.items.length} (merkle root ${verified.merkleRoot})`,
    `license   ${manifest.credentialSubject.license}`,
    `hashed    ${scan.bytesHashed} bytes in ${seconds.toFixed(2)} s`,
  ]
  if (scan.images.length > unique.size)
    lines.push(`duplicates ${scan.images.length - unique.size} identical files listed once`)
  if (optedOut.length > 0)
    lines.push(
      `refused   ${optedOut.length} image(s) whose embedded metadata forbids AI training (listed above)`,
    )
  if (scan.skipped.length > 0)
    lines.push(
      `skipped   ${scan.skipped.length} files that are not images (first: ${relative(folder, scan.skipped[0] as string)})`,
    )
  process.stdout.write(`${lines.join('\n')}\n`)
  return 0
}

async function verify(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    { dir: { type: 'string' }, revocations: { type: 'string', multiple: true }, accept: { type: 'string' } },
    { allowPositionals: true },
  )
  const manifestPath = singlePositional(positionals, 'manifest file')
  const revocations = await Promise.all(
    (values.revocations ?? []).map((path) => readDocument(path, REVOCATION_MAX_BYTES)),
  )
  const acceptedLicenses =
    values.accept === undefined ? undefined : values.accept.split(',').map((s) => s.trim())
  const verified: VerifiedManifest = verifyManifest(await readDocument(manifestPath, MANIFEST_MAX_BYTES), {
    now: new Date(),
    revocations,
    ...(acceptedLicenses === undefined ? {} : { acceptedLicenses }),
  })
  const subject = verified.manifest.credentialSubject
  const lines = [
    `valid     ConsentManifest ${verified.digest}`,
    `issuer    ${verified.issuer}`,
    `custodian ${verified.custodian}`,
    `items     ${verified.items.length} (merkle root ${verified.merkleRoot})`,
    `license   ${subject.license}; attribution: ${subject.attribution.name}`,
    `usage     generative training ${subject.usage['cawg.ai_generative_training'].use}; commercial use ${subject.scope.commercialUse ? 'yes' : 'no'}; weight redistribution ${subject.scope.weightRedistribution ? 'yes' : 'no'}`,
    `valid     from ${verified.manifest.validFrom}${verified.manifest.validUntil === undefined ? '' : ` until ${verified.manifest.validUntil}`}`,
  ]
  if (verified.appliedRevocations.length > 0)
    lines.push(
      `revoked   ${verified.revokedItems.size} items by ${verified.appliedRevocations.length} revocation(s)`,
    )
  process.stdout.write(`${lines.join('\n')}\n`)
  if (values.dir === undefined) return 0

  const scan = await scanImageFolder(values.dir)
  const listed = new Set(verified.items.map((item) => item.digest))
  const present = new Set(scan.images.map((image) => image.digest))
  const notInManifest = scan.images.filter((image) => !listed.has(image.digest))
  const missing = verified.items.filter((item) => !present.has(item.digest))
  for (const image of notInManifest)
    process.stdout.write(`not in manifest: ${relative(values.dir, image.path)} (${image.digest})\n`)
  for (const item of missing) process.stdout.write(`missing from folder: ${item.digest}\n`)
  if (notInManifest.length > 0 || missing.length > 0)
    throw new CliError(
      'DIR_MISMATCH',
      `${notInManifest.length} image(s) in ${values.dir} not covered by the manifest, ${missing.length} manifest item(s) missing from it`,
    )
  process.stdout.write(`folder    all ${scan.images.length} images match the manifest\n`)
  return 0
}

async function revoke(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      key: { type: 'string' },
      items: { type: 'string' },
      reason: { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
    },
    { allowPositionals: true },
  )
  const manifestPath = singlePositional(positionals, 'manifest file')
  requireFlags(values, ['key', 'out'])
  await assertFileOutputFree(values.out, values.force === true)
  const bytes = await readDocument(manifestPath, MANIFEST_MAX_BYTES)
  const key = await readKeyFile(values.key)
  // Checked at its own validFrom: a manifest can be revoked after it has expired.
  let at = new Date()
  try {
    const validFrom = (JSON.parse(new TextDecoder().decode(bytes)) as { validFrom?: unknown } | null)
      ?.validFrom
    if (typeof validFrom === 'string' && Number.isFinite(Date.parse(validFrom))) at = new Date(validFrom)
  } catch {
    // Not JSON: verifyManifest below reports it with its typed code.
  }
  const verified = verifyManifest(bytes, { now: at })
  if (didKeyFromPublicKey(key.publicKey) !== verified.issuer)
    throw new ProtocolError(
      'ISSUER_MISMATCH',
      peerIdString(key.publicKey) === verified.custodian
        ? `--key ${values.key} is the node key of the custodian; only the rights holder's key that issued the manifest (${verified.issuer}) can revoke it`
        : `only the key that issued the manifest (${verified.issuer}) can revoke it; --key ${values.key} is ${didKeyFromPublicKey(key.publicKey)}`,
    )
  let items: string[] | 'all' = 'all'
  if (values.items !== undefined) {
    items = values.items.split(',').map((s) => s.trim())
    const listed = new Set(verified.items.map((item) => item.digest))
    for (const item of items) {
      if (!isDigest(item)) throw new UsageError(`--items: ${item} is not a sha256:<64 hex> digest`)
      if (!listed.has(item)) throw new CliError('UNKNOWN_ITEM', `${item} is not an item of this manifest`)
    }
  }
  const revocation = createRevocation({
    issuerKey: key,
    manifest: verified.digest,
    items,
    ...(values.reason === undefined ? {} : { reason: values.reason }),
  })
  await writeDocument(values.out, revocation)
  const check = verifyRevocation(await readDocument(values.out, REVOCATION_MAX_BYTES))
  process.stdout.write(
    `revocation ${values.out}\ndigest     ${check.digest}\nmanifest   ${check.manifest}\nitems      ${check.items === 'all' ? 'all' : check.items.length}\n`,
  )
  return 0
}

export const command: Command = {
  summary: 'sign, verify or revoke consent manifests for image folders',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === 'create') return create(rest)
    if (sub === 'verify') return verify(rest)
    if (sub === 'revoke') return revoke(rest)
    throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`)
  },
}
