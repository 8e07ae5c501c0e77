// The status page and /metrics of a real running node: a publisher started with --http and a
// trainer, both real `coop start` processes that stay up after their rounds. /metrics is parsed
// with a Prometheus text-format parser; the page is loaded in headless Chromium (Debian's, as CI
// installs it) with every request outside the node refused, and what it shows is checked.
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import parsePrometheusTextFormat, { type PrometheusFamily } from 'parse-prometheus-text-format'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CoopHost } from '../../node/p2p/host.ts'
import { topicString } from '../../node/p2p/topics.ts'
import { GOSSIP_KINDS } from '../../node/validation/messages.ts'
import { startHost, waitFor } from './helpers/net.ts'
import {
  bootstrapAddr,
  createCluster,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

interface StatusJson {
  coop: string
  state: string
  round: number | null
  totalRounds: number
  peers: { id: string; score: number }[]
  latestCheckpoint: { round: number; phase: string; verification: string } | null
}

function family(families: PrometheusFamily[], name: string): PrometheusFamily {
  const found = families.find((f) => f.name === name)
  if (found === undefined) throw new Error(`no metric ${name}`)
  return found
}

describe('status page and /metrics of a running node', () => {
  let dir: string
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let url: string
  let status: StatusJson
  let hostile: CoopHost | undefined

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coop-monitor-'))
    cluster = await createCluster({
      dir,
      peers: 2,
      imagesPerPeer: 8,
      charterArgs: ['--ae-rounds', '1', '--unet-rounds', '1', '--inner-steps', '2', '--quorum', '2'],
    })
    const publisher = startNode(cluster, cluster.peers[0]!, { extra: ['--stay', '--http', '127.0.0.1:0'] })
    const listening = await publisher.waitFor('status page listening')
    url = listening.url as string
    const addr = await bootstrapAddr(cluster.peers[0]!)
    nodes = [publisher, startNode(cluster, cluster.peers[1]!, { bootstrap: [addr], extra: ['--stay'] })]
    await nodes[1]!.waitFor('all rounds done', () => true, 240_000)
    // Both stay up: wait until the page's data says done with the trainer connected.
    const deadline = Date.now() + 60_000
    for (;;) {
      status = (await (await fetch(`${url}status.json`)).json()) as StatusJson
      if (status.state === 'done' && status.peers.length === 1) break
      if (Date.now() > deadline) throw new Error(`status never settled: ${JSON.stringify(status)}`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }, 300_000)

  afterAll(async () => {
    await hostile?.stop()
    await stopAll(nodes)
    await rm(dir, { recursive: true, force: true })
  })

  it('serves /metrics in the Prometheus text format with what the node did', async () => {
    const response = await fetch(`${url}metrics`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toContain('text/plain')
    const families = parsePrometheusTextFormat(await response.text())
    expect(family(families, 'coop_node_info').metrics[0]?.labels).toMatchObject({
      node: cluster.peers[0]!.peerId,
    })
    expect(Number(family(families, 'coop_peers').metrics[0]?.value)).toBe(1)
    expect(Number(family(families, 'coop_latest_checkpoint_round').metrics[0]?.value)).toBe(2)
    expect(Number(family(families, 'coop_open_round').metrics[0]?.value)).toBe(-1)
    // One autoencoder round and one U-Net round closed, each with both contributions.
    const closed = family(families, 'coop_rounds_closed_total')
    expect(closed.type).toBe('COUNTER')
    expect(Object.fromEntries(closed.metrics.map((m) => [m.labels?.phase, Number(m.value)]))).toEqual({
      autoencoder: 1,
      unet: 1,
    })
    // The trainer's two contributions (one per round) passed the publisher's validation; none refused.
    const contributions = family(families, 'coop_contributions_total')
    expect(contributions.metrics.map((m) => [m.labels?.outcome, Number(m.value)])).toEqual([['accepted', 2]])
    const score = family(families, 'coop_peer_gossip_score')
    expect(score.metrics.map((m) => m.labels?.peer)).toEqual([cluster.peers[1]!.peerId])
    const bytes = family(families, 'coop_bytes_total')
    const out = bytes.metrics.filter((m) => m.labels?.direction === 'out')
    expect(out.reduce((total, m) => total + Number(m.value), 0)).toBeGreaterThan(0)
    // Two local steps per round: one step interval measured in each of the two rounds.
    const steps = family(families, 'coop_step_seconds')
    expect(steps.type).toBe('HISTOGRAM')
    expect(Number(steps.metrics[0]?.count)).toBe(2)
  })

  it('counts rejected contributions, checkpoints and penalties, and tells who was refused and why', async () => {
    // A peer of the same coop that publishes a contribution and a checkpoint that are not JSON,
    // signed by its own gossipsub (StrictSign), past every local check.
    hostile = await startHost({ coopId: status.coop })
    for (const topic of ['consent', 'contributions', 'checkpoints'] as const)
      hostile.setValidator(topic, async () => {})
    const host = hostile
    await host.dial(await bootstrapAddr(cluster.peers[0]!))
    const publisherId = cluster.peers[0]!.peerId
    await waitFor(
      () =>
        host.topicPeers('contributions').includes(publisherId) &&
        host.topicPeers('checkpoints').includes(publisherId),
      'the publisher in the hostile peer topics',
    )
    const pubsub = host.libp2p.services.pubsub as {
      publish(topic: string, data: Uint8Array): Promise<unknown>
    }
    const garbage = (tag: number): Uint8Array => {
      const bytes = new Uint8Array(200).fill(0x7b)
      bytes[0] = tag
      return bytes
    }
    await pubsub.publish(topicString(status.coop, 'contributions'), garbage(GOSSIP_KINDS.contribution.tag))
    await pubsub.publish(topicString(status.coop, 'checkpoints'), garbage(GOSSIP_KINDS.checkpoint.tag))

    const publisher = nodes[0]!
    const told = await publisher.waitFor('contribution rejected', (l) => l.peer === host.peerId, 30_000)
    expect(told.code).toBe('DECODE')
    expect(told.reason).toBe('the message is not valid JSON')
    const checkpoints = await publisher.waitFor('gossip rejected', (l) => l.what === 'checkpoint', 30_000)
    expect(checkpoints).toMatchObject({ code: 'DECODE', count: 1 })

    let families: PrometheusFamily[] = []
    const value = (name: string, labels: Record<string, string>): number =>
      families
        .find((f) => f.name === name)
        ?.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
        .reduce((total, m) => total + Number(m.value), 0) ?? 0
    await waitFor(
      async () => {
        families = parsePrometheusTextFormat(await (await fetch(`${url}metrics`)).text())
        return value('coop_penalties_total', {}) >= 2
      },
      'the penalties on /metrics',
      30_000,
    )
    expect(value('coop_contributions_total', { outcome: 'rejected', code: 'DECODE' })).toBe(1)
    expect(value('coop_contributions_total', { outcome: 'accepted' })).toBe(2)
    expect(value('coop_checkpoints_rejected_total', { stage: 'gossip', code: 'DECODE' })).toBe(1)
    expect(value('coop_penalties_total', { code: 'DECODE' })).toBe(2)
    const page = (await (await fetch(`${url}status.json`)).json()) as {
      rejections: { what: string; code: string; count: number }[]
      recentRejections: { what: string; code: string; peer?: string }[]
      penalizedPeers: { id: string; counts: Record<string, number> }[]
    }
    expect(page.rejections).toContainEqual({
      what: 'contributions',
      stage: 'gossip',
      code: 'DECODE',
      count: 1,
    })
    expect(page.rejections).toContainEqual({ what: 'checkpoints', stage: 'gossip', code: 'DECODE', count: 1 })
    expect(page.recentRejections).toContainEqual(
      expect.objectContaining({ what: 'contributions', peer: host.peerId }),
    )
    expect(page.penalizedPeers).toEqual([expect.objectContaining({ id: host.peerId, counts: { DECODE: 2 } })])
  }, 120_000)

  it('shows the round, the peers and the latest checkpoint in headless Chromium, with no request leaving the node', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} missing: .ci/run installs it with apt-get`).toBe(true)
    const profile = await mkdtemp(join(tmpdir(), 'coop-chromium-'))
    let context: BrowserContext | undefined
    try {
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_FLAGS,
      })
      const outside: string[] = []
      await context.route('**/*', async (route) => {
        if (route.request().url().startsWith(url)) await route.continue()
        else {
          outside.push(route.request().url())
          await route.abort()
        }
      })
      const page = await context.newPage()
      await page.goto(url)
      await page.locator('#conn', { hasText: 'live' }).waitFor()
      expect(await page.textContent('#round')).toBe(`all ${status.totalRounds} rounds done`)
      expect(await page.textContent('#peers')).toMatch(/^[12] peers?$/)
      expect(await page.textContent('#checkpoint')).toBe('unet round 2')
      expect(await page.textContent('#peer-rows')).toContain(cluster.peers[1]!.peerId.slice(-6))
      expect(await page.textContent('#node')).toContain(cluster.peers[0]!.peerId)
      // The hostile peer's contribution and checkpoint (the test above), and its two penalties.
      await page.locator('#rejected[data-contributions="1"][data-checkpoints="1"]').waitFor()
      expect(await page.textContent('#penalties')).toBe('2 penalties')
      expect(await page.textContent('#recent-rows')).toContain('DECODE')
      // Losses were plotted: one line at least.
      expect(await page.locator('#losses polyline').count()).toBeGreaterThan(0)
      await page.screenshot({ path: join(dir, 'status-page.png'), fullPage: true })
      if (process.env.COOP_KEEP_SCREENSHOT !== undefined)
        await page.screenshot({ path: process.env.COOP_KEEP_SCREENSHOT, fullPage: true })
      expect(outside).toEqual([])
    } finally {
      await context?.close()
      await rm(profile, { recursive: true, force: true })
    }
  })
})
