// Real libp2p hosts on loopback TCP for the node tests.
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Logger } from 'pino'
import { createCoopHost, type CoopHost, type CoopHostOptions } from '../../../node/p2p/host.ts'
import { TOPIC_NAMES, type TopicName } from '../../../node/p2p/topics.ts'

export const TEST_COOP_ID = 'sha256:' + 'ab'.repeat(32)

export async function startHost(overrides: Partial<CoopHostOptions> = {}, log?: Logger): Promise<CoopHost> {
  const host = await createCoopHost({
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    coopId: TEST_COOP_ID,
    ...(log === undefined ? {} : { log }),
    ...overrides,
  })
  await host.start()
  return host
}

export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Dials b from a and waits until each sees the other subscribed to every topic. */
export async function connect(
  a: CoopHost,
  b: CoopHost,
  topics: readonly TopicName[] = TOPIC_NAMES,
): Promise<void> {
  await a.dial(b.multiaddrs()[0] as string)
  await waitFor(
    () => topics.every((t) => a.topicPeers(t).includes(b.peerId) && b.topicPeers(t).includes(a.peerId)),
    'topic subscriptions to propagate',
  )
}

/** Collects accepted messages of a topic. */
export function collect(host: CoopHost, topic: TopicName): { from: string; text: string }[] {
  const seen: { from: string; text: string }[] = []
  host.onMessage(topic, (msg) => {
    seen.push({ from: msg.from, text: new TextDecoder().decode(msg.data) })
  })
  return seen
}
