// Prepares a demo cooperative with the same commands a user would type: `coop data twemoji`,
// `coop keys new`, `coop consent create`, `coop charter create`. Each step is skipped when its
// output already exists, so a resumed run keeps its keys, manifests and charter (and coop id).
import { existsSync } from 'node:fs'
import { link, copyFile, mkdir, readdir, rename, rm, writeFile, readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { didKeyFromPublicKey, peerIdString } from '../../protocol/keys.ts'
import { readKeyFile } from '../keystore.ts'
import { loadConfig } from '../../configs/index.ts'
import { runCoop } from './coop-cli.ts'
import { TWEMOJI_CONSENT } from './constants.ts'
import { DemoError } from './errors.ts'
import type { DemoLayout, PeerLayout } from './layout.ts'
import type { DemoParams } from './run-manifest.ts'
import { splitByCategory } from './split.ts'

export interface PeerIdentity {
  peer: PeerLayout
  peerId: string
  rightsHolder: string
  categories: string[]
  items: number
}

export interface DemoSetup {
  peers: PeerIdentity[]
  coopId: string
  /** The categories in the model's class order: the rows of the sample grids. */
  classes: string[]
}

type Note = (text: string) => void

async function listCategories(dir: string): Promise<{ category: string; files: string[] }[]> {
  const entries = await readdir(dir, { withFileTypes: true })
  const out: { category: string; files: string[] }[] = []
  for (const entry of entries) {
    if (!entry.isDirectory()) continue
    const files = (await readdir(join(dir, entry.name))).filter((f) => f.endsWith('.png')).sort()
    if (files.length > 0) out.push({ category: entry.name, files })
  }
  return out.sort((a, b) => (a.category < b.category ? -1 : 1))
}

/** Hard links where the filesystem allows (no extra disk), copies otherwise. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to)
  } catch {
    await copyFile(from, to)
  }
}

/** Fills `final` through a temp folder renamed into place: a crash leaves all or nothing. */
async function atomicFolder(final: string, fill: (temp: string) => Promise<void>): Promise<void> {
  const temp = `${final}.partial`
  await rm(temp, { recursive: true, force: true })
  await mkdir(temp, { recursive: true })
  await fill(temp)
  await rename(temp, final)
}

async function layoutData(
  layout: DemoLayout,
  params: DemoParams,
  note: Note,
): Promise<{ category: string; files: string[] }[]> {
  if (!existsSync(layout.twemojiDir)) {
    note(`laying out Twemoji (CC-BY 4.0), ${params.imagesPerCategory} images per category...`)
    await mkdir(join(layout.twemojiDir, '..'), { recursive: true })
    await atomicFolder(layout.twemojiDir, async (temp) => {
      const only = params.categories.length > 0 ? ['--categories', params.categories.join(',')] : []
      await runCoop([
        'data',
        'twemoji',
        '--out',
        temp,
        '--per-category',
        String(params.imagesPerCategory),
        // The quality metric scores samples against these held-out images: never train on them.
        '--without-quality-holdout',
        ...only,
      ])
    })
  }
  const categories = await listCategories(layout.twemojiDir)
  if (categories.length === 0)
    throw new DemoError('SETUP_FAILED', `no Twemoji category folders under ${layout.twemojiDir}`)
  return categories
}

async function splitData(
  layout: DemoLayout,
  categories: { category: string; files: string[] }[],
): Promise<{ categories: string[]; items: number }[]> {
  let shares: ReturnType<typeof splitByCategory>
  try {
    shares = splitByCategory(categories, layout.peers.length, { minImages: 1 })
  } catch (error) {
    throw new DemoError('SETUP_FAILED', (error as Error).message, { cause: error })
  }
  for (const [i, peer] of layout.peers.entries()) {
    const share = shares[i] as (typeof shares)[number]
    if (existsSync(peer.dataDir)) continue
    await mkdir(peer.dir, { recursive: true })
    await atomicFolder(peer.dataDir, async (temp) => {
      for (const category of share.categories) {
        await mkdir(join(temp, category))
        const files = categories.find((c) => c.category === category)?.files ?? []
        for (const file of files)
          await linkOrCopy(join(layout.twemojiDir, category, file), join(temp, category, file))
      }
    })
  }
  return shares
}

async function ensureKey(path: string): Promise<void> {
  if (!existsSync(path)) await runCoop(['keys', 'new', '--out', path])
}

/**
 * Runs `task` on every item, as many at once as the machine has cores: each is a `coop` process
 * whose time is mostly its Node boot on one core, so more at once would only queue for a core.
 * After a failure no lane starts another item; the first error is thrown.
 */
async function onEveryCore<T>(items: readonly T[], task: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed = false
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      try {
        await task(items[next++] as T)
      } catch (error) {
        failed = true
        throw error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(availableParallelism(), items.length) }, lane))
}

/** Runs the whole setup; returns who is who. `note` receives one line per step actually done. */
export async function prepareDemo(layout: DemoLayout, params: DemoParams, note: Note): Promise<DemoSetup> {
  const categories = await layoutData(layout, params, note)
  const shares = await splitData(layout, categories)

  const missingKeys = layout.peers.some((p) => !existsSync(p.nodeKey) || !existsSync(p.rightsKey))
  if (missingKeys)
    note(`creating a node key and a rights-holder key for each of ${layout.peers.length} peers...`)
  for (const peer of layout.peers) await mkdir(peer.dir, { recursive: true })
  await onEveryCore(
    layout.peers.flatMap((peer) => [peer.nodeKey, peer.rightsKey]),
    ensureKey,
  )
  const peers: PeerIdentity[] = []
  for (const [i, peer] of layout.peers.entries()) {
    const share = shares[i] as (typeof shares)[number]
    const nodeKey = await readKeyFile(peer.nodeKey)
    const rightsKey = await readKeyFile(peer.rightsKey)
    peers.push({
      peer,
      peerId: peerIdString(nodeKey.publicKey),
      rightsHolder: didKeyFromPublicKey(rightsKey.publicKey),
      categories: share.categories,
      items: share.items,
    })
  }

  const missingConsent = peers.filter((p) => !existsSync(p.peer.consent))
  if (missingConsent.length > 0)
    note(
      `signing ${missingConsent.length} consent manifests (${TWEMOJI_CONSENT.license}, custodian = each peer's node)...`,
    )
  await onEveryCore(missingConsent, async (p) => {
    await runCoop([
      'consent',
      'create',
      p.peer.dataDir,
      '--key',
      p.peer.rightsKey,
      '--license',
      TWEMOJI_CONSENT.license,
      '--attribution-name',
      TWEMOJI_CONSENT.attributionName,
      '--attribution-uri',
      TWEMOJI_CONSENT.attributionUri,
      '--custodian',
      p.peerId,
      '--out',
      p.peer.consent,
    ])
  })

  const publisher = peers.find((p) => p.peer.publisher)
  if (publisher === undefined) throw new DemoError('SETUP_FAILED', 'no publisher among the peers')
  if (!existsSync(layout.charter)) {
    note(
      `writing the charter (${params.config}, ${params.autoencoderRounds} autoencoder + ${params.unetRounds} U-Net rounds, publisher ${publisher.peer.name})...`,
    )
    let configArg = params.config
    if (Object.keys(params.configOverrides).length > 0) {
      // The charter embeds the full resolved config; overrides travel as a config file.
      configArg = join(layout.out, 'setup', 'model-config.json')
      await writeFile(
        configArg,
        `${JSON.stringify(loadConfig(params.config, params.configOverrides), null, 2)}\n`,
      )
    }
    const temp = `${layout.charter}.partial`
    await runCoop([
      'charter',
      'create',
      '--config',
      configArg,
      '--publisher',
      publisher.peerId,
      '--key',
      publisher.peer.nodeKey,
      '--accept-license',
      TWEMOJI_CONSENT.license,
      '--inner-steps',
      String(params.innerSteps),
      '--ae-rounds',
      String(params.autoencoderRounds),
      '--unet-rounds',
      String(params.unetRounds),
      // Every peer's contribution in every round: a round closes when all have contributed.
      '--quorum',
      String(params.peers),
      '--name',
      'diffusion-coop demo (Twemoji)',
      '--out',
      temp,
    ])
    await rename(temp, layout.charter)
  }
  const { verifyCharter } = await import('../../protocol/charter.ts')
  const { coopId, charter } = verifyCharter(new Uint8Array(await readFile(layout.charter)))
  const classes = (charter.model as { classes?: string[] }).classes ?? []
  return { peers, coopId, classes }
}
