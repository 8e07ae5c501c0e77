// A hostile member of a real cooperative, for the adversarial suite: a libp2p host of its own
// (noise, yamux, gossipsub with StrictSign, the blob protocol) that speaks the protocol exactly
// as a node does but signs whatever the test tells it to: its own consent manifest, contribution
// statements for the open round naming payloads it serves, and (holding a publisher key of a
// test charter) checkpoints. It follows the cooperative by the checkpoints gossiped to it.
import { readFile } from 'node:fs/promises'
import { verifyCharter, type CoopCharter } from '../../../protocol/charter.ts'
import { createContribution, verifyContribution } from '../../../protocol/contribution.ts'
import type { DsseEnvelope } from '../../../protocol/dsse.ts'
import { generateKey, peerIdString, type Ed25519PrivateKey } from '../../../protocol/keys.ts'
import { createManifest, manifestDigest, type ConsentManifest } from '../../../protocol/manifest.ts'
import { canonicalBytes } from '../../../protocol/jcs.ts'
import { verifyProvenance, type VerifiedProvenance } from '../../../protocol/provenance.ts'
import { blobDigest } from '../../../node/p2p/blob.ts'
import type { CoopHost } from '../../../node/p2p/host.ts'
import { TOPIC_NAMES } from '../../../node/p2p/topics.ts'
import { decodeTensors, type NamedTensor } from '../../../node/round/tensors.ts'
import { encodeGossipMessage } from '../../../node/validation/messages.ts'
import { randomDigest } from './consent.ts'
import { startHost, waitFor } from './net.ts'

export interface SeenCheckpoint {
  verified: VerifiedProvenance
  envelope: DsseEnvelope
}

/** A contribution is repeated once a second until its round closes, at most this many times. */
const REPEAT_MAX = 180

export class HostileMember {
  readonly host: CoopHost
  readonly key: Ed25519PrivateKey
  readonly peerId: string
  readonly charter: CoopCharter
  readonly coopId: string
  /** Every valid checkpoint gossiped to it, by id. */
  readonly checkpoints = new Map<string, SeenCheckpoint>()
  readonly #blobs: Map<string, Uint8Array>
  #stopped = false
  #manifest: ConsentManifest | undefined

  private constructor(
    host: CoopHost,
    key: Ed25519PrivateKey,
    charter: CoopCharter,
    coopId: string,
    blobs: Map<string, Uint8Array>,
  ) {
    this.host = host
    this.key = key
    this.peerId = peerIdString(key.publicKey)
    this.charter = charter
    this.coopId = coopId
    this.#blobs = blobs
  }

  /** Starts the hostile host on loopback for the cooperative of `charterPath`. */
  static async start(charterPath: string, key: Ed25519PrivateKey = generateKey()): Promise<HostileMember> {
    const { charter, coopId } = verifyCharter(new Uint8Array(await readFile(charterPath)))
    const blobs = new Map<string, Uint8Array>()
    const host = await startHost({
      privateKey: key,
      coopId,
      blobs: { getBlob: async (digest) => blobs.get(digest) },
    })
    const member = new HostileMember(host, key, charter, coopId, blobs)
    // It accepts and relays everything: it judges nothing, it only watches the checkpoints.
    for (const topic of TOPIC_NAMES) host.setValidator(topic, async () => {})
    host.onMessage('checkpoints', (msg) => member.#onCheckpoint(msg.data))
    return member
  }

  #onCheckpoint(data: Uint8Array): void {
    try {
      const envelope = JSON.parse(new TextDecoder().decode(data.subarray(1))) as DsseEnvelope
      const verified = verifyProvenance(envelope, {
        publishers: this.charter.publishers,
        threshold: this.charter.threshold,
        coopId: this.coopId,
      })
      this.checkpoints.set(verified.digest, { verified, envelope })
    } catch {
      // Not a checkpoint of this cooperative: ignored.
    }
  }

  /** Dials each address, retrying a few times: on a loaded machine a handshake can time out. */
  async dial(addresses: string[]): Promise<void> {
    for (const address of addresses) {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.host.dial(address)
          break
        } catch (err) {
          if (attempt >= 5) throw err
          await new Promise((resolve) => setTimeout(resolve, 500))
        }
      }
    }
  }

  /** Serves bytes by their digest over the blob protocol; returns the digest. */
  serve(bytes: Uint8Array): string {
    const digest = blobDigest(bytes)
    this.#blobs.set(digest, bytes)
    return digest
  }

  /** Signs and gossips a consent manifest of its own (a fresh rights-holder key, itself as custodian). */
  async announceManifest(): Promise<string> {
    this.#manifest ??= createManifest({
      issuerKey: generateKey(),
      custodian: this.peerId,
      license: 'CC-BY-4.0',
      attribution: { name: 'Hostile rights holder' },
      scope: { commercialUse: false, weightRedistribution: true },
      items: [0, 1, 2].map(() => ({
        digest: randomDigest(),
        mediaType: 'image/png' as const,
        byteLength: 999,
      })),
      validFrom: new Date(Date.now() - 60_000),
    })
    // Served by digest too: a peer that missed the gossip fetches it from the custodian.
    this.serve(canonicalBytes(this.#manifest))
    await this.publish('consent', encodeGossipMessage('manifest', this.#manifest))
    return manifestDigest(this.#manifest)
  }

  /** Gossips on a topic; a topic without peers yet is retried for a while. */
  async publish(topic: (typeof TOPIC_NAMES)[number], data: Uint8Array): Promise<void> {
    let lastError: unknown
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        const { recipients } = await this.host.publish(topic, data)
        if (recipients > 0) return
      } catch (err) {
        lastError = err
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    throw new Error(`could not gossip on ${topic}: ${String(lastError)}`)
  }

  /** The newest checkpoint of a phase it has seen. */
  latest(phase: 'autoencoder' | 'unet'): SeenCheckpoint | undefined {
    let best: SeenCheckpoint | undefined
    for (const c of this.checkpoints.values())
      if (
        c.verified.predicate.phase === phase &&
        (best === undefined || c.verified.predicate.round > best.verified.predicate.round)
      )
        best = c
    return best
  }

  /** Waits until it has seen a checkpoint for this round (the cooperative's, gossiped to it). */
  async waitForCheckpoint(
    phase: 'autoencoder' | 'unet',
    round: number,
    timeoutMs = 180_000,
  ): Promise<SeenCheckpoint> {
    await waitFor(
      () =>
        [...this.checkpoints.values()].some(
          (c) => c.verified.predicate.phase === phase && c.verified.predicate.round === round,
        ),
      `a ${phase} checkpoint for round ${round}`,
      timeoutMs,
    )
    return [...this.checkpoints.values()].find(
      (c) => c.verified.predicate.phase === phase && c.verified.predicate.round === round,
    ) as SeenCheckpoint
  }

  /** The model of a checkpoint it has seen, fetched from the cooperative by the signed digest (retried: the publisher announces before it stores). */
  async modelOf(checkpoint: SeenCheckpoint, providers: string[]): Promise<NamedTensor[]> {
    const digest = checkpoint.verified.files.get('model.safetensors') as string
    let lastError: unknown
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        return decodeTensors(await this.host.fetchBlob(digest, { providers, maxBytes: 256 * 1024 * 1024 }))
      } catch (err) {
        lastError = err
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
    throw lastError
  }

  /**
   * Signs a ContributionStatement for the round after `base` naming `payload` (served by digest)
   * and gossips it. It claims whatever `samples` says, trained on its own manifest.
   */
  async contribute(
    base: SeenCheckpoint,
    payload: Uint8Array,
    options: {
      samples?: number
      /** At most this many repeats (default: until the round closes). A statement every peer
       * rejects outright is charged on each repeat, and a sender graylisted by all of them no
       * longer hears the cooperative's checkpoints. */
      repeats?: number
    } = {},
  ): Promise<{ statement: string; delta: string; contributor: string }> {
    const manifest = await this.announceManifest()
    const delta = this.serve(payload)
    const p = base.verified.predicate
    const envelope = createContribution(
      {
        coop: this.coopId,
        round: p.round + 1,
        phase: p.phase,
        baseCheckpoint: base.verified.digest,
        manifests: [manifest],
        itemsRoot: randomDigest(),
        itemCount: 3,
        samples: options.samples ?? this.charter.rounds.innerSteps,
        localSteps: this.charter.rounds.innerSteps,
        loss: 0.1,
        codec: this.charter.rounds.compression,
        delta,
      },
      this.key,
    )
    const verified = verifyContribution(envelope)
    // As an honest trainer does: announced, then repeated until the round closes (a peer that
    // lacked the manifest fetches it from us after its first refusal and accepts a repeat; on a
    // loaded machine that can take many seconds).
    const message = encodeGossipMessage('contribution', envelope)
    await this.publish('contributions', message)
    const closed = () =>
      [...this.checkpoints.values()].some(
        (c) => c.verified.predicate.phase === p.phase && c.verified.predicate.round > p.round,
      )
    void (async () => {
      for (let i = 0; i < (options.repeats ?? REPEAT_MAX) && !closed() && !this.#stopped; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1000))
        await this.host.publish('contributions', message).catch(() => undefined)
      }
    })()
    return { statement: verified.digest, delta, contributor: verified.contributor }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await this.host.stop()
  }
}
