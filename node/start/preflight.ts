// `coop start` checks that what it was given fits together before it writes anything: the
// charter, the store (same cooperative, or new), the node key, the publisher role, the consent
// manifests (this node as custodian) against the data folder, and the listen ports. Each misfit
// is one StartError naming both sides; nothing has been created when one is thrown.
import { readdir, readFile, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, relative, sep } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { CoopConfigSchema } from '../../configs/index.ts'
import { verifyCharter, type CoopCharter } from '../../protocol/charter.ts'
import { isProtocolError } from '../../protocol/errors.ts'
import { didKeyFromPublicKey, peerIdString } from '../../protocol/keys.ts'
import { verifyManifest, type VerifiedManifest } from '../../protocol/manifest.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { scanImageFolder } from '../cli/commands/consent.ts'
import { UsageError } from '../cli/command.ts'
import { type FileKind, sniffFileKind, withArticle } from '../file-kind.ts'
import { readKeyFile } from '../keystore.ts'
import { StartError } from './errors.ts'

/** Entries a coop store may hold (node/round/layout.ts, node/store/store.ts). */
const STORE_ENTRIES = new Set([
  'addrs.json',
  'blobs',
  'charter.json',
  'checkpoints',
  'db',
  'inbox',
  'node.key',
  'snapshots',
])

export interface PreflightOptions {
  charter: string
  store: string
  data: string
  consent: string[]
  key?: string
  listen: string[]
  bootstrap: string[]
  publisher: boolean
  train: boolean
}

export interface PreflightResult {
  coopId: string
  charter: CoopCharter
  /** Undefined when the node key does not exist yet (it is created in the new store). */
  peerId: string | undefined
  /** Whether --store existed before this start (a failed start removes a store it created). */
  storeExisted: boolean
}

async function expectKind(path: string, flag: string, expected: FileKind): Promise<void> {
  const kind = await sniffFileKind(path)
  if (kind === 'missing') throw new StartError('NOT_FOUND', `${flag} ${path}: no such file`)
  if (kind !== expected)
    throw new StartError(
      'WRONG_FILE_KIND',
      `${flag} ${path} is ${withArticle(kind)}, not ${withArticle(expected)}`,
    )
}

async function readCharter(path: string): Promise<{ coopId: string; charter: CoopCharter }> {
  await expectKind(path, '--charter', 'charter')
  const verified = verifyCharter(new Uint8Array(await readFile(path)))
  return { coopId: verified.coopId, charter: verified.charter }
}

/** The store is new, empty, or holds this cooperative's charter. */
async function checkStore(store: string, coopId: string, charter: CoopCharter): Promise<boolean> {
  let names: string[]
  try {
    const info = await stat(store)
    if (!info.isDirectory()) throw new StartError('NOT_A_STORE', `--store ${store} is a file, not a folder`)
    names = await readdir(store)
  } catch (err) {
    if (err instanceof StartError) throw err
    if (errorCode(err) === 'ENOENT') return false
    throw err
  }
  if (names.includes('charter.json')) {
    let theirs: { coopId: string; charter: CoopCharter }
    try {
      const verified = verifyCharter(new Uint8Array(await readFile(join(store, 'charter.json'))))
      theirs = { coopId: verified.coopId, charter: verified.charter }
    } catch (err) {
      throw new StartError(
        'NOT_A_STORE',
        `--store ${store} has a charter.json that does not verify (${errorCode(err) ?? 'invalid'}): not a store this node wrote`,
        { cause: err },
      )
    }
    if (theirs.coopId !== coopId)
      throw new StartError(
        'STORE_OTHER_COOP',
        `--store ${store} belongs to coop ${theirs.coopId}${theirs.charter.name === undefined ? '' : ` (${theirs.charter.name})`}, ` +
          `but --charter is coop ${coopId}${charter.name === undefined ? '' : ` (${charter.name})`}: use a new --store for this cooperative`,
      )
    return true
  }
  const foreign = names.filter((name) => !STORE_ENTRIES.has(name) && !name.startsWith('.'))
  if (foreign.length > 0)
    throw new StartError(
      'NOT_A_STORE',
      `--store ${store} is a folder with other files (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}), not a coop store: give a new or an existing store folder`,
    )
  return true
}

async function nodeIdentity(options: PreflightOptions): Promise<{ peerId: string; did: string } | undefined> {
  const path = options.key ?? join(options.store, 'node.key')
  if (options.key !== undefined && (await sniffFileKind(path)) === 'missing')
    throw new StartError(
      'NOT_FOUND',
      `--key ${path}: no such file (create a node key with coop keys new --out ${path}, or leave --key out to use <store>/node.key)`,
    )
  if (options.key === undefined && (await sniffFileKind(path)) === 'missing') return undefined
  const key = await readKeyFile(path)
  return { peerId: peerIdString(key.publicKey), did: didKeyFromPublicKey(key.publicKey) }
}

async function checkConsent(
  options: PreflightOptions,
  charter: CoopCharter,
  identity: { peerId: string; did: string } | undefined,
): Promise<VerifiedManifest[]> {
  const out: VerifiedManifest[] = []
  for (const path of options.consent) {
    await expectKind(path, '--consent', 'consent manifest')
    let verified: VerifiedManifest
    try {
      verified = verifyManifest(JSON.parse(await readFile(path, 'utf8')) as object, {
        now: new Date(),
        acceptedLicenses: charter.acceptedLicenses,
      })
    } catch (err) {
      if (isProtocolError(err))
        throw new StartError('MANIFEST_INVALID', `--consent ${path}: ${err.code}: ${err.message}`, {
          cause: err,
        })
      throw err
    }
    if (identity === undefined)
      throw new StartError(
        'FOREIGN_CUSTODIAN',
        `--consent ${path} names node ${verified.custodian} as custodian, but this store has no node key yet ` +
          '(a new identity would be created): pass --key <the node key with that PeerId>',
      )
    if (verified.custodian !== identity.peerId) {
      const keyFlag = options.key ?? join(options.store, 'node.key')
      if (verified.issuer === identity.did)
        throw new StartError(
          'RIGHTS_KEY_AS_NODE_KEY',
          `--key ${keyFlag} is the rights holder's key that signed ${path}, not the node key it names ` +
            `(custodian ${verified.custodian}): pass that node's key`,
        )
      throw new StartError(
        'FOREIGN_CUSTODIAN',
        `--consent ${path} names node ${verified.custodian} as custodian; this node is ${identity.peerId} (key ${keyFlag})`,
      )
    }
    out.push(verified)
  }
  return out
}

/**
 * At least one image of the data folder is listed by a manifest (the manifests were made for it),
 * and every listed image in a class folder (`<data>/<class>/<file>`, the layout the trainer reads)
 * is of a class the charter's model has.
 */
async function checkData(
  data: string,
  manifests: VerifiedManifest[],
  consentFiles: string[],
  modelClasses: readonly string[],
): Promise<void> {
  const kind = await sniffFileKind(data)
  if (kind === 'missing') throw new StartError('NOT_FOUND', `--data ${data}: no such folder`)
  if (kind !== 'folder')
    throw new StartError('WRONG_FILE_KIND', `--data ${data} is ${withArticle(kind)}, not a folder of images`)
  if (manifests.length === 0) return
  const listed = new Set(manifests.flatMap((m) => m.items.map((item) => item.digest)))
  const scan = await scanImageFolder(data, { progress: false })
  const consented = scan.images.filter((image) => listed.has(image.digest))
  if (consented.length === 0)
    throw new StartError(
      'CONSENT_DATA_MISMATCH',
      `none of the ${scan.images.length} images under --data ${data} is listed in ${consentFiles.join(', ')} ` +
        `(${listed.size} items): the consent was signed for another folder`,
    )
  if (modelClasses.length === 0) return // an unconditional model trains on every image
  const unknown = new Set<string>()
  for (const image of consented) {
    const parts = relative(data, image.path).split(sep)
    if (parts.length === 2 && !modelClasses.includes(parts[0] as string)) unknown.add(parts[0] as string)
  }
  if (unknown.size > 0)
    throw new StartError(
      'UNKNOWN_CLASS',
      `consented images under --data ${data} are in class folder${unknown.size > 1 ? 's' : ''} ` +
        `${[...unknown].map((name) => `'${name}'`).join(', ')}, which the charter's model does not have ` +
        `(its classes: ${modelClasses.join(', ')}): move them into one of those folders, or start a cooperative whose charter lists them`,
    )
}

/** Binds and releases each fixed TCP port, so a taken port is one clear line before anything starts. */
async function checkListen(listen: string[]): Promise<void> {
  for (const address of listen) {
    let host: string
    let port: number
    try {
      const parts = multiaddr(address).getComponents()
      const ip = parts.find((c) => c.name === 'ip4' || c.name === 'ip6')
      const tcp = parts.find((c) => c.name === 'tcp')
      if (ip?.value === undefined || tcp?.value === undefined) continue
      host = ip.value
      port = Number(tcp.value)
    } catch (err) {
      throw new UsageError(
        `--listen ${address} is not a multiaddr (${err instanceof Error ? err.message : String(err)})`,
      )
    }
    if (port === 0) continue
    await new Promise<void>((resolve, reject) => {
      const server = createServer()
      server.once('error', (err) => {
        const code = errorCode(err)
        if (code === 'EADDRINUSE')
          reject(
            new StartError(
              'PORT_IN_USE',
              `--listen ${address}: port ${port} on ${host} is in use by another process`,
            ),
          )
        else
          reject(
            new StartError(
              'LISTEN_FAILED',
              `--listen ${address}: cannot listen on ${host}:${port} (${code === 'EACCES' ? 'ports below 1024 need privileges' : code === 'EADDRNOTAVAIL' ? 'no such local address' : (code ?? String(err))})`,
            ),
          )
      })
      server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()))
    })
  }
}

function checkBootstrap(bootstrap: string[], self: string | undefined): void {
  for (const address of bootstrap) {
    let target: string | undefined
    try {
      target = multiaddr(address)
        .getComponents()
        .findLast((c) => c.name === 'p2p')?.value
    } catch (err) {
      throw new UsageError(
        `--bootstrap ${address} is not a multiaddr (${err instanceof Error ? err.message : String(err)})`,
      )
    }
    if (target === undefined)
      throw new UsageError(
        `--bootstrap ${address} has no /p2p/<PeerId>: copy the whole address from the other node's <store>/addrs.json`,
      )
    if (target === self) throw new UsageError(`--bootstrap ${address} is this node itself`)
  }
}

export async function preflight(options: PreflightOptions): Promise<PreflightResult> {
  const { coopId, charter } = await readCharter(options.charter)
  const storeExisted = await checkStore(options.store, coopId, charter)
  const identity = await nodeIdentity(options)
  checkBootstrap(options.bootstrap, identity?.peerId)
  if (options.publisher) {
    if (identity === undefined || !charter.publishers.includes(identity.peerId))
      throw new StartError(
        'NOT_A_PUBLISHER',
        `--publisher: this node (${identity?.peerId ?? 'a new key'}) is not a publisher of the charter ` +
          `(publishers: ${charter.publishers.join(', ')}): pass the publisher's node key with --key`,
      )
    if (charter.threshold > 1)
      throw new StartError(
        'UNSUPPORTED',
        'publishing with a signing threshold above 1 needs co-signing, which this node does not implement',
      )
  }
  const manifests = await checkConsent(options, charter, identity)
  if (options.train) {
    // A charter whose model does not parse is refused by the node itself, with its own error.
    const model = CoopConfigSchema.safeParse(charter.model)
    await checkData(options.data, manifests, options.consent, model.success ? model.data.classes : [])
  } else if ((await sniffFileKind(options.data)) === 'missing')
    throw new StartError('NOT_FOUND', `--data ${options.data}: no such folder`)
  await checkListen(options.listen)
  return { coopId, charter, peerId: identity?.peerId, storeExisted }
}
