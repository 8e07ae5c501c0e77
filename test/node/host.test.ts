import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore } from '../../node/store/store.ts'
import { type CoopHost, mdnsServiceTag } from '../../node/p2p/host.ts'
import { topicString, TOPIC_NAMES } from '../../node/p2p/topics.ts'
import { reject } from '../../node/p2p/gossip-errors.ts'
import { collect, connect, startHost, TEST_COOP_ID, waitFor } from './helpers/net.ts'

describe('coop host: gossip between three real peers on loopback', () => {
  let hosts: CoopHost[] = []

  beforeAll(async () => {
    hosts = await Promise.all([startHost(), startHost(), startHost()])
    for (const host of hosts) for (const topic of TOPIC_NAMES) host.setValidator(topic, async () => {})
    // A line a - b - c: c only hears a through b's relay, which exercises validation before forwarding.
    await connect(hosts[0] as CoopHost, hosts[1] as CoopHost)
    await connect(hosts[1] as CoopHost, hosts[2] as CoopHost)
  })

  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.stop()))
  })

  it('scopes topics by coop id', () => {
    expect(topicString(TEST_COOP_ID, 'consent')).toBe(`/diffusion-coop/${TEST_COOP_ID}/consent/1`)
    expect(() => topicString('a/b', 'consent')).toThrow(RangeError)
  })

  it('delivers messages on all three topics to every peer, relayed through the middle one', async () => {
    const [a, b, c] = hosts as [CoopHost, CoopHost, CoopHost]
    const received = TOPIC_NAMES.map((topic) => ({ topic, atB: collect(b, topic), atC: collect(c, topic) }))
    for (const topic of TOPIC_NAMES) await a.publish(topic, new TextEncoder().encode(`hello ${topic}`))
    await waitFor(
      () => received.every((r) => r.atB.length === 1 && r.atC.length === 1),
      'all messages to arrive',
    )
    for (const r of received) {
      expect(r.atC).toEqual([{ from: a.peerId, text: `hello ${r.topic}` }])
      expect(r.atB).toEqual([{ from: a.peerId, text: `hello ${r.topic}` }])
    }
    expect(b.validationStats().consent?.accept).toBeGreaterThanOrEqual(1)
  })

  it('does not deliver or relay a message its validator rejects, and charges the sender', async () => {
    const [a, b, c] = hosts as [CoopHost, CoopHost, CoopHost]
    b.setValidator('checkpoints', async (msg) => {
      if (new TextDecoder().decode(msg.data).startsWith('bad')) throw reject('SCHEMA', 'test rule')
    })
    const atB = collect(b, 'checkpoints')
    const atC = collect(c, 'checkpoints')
    await a.publish('checkpoints', new TextEncoder().encode('bad checkpoint'))
    await a.publish('checkpoints', new TextEncoder().encode('good checkpoint'))
    await waitFor(() => atC.length === 1, 'the good message at c')
    expect(atB.map((m) => m.text)).toEqual(['good checkpoint'])
    expect(atC.map((m) => m.text)).toEqual(['good checkpoint'])
    expect(b.validationStats().checkpoints?.reject).toEqual({ SCHEMA: 1 })
    expect(b.penaltyCounts(a.peerId)).toEqual({ SCHEMA: 1 })
    await waitFor(() => b.peerScore(a.peerId) < 0, "a's score at b to go negative")
  })

  it('refuses to publish a message over the gossip size limit', async () => {
    const [a] = hosts as [CoopHost]
    await expect(a.publish('contributions', new Uint8Array(1024 * 1024))).rejects.toMatchObject({
      code: 'TOO_LARGE',
    })
  })

  it('joins through a bootstrap address at start', async () => {
    const [a] = hosts as [CoopHost]
    const joiner = await startHost({ bootstrap: [a.multiaddrs()[0] as string] })
    try {
      expect(joiner.connectedPeers()).toContain(a.peerId)
      await waitFor(() => a.topicPeers('consent').includes(joiner.peerId), 'the joiner to subscribe')
    } finally {
      await joiner.stop()
    }
  })

  it('remembers peers in the store and redials them after a restart, without bootstrap', async () => {
    const [a] = hosts as [CoopHost]
    const dir = await mkdtemp(join(tmpdir(), 'coop-peers-'))
    const store = await openStore(dir)
    try {
      const privateKey = await generateKeyPair('Ed25519')
      const first = await startHost({ privateKey, peerRecords: store.peers })
      await first.dial(a.multiaddrs()[0] as string)
      await waitFor(async () => (await store.peers.has(a.peerId)) === true, 'the peer record of a')
      expect(((await store.peers.get(a.peerId)) as { addrs: string[] }).addrs).toContain(
        a.multiaddrs()[0]?.replace(`/p2p/${a.peerId}`, ''),
      )
      await first.stop()
      const restarted = await startHost({ privateKey, peerRecords: store.peers })
      try {
        await waitFor(
          () => restarted.connectedPeers().includes(a.peerId),
          'the restarted host to reconnect to a',
        )
      } finally {
        await restarted.stop()
      }
    } finally {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('finds peers of the same coop on the LAN by mDNS, and only those', async () => {
    const coopId = `sha256:${randomBytes(32).toString('hex')}`
    const first = await startHost({ mdns: true, coopId })
    const second = await startHost({ mdns: true, coopId })
    const stranger = await startHost({ mdns: true, coopId: `sha256:${randomBytes(32).toString('hex')}` })
    try {
      await waitFor(() => first.connectedPeers().includes(second.peerId), 'mDNS discovery within the coop')
      // Give the stranger's announcements time to arrive: they must not lead to a connection.
      await new Promise((resolve) => setTimeout(resolve, 1500))
      expect(first.connectedPeers()).not.toContain(stranger.peerId)
      expect(stranger.connectedPeers()).toEqual([])
      expect(mdnsServiceTag(coopId)).toMatch(/^_dcoop-[0-9a-f]{16}\._udp\.local$/)
    } finally {
      await Promise.all([first.stop(), second.stop(), stranger.stop()])
    }
  })

  it('lists connected peers and stops gracefully', async () => {
    const [a, b, c] = hosts as [CoopHost, CoopHost, CoopHost]
    await waitFor(() => b.connectedPeers().length === 2, 'the joiner to be gone')
    expect(b.connectedPeers().sort()).toEqual([a.peerId, c.peerId].sort())
    await c.stop()
    await waitFor(() => !b.connectedPeers().includes(c.peerId), 'b to notice c left')
    expect(b.topicPeers('consent')).not.toContain(c.peerId)
  })
})
