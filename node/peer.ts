// The composition root of a coop peer: keystore, store, consent (book, consent topic, inbox),
// libp2p host, trainer sessions and the round engine (which installs the contributions and
// checkpoints validators), wired together and started/stopped in the right order. `coop start` is a thin CLI over startPeer; tests and the benchmark use it
// through real `coop start` processes.
import { createHash } from 'node:crypto'
import { mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { CoopConfigSchema } from '../configs/index.ts'
import { verifyCharter, type CoopCharter } from '../protocol/charter.ts'
import type { DsseEnvelope } from '../protocol/dsse.ts'
import { canonicalBytes } from '../protocol/jcs.ts'
import { generateKey, peerIdString, type Ed25519PrivateKey } from '../protocol/keys.ts'
import { initBackend } from '../trainer/backend.ts'
import { loadImageFolder } from '../trainer/data.ts'
import { createTrainerSession } from '../trainer/session.ts'
import { readKeyFile, writeKeyFile } from './keystore.ts'
import { componentLogger } from './log.ts'
import { createCoopHost, type CoopHost } from './p2p/host.ts'
import { TOPIC_NAMES } from './p2p/topics.ts'
import { STOP_GRACE_MS } from './round/constants.ts'
import { assertCharterComponent, readAutoencoderComponent } from './round/component.ts'
import { ConsentBook } from './consent/book.ts'
import { ConsentAnnouncer } from './consent/announcer.ts'
import { ConsentGossip } from './consent/gossip.ts'
import { ConsentInbox } from './consent/inbox.ts'
import { RoundEngine, type RoundTrainer } from './round/engine.ts'
import { AuditScheduler } from './audit/scheduler.ts'
import { RoundError } from './round/errors.ts'
import { charterPath, writeAddrs } from './round/layout.ts'
import type { Phase } from './round/schedule.ts'
import type { NamedTensor } from './round/tensors.ts'
import { writeFileDurable } from './store/durable.ts'
import { openStore, type CoopStore } from './store/store.ts'
import { errorCode } from '../protocol/coded-error.ts'

export interface PeerOptions {
  /** Path of the signed charter (DSSE envelope JSON). */
  charter: string
  store: string
  /** Folder of this node's images (class subfolders). */
  data: string
  /** This node's consent manifests (each must name it as custodian). */
  consent: string[]
  /** Node key file; default <store>/node.key, created on first start. */
  key?: string
  listen: string[]
  bootstrap: string[]
  publisher: boolean
  /** Stop after this global round (default: all the charter's rounds). */
  rounds?: number
  backend: string
  /** Training threads on wasm (data-parallel workers); default min(2, cores). */
  threads?: number
  mdns?: boolean
  /** Train and contribute (default true); a pure publisher may set false. */
  train?: boolean
  /** A component autoencoder checkpoint directory (model.safetensors + provenance.json) the charter pins. */
  autoencoder?: string
  log?: Logger
}

/** What a node uploaded and downloaded: blobs served and fetched, gossip it originated and received. */
export interface PeerTraffic {
  blobServedBytes: number
  blobsServed: number
  gossipPublishedBytes: number
  gossipPublished: number
  blobFetchedBytes: number
  blobsFetched: number
  /** Gossip messages delivered to this node (validated and accepted), any topic. */
  gossipReceivedBytes: number
  gossipReceived: number
}

export interface CoopPeer {
  readonly peerId: string
  readonly coopId: string
  readonly charter: CoopCharter
  readonly store: CoopStore
  readonly host: CoopHost
  readonly engine: RoundEngine
  readonly consent: ConsentBook
  /** Bytes this node moved so far (live counters, for metrics). */
  readonly traffic: Readonly<PeerTraffic>
  addrs(): string[]
  /** Resolves when every round this node runs for has a checkpoint it adopted. */
  finished: Promise<void>
  stop(): Promise<void>
}

export async function readCharterFile(
  path: string,
): Promise<{ charter: CoopCharter; coopId: string; envelope: DsseEnvelope }> {
  const bytes = new Uint8Array(await readFile(path))
  const verified = verifyCharter(bytes)
  return {
    charter: verified.charter,
    coopId: verified.coopId,
    envelope: JSON.parse(new TextDecoder().decode(bytes)) as DsseEnvelope,
  }
}

async function loadNodeKey(path: string, log: Logger): Promise<Ed25519PrivateKey> {
  try {
    await stat(path)
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err
    const key = generateKey()
    await writeKeyFile(path, key)
    log.info({ path }, 'node key created')
    return key
  }
  return await readKeyFile(path)
}

/** A stable per-node seed (data order, noise): the same node resumes the same stream. */
function seedOf(peerId: string): number {
  return createHash('sha256').update(peerId).digest().readUInt32BE(0)
}

export async function startPeer(options: PeerOptions): Promise<CoopPeer> {
  const log = options.log ?? componentLogger('peer')
  const { charter, coopId, envelope } = await readCharterFile(options.charter)
  const config = CoopConfigSchema.parse(charter.model)
  // Checked before anything is written: a directory the charter does not pin must leave no trace.
  const autoencoderComponent =
    options.autoencoder === undefined ? undefined : await readAutoencoderComponent(options.autoencoder)
  if (autoencoderComponent !== undefined) assertCharterComponent(charter, autoencoderComponent)
  await mkdir(options.store, { recursive: true })
  const privateKey = await loadNodeKey(options.key ?? join(options.store, 'node.key'), log)
  const store = await openStore(options.store, { log: componentLogger('store') })
  let host: CoopHost | undefined
  try {
    await writeFileDurable(charterPath(options.store), canonicalBytes(envelope))
    const peerId = peerIdString(privateKey.publicKey)
    const consent = new ConsentBook(
      { peerId, acceptedLicenses: charter.acceptedLicenses, intendedUse: charter.intendedUse },
      { store, log: componentLogger('consent') },
    )
    await consent.load()
    const documents = await Promise.all(
      options.consent.map(async (path) => ({
        path,
        document: JSON.parse(await readFile(path, 'utf8')) as object,
      })),
    )
    const local = await consent.addLocalManifests(documents)
    const train = options.train ?? true
    const allowlist = consent.allowlist()
    if (train && allowlist.size === 0)
      throw new RoundError(
        'NO_CONSENT',
        'no valid consent manifest names this node as custodian: nothing to train on',
      )

    const backend = await initBackend(options.backend, componentLogger('backend'), {
      ...(options.threads === undefined ? {} : { threads: options.threads }),
    })
    const dataset = await loadImageFolder({
      dir: options.data,
      size: config.image.size,
      allowlist,
      log: componentLogger('data'),
    })
    if (train && dataset.items.length === 0)
      throw new RoundError('NO_CONSENT', `no consented image found under ${options.data}`)
    log.info(
      {
        items: dataset.items.length,
        notAllowed: dataset.notAllowed,
        optedOut: dataset.optedOut.length,
        manifests: local.length,
        backend: backend.name,
      },
      'consented dataset loaded',
    )
    const datasetItems = new Set(dataset.items.map((i) => i.sha256))
    const seed = seedOf(peerId)
    const trainers = async (phase: Phase, autoencoder: NamedTensor[] | undefined): Promise<RoundTrainer> =>
      await createTrainerSession({
        config,
        phase,
        dataset,
        seed,
        ...(autoencoder === undefined ? {} : { autoencoder }),
        log: componentLogger('trainer', { phase }),
      })

    // What this node uploads: blob bytes it serves (payloads, checkpoint files) and gossip it
    // originates. Logged at stop; bench/rounds.bench.ts reports them per round.
    const traffic: PeerTraffic = {
      blobServedBytes: 0,
      blobsServed: 0,
      gossipPublishedBytes: 0,
      gossipPublished: 0,
      blobFetchedBytes: 0,
      blobsFetched: 0,
      gossipReceivedBytes: 0,
      gossipReceived: 0,
    }
    // Envelopes by statement digest come from the round state, which exists once the engine does.
    let engineForEnvelopes: RoundEngine | undefined
    host = await createCoopHost({
      privateKey,
      listen: options.listen,
      bootstrap: options.bootstrap,
      coopId,
      blobs: {
        // Streamed from the file, one chunk at a time (node/p2p/blob-server.ts bounds serving memory).
        async openBlob(digest) {
          const blob = await store.openBlob(digest)
          if (blob !== undefined) {
            traffic.blobServedBytes += blob.size
            traffic.blobsServed += 1
          }
          return blob
        },
        async getEnvelope(statementDigest) {
          return await engineForEnvelopes?.envelopeOf(statementDigest)
        },
      },
      peerRecords: store.peers,
      ...(options.mdns === undefined ? {} : { mdns: options.mdns }),
      log: componentLogger('p2p'),
    })
    const rawHost = host
    for (const topic of TOPIC_NAMES)
      rawHost.onMessage(topic, (msg) => {
        traffic.gossipReceivedBytes += msg.data.byteLength
        traffic.gossipReceived += 1
      })
    const countingHost: CoopHost = Object.assign(Object.create(rawHost) as CoopHost, {
      publish: async (topic: Parameters<CoopHost['publish']>[0], bytes: Uint8Array) => {
        traffic.gossipPublishedBytes += bytes.byteLength
        traffic.gossipPublished += 1
        return await rawHost.publish(topic, bytes)
      },
      fetchBlob: async (digest: string, fetchOptions: Parameters<CoopHost['fetchBlob']>[1]) => {
        const bytes = await rawHost.fetchBlob(digest, fetchOptions)
        traffic.blobFetchedBytes += bytes.byteLength
        traffic.blobsFetched += 1
        return bytes
      },
    })
    host = countingHost
    const engine = new RoundEngine(
      {
        charter,
        coopId,
        privateKey,
        publisher: options.publisher,
        train,
        ...(options.rounds === undefined ? {} : { untilRound: options.rounds }),
        datasetItems,
        charterEnvelope: envelope,
        ...(autoencoderComponent === undefined ? {} : { autoencoderComponent }),
      },
      { store, host, consent, trainers, log: componentLogger('round') },
    )
    engineForEnvelopes = engine

    const consentGossip = new ConsentGossip(
      {
        acceptedLicenses: charter.acceptedLicenses,
        admission: charter.admission,
        intendedUse: charter.intendedUse,
      },
      { consent, host, log },
    )
    consentGossip.start()
    const consentAnnouncer = new ConsentAnnouncer({}, { consent, host, log })

    const liveHost = host
    const inbox = await ConsentInbox.open({ storeDir: options.store }, { consent, host: liveHost, log })

    await host.start()
    const addrs = host.multiaddrs()
    await writeAddrs(options.store, {
      peerId: host.peerId,
      addrs,
      pid: process.pid,
      startedAt: new Date().toISOString(),
    })
    log.info({ peer: host.peerId, coop: coopId, addrs, publisher: options.publisher }, 'listening')
    // Expiry of local consent takes effect live, like a revocation.
    consent.start()
    await engine.start()
    consentAnnouncer.start()
    // The charter's memorization audits (charter `audit`): the publisher audits its own images.
    const auditor =
      options.publisher && charter.audit !== undefined
        ? new AuditScheduler(
            {
              charter,
              storeDir: options.store,
              dataDir: options.data,
              backend: options.backend,
              privateKey,
              peerId,
            },
            { events: engine.events, log: componentLogger('audit') },
          )
        : undefined
    await auditor?.start()

    inbox.start()

    let stopped: Promise<void> | undefined
    return {
      peerId: host.peerId,
      coopId,
      charter,
      store,
      host,
      engine,
      consent,
      traffic,
      addrs: () => liveHost.multiaddrs(),
      finished: engine.finished,
      stop() {
        stopped ??= (async () => {
          inbox.stop()
          const grace = setTimeout(
            () => log.warn({}, 'stop is taking long: waiting for the current step'),
            STOP_GRACE_MS,
          )
          grace.unref()
          await Promise.all([engine.stop(), consentAnnouncer.stop()])
          await auditor?.stop()
          consent.stop()
          clearTimeout(grace)
          await liveHost.stop()
          consentGossip.stop()
          await store.close()
          log.info({ peer: liveHost.peerId, ...traffic }, 'node stopped')
        })()
        return stopped
      },
    }
  } catch (err) {
    await host?.stop().catch(() => undefined)
    await store.close().catch(() => undefined)
    throw err
  }
}
