// A real `coop start` process holding a large blob, attacked by requesters that ask for it and
// never read, while an honest peer fetches it; the node's RSS is sampled from /proc throughout.
// Shared by the bounded-serving adversary test and bench/blob-serving.bench.ts.
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { verifyCharter } from '../../../protocol/charter.ts'
import { BlobTransferError, blobDigest } from '../../../node/p2p/blob.ts'
import { FETCH_ATTEMPTS, FETCH_RETRY_MS } from '../../../node/round/constants.ts'
import { bootstrapAddr, createCluster, startNode, stopAll } from '../cluster-helpers/cluster.ts'
import { openNonReadingStreams } from './blob-attacker.ts'
import { deterministicBlob } from './blobs.ts'
import { startHost } from './net.ts'

const MiB = 1024 * 1024
/** Memory keeps being sampled this long after the last attacker stream closed: anything the closes leave behind still counts. */
const CLOSED_GRACE_MS = 2_000

export interface ServingAttackOptions {
  dir: string
  blobMiB: number
  identities: number
  streamsPerIdentity: number
  /** How long the non-readers stay, from their first request. */
  holdSeconds: number
  /** When the honest fetch starts, after the attack began. */
  honestAfterSeconds: number
  /**
   * End the hold early once the node closed every attacker stream (and the honest fetch is done),
   * sampling memory for CLOSED_GRACE_MS more; holdSeconds stays the cap. Off by default (the bench
   * holds for its fixed time).
   */
  endWhenAllClosed?: boolean
  /** More `coop start` arguments (e.g. `--log-level debug` to see why a stream was closed). */
  nodeArgs?: string[]
}

export interface ServingAttackResult {
  blobBytes: number
  streams: number
  baselineRssBytes: number
  peakRssBytes: number
  /** The same node serving the blob to the honest peer alone, before the attack: RSS before and at its peak. */
  honestAlone: { beforeRssBytes: number; peakRssBytes: number; seconds: number }
  /**
   * The honest fetch during the attack, retried as the node's Fetcher retries (FETCH_ATTEMPTS
   * attempts, FETCH_RETRY_MS apart): whether it got the blob, after how many attempts, why the
   * failed ones failed, and the seconds from its first attempt to the end.
   */
  honestFetch: {
    ok: boolean
    attempts: number
    failures: string[]
    seconds: number
    code?: string
    message?: string
  }
  /** The most V8 held during the attack (from the node's /metrics, every half second): ArrayBuffers, and the JS heap. */
  peakExternalBytes: number
  peakHeapUsedBytes: number
  /** The honest peer's fetch once the attackers left. */
  afterAttack: { ok: boolean; seconds: number; code?: string; message?: string }
  /** Attacker streams the node closed its end of or reset while they stayed. */
  closedByHolder: number
  rssSamples: number
  /** RSS during the attack, one sample per half second: [seconds since the attack began, bytes]. */
  series: [number, number][]
  /** Seconds since the attack began when the honest fetch started and ended. */
  honestWindow: [number, number]
}

/** Resident set size of a process, from /proc (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  if (match === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

export async function measureServingAttack(options: ServingAttackOptions): Promise<ServingAttackResult> {
  const cluster = await createCluster({
    dir: options.dir,
    peers: 1,
    imagesPerPeer: 4,
    charterArgs: ['--ae-rounds', '1', '--unet-rounds', '1', '--quorum', '2', '--deadline', '900'],
  })
  const peer = cluster.peers[0]!
  const coopId = verifyCharter(new Uint8Array(await readFile(cluster.charter))).coopId
  // A publisher that does not train: it signs the genesis and then only serves.
  const httpPort = 20_000 + Math.floor(Math.random() * 20_000)
  const node = startNode(cluster, peer, {
    extra: ['--no-train', '--http', `127.0.0.1:${httpPort}`, ...(options.nodeArgs ?? [])],
  })
  const honest = await startHost({ coopId })
  let attack: Awaited<ReturnType<typeof openNonReadingStreams>> | undefined
  let sampler: NodeJS.Timeout | undefined
  let heapSampler: NodeJS.Timeout | undefined
  try {
    const target = await bootstrapAddr(peer)
    await node.waitFor('listening')
    // A large blob in the node's store, as a big checkpoint file would be (temp name, then rename).
    const blob = deterministicBlob(options.blobMiB * MiB)
    const digest = blobDigest(blob)
    const temp = join(peer.store, 'blobs', 'tmp', `${digest.slice(7)}.bench`)
    await writeFile(temp, blob)
    await rename(temp, join(peer.store, 'blobs', 'sha256', digest.slice(7)))

    const pid = node.child.pid as number
    const samples: { at: number; rss: number }[] = []
    sampler = setInterval(() => {
      rssBytes(pid).then(
        (rss) => samples.push({ at: performance.now(), rss }),
        () => undefined,
      )
    }, 50)
    // What V8 holds (ArrayBuffers in external memory, JS objects in the heap), from the node's
    // own /metrics: RSS can stay high after V8 freed memory, when the allocator keeps it.
    const heap: { at: number; external: number; heapUsed: number }[] = []
    heapSampler = setInterval(() => {
      fetch(`http://127.0.0.1:${httpPort}/metrics`)
        .then((r) => r.text())
        .then((text) => {
          const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1])
          const external = metric('coop_process_nodejs_external_memory_bytes')
          const heapUsed = metric('coop_process_nodejs_heap_size_used_bytes')
          if (Number.isFinite(external) && Number.isFinite(heapUsed))
            heap.push({ at: performance.now(), external, heapUsed })
        })
        .catch(() => undefined)
    }, 500)
    const fetchOnce = async (): Promise<{
      ok: boolean
      seconds: number
      code?: string
      message?: string
    }> => {
      const started = performance.now()
      try {
        const bytes = await honest.fetchBlob(digest, { providers: [peer.peerId], maxBytes: blob.byteLength })
        return { ok: blobDigest(bytes) === digest, seconds: (performance.now() - started) / 1000 }
      } catch (err) {
        const code = err instanceof BlobTransferError ? (err.attempts[0]?.code ?? err.code) : String(err)
        const message =
          err instanceof BlobTransferError ? (err.attempts[0]?.message ?? err.message) : undefined
        return {
          ok: false,
          code,
          ...(message === undefined ? {} : { message }),
          seconds: (performance.now() - started) / 1000,
        }
      }
    }
    await honest.dial(target)
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    // Warm, and the reference: the node serves the blob once to the honest peer alone.
    const aloneStarted = performance.now()
    const aloneBefore = Math.max(...samples.slice(-10).map((s) => s.rss))
    const alone = await fetchOnce()
    const honestAlone = {
      beforeRssBytes: aloneBefore,
      peakRssBytes: Math.max(...samples.filter((s) => s.at >= aloneStarted).map((s) => s.rss)),
      seconds: alone.seconds,
    }
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    const settled = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const before = samples.filter((s) => s.at >= settled).map((s) => s.rss)
    const baselineRssBytes = Math.max(...before)

    const attackStarted = performance.now()
    attack = await openNonReadingStreams({
      target,
      coopId,
      digest,
      identities: options.identities,
      streamsPerIdentity: options.streamsPerIdentity,
    })
    const elapsed = () => (performance.now() - attackStarted) / 1000
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, options.honestAfterSeconds - elapsed()) * 1000),
    )
    const honestStarted = elapsed()
    const honestStart = performance.now()
    const failures: string[] = []
    let last = await fetchOnce()
    while (!last.ok && failures.length < FETCH_ATTEMPTS - 1) {
      failures.push(`${last.code}: ${last.message ?? ''}`)
      await new Promise((resolve) => setTimeout(resolve, FETCH_RETRY_MS))
      last = await fetchOnce()
    }
    if (!last.ok) failures.push(`${last.code}: ${last.message ?? ''}`)
    const honestFetch = {
      ...last,
      attempts: failures.length + (last.ok ? 1 : 0),
      failures,
      seconds: (performance.now() - honestStart) / 1000,
    }
    const honestWindow: [number, number] = [honestStarted, elapsed()]
    const holdEnd = attackStarted + options.holdSeconds * 1000
    let allClosedAt: number | undefined
    while (performance.now() < holdEnd) {
      if (
        options.endWhenAllClosed === true &&
        allClosedAt === undefined &&
        attack.ended() === attack.streams.length
      )
        allClosedAt = performance.now()
      if (allClosedAt !== undefined && performance.now() >= allClosedAt + CLOSED_GRACE_MS) break
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(100, Math.max(0, holdEnd - performance.now()))),
      )
    }
    const during = samples.filter((s) => s.at >= attackStarted).map((s) => s.rss)
    const series: [number, number][] = []
    for (const sample of samples.filter((s) => s.at >= attackStarted)) {
      const seconds = Math.round((sample.at - attackStarted) / 500) / 2
      if (series.at(-1)?.[0] !== seconds) series.push([seconds, sample.rss])
    }
    const heapDuring = heap.filter((s) => s.at >= attackStarted)
    // The attackers leave; the node serves as before.
    const closedByHolder = attack.ended()
    await attack.stop()
    const afterAttack = await fetchOnce()
    return {
      afterAttack,
      peakExternalBytes: Math.max(...heapDuring.map((s) => s.external)),
      peakHeapUsedBytes: Math.max(...heapDuring.map((s) => s.heapUsed)),
      blobBytes: blob.byteLength,
      streams: attack.streams.length,
      baselineRssBytes,
      peakRssBytes: Math.max(...during),
      honestAlone,
      honestFetch,
      closedByHolder,
      rssSamples: during.length,
      series,
      honestWindow,
    }
  } finally {
    clearInterval(sampler)
    clearInterval(heapSampler)
    await attack?.stop()
    await honest.stop()
    await stopAll([node])
  }
}
