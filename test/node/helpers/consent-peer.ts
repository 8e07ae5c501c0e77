// Nodes of the consent layer for the adversarial suite, as `coop start` wires them: a real libp2p
// host on loopback (noise, yamux, gossipsub with StrictSign), a real ConsentBook over LevelDB in a
// temp dir, the consent topic's validator and handler (ConsentGossip, which also charges senders
// of held revocations that prove forged) and, when asked, the consent re-announcer. And a raw
// publisher: a host whose own validators accept anything, so it gossips bytes unchecked.
import type { CoopCharter } from '../../../protocol/charter.ts'
import type { Ed25519PrivateKey } from '../../../protocol/keys.ts'
import { ConsentAnnouncer, type ConsentAnnouncerOptions } from '../../../node/consent/announcer.ts'
import { ConsentGossip } from '../../../node/consent/gossip.ts'
import { componentLogger } from '../../../node/log.ts'
import type { CoopHost } from '../../../node/p2p/host.ts'
import { TOPIC_NAMES, topicString, type TopicName } from '../../../node/p2p/topics.ts'
import { generateKey, openConsentBook, peerOf, TEST_CONSENT_TERMS } from './consent.ts'
import { startHost, TEST_COOP_ID } from './net.ts'

export interface ConsentPeer {
  key: Ed25519PrivateKey
  peerId: string
  host: CoopHost
  consent: Awaited<ReturnType<typeof openConsentBook>>
  gossip: ConsentGossip
  announcer: ConsentAnnouncer | undefined
  /** Senders of every consent message its handler was given (what it acted on). */
  accepted: string[]
  stop(): Promise<void>
}

export interface ConsentPeerOptions {
  intendedUse?: CoopCharter['intendedUse']
  /** Builds the consent re-announcer with these options (production pacing unless overridden); the test starts it. */
  announce?: Partial<ConsentAnnouncerOptions>
}

export async function startConsentPeer(options: ConsentPeerOptions = {}): Promise<ConsentPeer> {
  const key = generateKey()
  const peerId = peerOf(key)
  const host = await startHost({ privateKey: key })
  const intendedUse = options.intendedUse ?? TEST_CONSENT_TERMS.intendedUse
  const consent = await openConsentBook(peerId, { intendedUse })
  const log = componentLogger('consent-peer')
  const gossip = new ConsentGossip(
    { acceptedLicenses: TEST_CONSENT_TERMS.acceptedLicenses, admission: { mode: 'open' }, intendedUse },
    { consent: consent.book, host, log },
  )
  gossip.start()
  const accepted: string[] = []
  host.onMessage('consent', (msg) => void accepted.push(msg.from))
  consent.book.start()
  const announcer =
    options.announce === undefined
      ? undefined
      : new ConsentAnnouncer(options.announce, { consent: consent.book, host, log })
  return {
    key,
    peerId,
    host,
    consent,
    gossip,
    announcer,
    accepted,
    async stop() {
      await announcer?.stop()
      gossip.stop()
      await host.stop()
      await consent.close()
    },
  }
}

/** A host that validates nothing it publishes: `inject` gossips raw bytes under its own key. */
export async function startRawPublisher(): Promise<{
  host: CoopHost
  inject(topic: TopicName, data: Uint8Array): Promise<void>
}> {
  const host = await startHost({ privateKey: generateKey() })
  for (const topic of TOPIC_NAMES) host.setValidator(topic, async () => {})
  const pubsub = host.libp2p.services.pubsub as {
    publish(topic: string, data: Uint8Array): Promise<unknown>
  }
  return {
    host,
    async inject(topic, data) {
      await pubsub.publish(topicString(TEST_COOP_ID, topic), data)
    },
  }
}
