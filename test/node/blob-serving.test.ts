// Blob serving bounds memory as well as slots: real hosts on loopback, requesters that ask and
// never read (test/node/helpers/blob-attacker.ts). The serving limits are lowered per host so each
// bound is reached in a test's time; the production values are in node/constants.ts.
import { afterEach, describe, expect, it } from 'vitest'
import { BLOB_PROTOCOL } from '../../node/constants.ts'
import { BlobTransferError, blobDigest, memoryBlobSource } from '../../node/p2p/blob.ts'
import type { BlobSource } from '../../node/p2p/blob-server.ts'
import type { CoopHost } from '../../node/p2p/host.ts'
import { deterministicBlob } from './helpers/blobs.ts'
import { openNonReadingStreams, type NonReaders } from './helpers/blob-attacker.ts'
import { startHost, TEST_COOP_ID, waitFor } from './helpers/net.ts'

const MiB = 1024 * 1024
const running: (CoopHost | NonReaders)[] = []

async function host(...args: Parameters<typeof startHost>): Promise<CoopHost> {
  const started = await startHost(...args)
  running.push(started)
  return started
}

async function nonReaders(holder: CoopHost, digest: string, identities: number, streamsPerIdentity: number) {
  const attack = await openNonReadingStreams({
    target: holder.multiaddrs()[0] as string,
    coopId: TEST_COOP_ID,
    digest,
    identities,
    streamsPerIdentity,
  })
  running.push(attack)
  return attack
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()))
})

describe('blob serving under requesters that never read', () => {
  it('reads the blob from its source one chunk at a time, only as the reader takes frames', async () => {
    // A 256 MiB blob that exists only as it is read: the source counts the chunks it was asked for.
    const size = 256 * MiB
    let pulled = 0
    const digest = `sha256:${'7'.repeat(64)}`
    const source: BlobSource = {
      async openBlob(wanted) {
        if (wanted !== digest) return undefined
        return {
          size,
          async *chunks(chunkBytes) {
            for (let offset = 0; offset < size; offset += chunkBytes) {
              pulled += 1
              yield new Uint8Array(Math.min(chunkBytes, size - offset))
            }
          },
          async close() {},
        }
      },
    }
    const holder = await host({
      blobs: source,
      blobServing: { stallTimeoutMs: 60_000, peerBytesBurst: 4096 * MiB },
    })
    await nonReaders(holder, digest, 2, 4)
    await waitFor(() => holder.blobServingStats().serving === 8, 'eight streams to be served')
    // Whenever a connection's socket drains (any other transfer on it), libp2p dispatches 'drain'
    // to every stream of the connection, also to these, whose own window is exhausted; a CI run
    // pulled 1,028 chunks this way. Do what the muxer does, many times over.
    const served = holder.libp2p
      .getConnections()
      .flatMap((c) => c.streams)
      .filter((s) => s.protocol === BLOB_PROTOCOL)
    expect(served).toHaveLength(8)
    for (let i = 0; i < 100; i++) {
      for (const stream of served) stream.dispatchEvent(new Event('drain'))
      await new Promise((resolve) => setImmediate(resolve))
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(pulled).toBeLessThanOrEqual(8 * 2)
    for (const stream of served) expect(stream.writeBufferLength).toBeLessThanOrEqual(MiB + 16)
    expect(holder.blobServingStats().servedBytes).toBe(0)
  })

  it('closes a reader that takes no frame within the stall timeout', async () => {
    const blob = deterministicBlob(8 * MiB)
    const holder = await host({
      blobs: memoryBlobSource((d) => (d === blobDigest(blob) ? blob : undefined)),
      blobServing: { stallTimeoutMs: 500 },
    })
    const attack = await nonReaders(holder, blobDigest(blob), 1, 2)
    await waitFor(() => holder.blobServingStats().slowClosed === 2, 'both stalled streams to be closed')
    await waitFor(() => attack.ended() === 2, 'the requester to see its streams end')
    expect(holder.blobServingStats().serving).toBe(0)
    // Stalling is not charged: a slow link looks the same.
    for (const h of attack.hosts) expect(holder.penaltyCounts(h.peerId)).toEqual({})
  })

  it('gives the slot of the longest-stalled reader to an honest requester when every slot is taken', async () => {
    const blob = deterministicBlob(8 * MiB)
    const source = memoryBlobSource((d) => (d === blobDigest(blob) ? blob : undefined))
    const limits = { maxServingStreams: 4, stallTimeoutMs: 60_000 }
    const evicting = await host({ blobs: source, blobServing: { ...limits, evictStalledAfterMs: 300 } })
    const keeping = await host({ blobs: source, blobServing: { ...limits, evictStalledAfterMs: 3_600_000 } })
    for (const holder of [evicting, keeping]) {
      await nonReaders(holder, blobDigest(blob), 2, 2)
      await waitFor(() => holder.blobServingStats().serving === 4, 'every slot to be taken')
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
    const honest = await host()
    for (const holder of [evicting, keeping]) await honest.dial(holder.multiaddrs()[0] as string)
    const bytes = await honest.fetchBlob(blobDigest(blob), {
      providers: [evicting.peerId],
      maxBytes: 8 * MiB,
    })
    expect(blobDigest(bytes)).toBe(blobDigest(blob))
    expect(evicting.blobServingStats().evicted).toBe(1)
    // Without eviction the non-readers would keep it out until the stall timeout.
    const refused = (await honest
      .fetchBlob(blobDigest(blob), { providers: [keeping.peerId], maxBytes: 8 * MiB })
      .catch((err: unknown) => err)) as BlobTransferError
    expect(refused.attempts.map((a) => a.code)).toEqual(['BUSY'])
  })

  it('answers busy to a peer over its byte budget and keeps serving the others', async () => {
    const blob = deterministicBlob(3 * MiB)
    const holder = await host({
      blobs: memoryBlobSource((d) => (d === blobDigest(blob) ? blob : undefined)),
      blobServing: { peerBytesBurst: 5 * MiB, peerBytesPerSecond: 1 },
    })
    const [greedy, other] = [await host(), await host()]
    for (const requester of [greedy, other]) await requester.dial(holder.multiaddrs()[0] as string)
    const fetch = (requester: CoopHost) =>
      requester.fetchBlob(blobDigest(blob), { providers: [holder.peerId], maxBytes: 4 * MiB })
    expect(blobDigest(await fetch(greedy))).toBe(blobDigest(blob))
    const refused = (await fetch(greedy).catch((err: unknown) => err)) as BlobTransferError
    expect(refused).toBeInstanceOf(BlobTransferError)
    expect(refused.attempts.map((a) => a.code)).toEqual(['BUSY'])
    expect(blobDigest(await fetch(other))).toBe(blobDigest(blob))
    expect(holder.blobServingStats()).toMatchObject({ busyBudget: 1, servedBytes: 6 * MiB })
    // Over budget is not an offence.
    expect(holder.penaltyCounts(greedy.peerId)).toEqual({})
  })
})
