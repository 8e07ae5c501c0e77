import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import type { Connection, Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BLOB_CHUNK_BYTES, BLOB_MAX_STREAMS_PER_PEER, BLOB_PROTOCOL } from '../../node/constants.ts'
import {
  type BlobSource,
  BlobTransferError,
  blobDigest,
  envelopeStatementDigest,
  memoryBlobSource,
} from '../../node/p2p/blob.ts'
import type { CoopHost } from '../../node/p2p/host.ts'
import { deterministicBlob } from './helpers/blobs.ts'
import { startHost, TEST_COOP_ID, waitFor } from './helpers/net.ts'

const MiB = 1024 * 1024

function mapSource(blobs: Uint8Array[]): BlobSource {
  const byDigest = new Map(blobs.map((b) => [blobDigest(b), b]))
  return memoryBlobSource((digest) => byDigest.get(digest))
}

/** Reads the request frame of the real protocol and returns its digest. */
async function readRequest(stream: Stream): Promise<string> {
  for await (const frame of lp.decode(stream, { maxDataLength: 256 })) {
    return (JSON.parse(new TextDecoder().decode(frame.subarray())) as { digest: string }).digest
  }
  throw new Error('no request')
}

async function send(stream: Stream, frames: Uint8Array[]): Promise<void> {
  for (const frame of lp.encode(frames)) if (!stream.send(frame)) await stream.onDrain()
}

describe('blob transfer by digest over /diffusion-coop/blob/1.0.0', () => {
  const payload = new Uint8Array(randomBytes(3 * MiB))
  const digest = blobDigest(payload)
  let requester: CoopHost
  let holder: CoopHost
  let liar: CoopHost
  let vanisher: CoopHost
  let staller: CoopHost
  let empty: CoopHost
  const vanisherServed: string[] = []

  beforeAll(async () => {
    requester = await startHost({ blobTimeouts: { chunkTimeoutMs: 1000 } })
    holder = await startHost({ blobs: mapSource([payload]) })
    // The liar serves other bytes of the same length under the requested digest.
    liar = await startHost({ blobs: memoryBlobSource(() => new Uint8Array(payload.byteLength).fill(7)) })
    empty = await startHost({ blobs: mapSource([]) })
    vanisher = await startHost()
    staller = await startHost()
    // The vanisher announces the full blob, sends half a MiB of it, then drops the connection.
    await vanisher.libp2p.unhandle(BLOB_PROTOCOL)
    await vanisher.libp2p.handle(BLOB_PROTOCOL, async (stream: Stream, connection: Connection) => {
      vanisherServed.push(await readRequest(stream))
      await send(stream, [
        new TextEncoder().encode(JSON.stringify({ status: 'ok', size: payload.byteLength })),
        payload.subarray(0, 256 * 1024),
        payload.subarray(256 * 1024, 512 * 1024),
      ])
      await new Promise((resolve) => setTimeout(resolve, 100))
      connection.abort(new Error('provider vanished'))
    })
    // The staller announces the blob and then sends nothing.
    await staller.libp2p.unhandle(BLOB_PROTOCOL)
    await staller.libp2p.handle(BLOB_PROTOCOL, async (stream: Stream) => {
      await readRequest(stream)
      await send(stream, [
        new TextEncoder().encode(JSON.stringify({ status: 'ok', size: payload.byteLength })),
      ])
    })
    for (const peer of [holder, liar, empty, vanisher, staller])
      await requester.dial(peer.multiaddrs()[0] as string)
  })

  afterAll(async () => {
    await Promise.all([requester, holder, liar, empty, vanisher, staller].map((h) => h.stop()))
  })

  it('transfers a 3 MB blob (larger than any gossip message) and verifies its digest', async () => {
    const started = performance.now()
    const bytes = await requester.fetchBlob(digest, { providers: [holder.peerId], maxBytes: 4 * MiB })
    expect(blobDigest(bytes)).toBe(digest)
    expect(Buffer.from(bytes).equals(Buffer.from(payload))).toBe(true)
    expect(performance.now() - started).toBeLessThan(30_000)
  })

  it('retries the next holder when a provider vanishes mid-transfer', async () => {
    const bytes = await requester.fetchBlob(digest, {
      providers: [vanisher.peerId, holder.peerId],
      maxBytes: 4 * MiB,
    })
    expect(vanisherServed).toContain(digest)
    expect(blobDigest(bytes)).toBe(digest)
    // Vanishing may be an honest crash: it is not charged.
    expect(requester.penaltyCounts(vanisher.peerId)).toEqual({})
  })

  it('retries the next holder when the provider process is SIGKILLed mid-transfer', async () => {
    const size = 32 * MiB
    const blob = deterministicBlob(size)
    const bigDigest = blobDigest(blob)
    const backup = await startHost({ blobs: mapSource([blob]) })
    // The production chunk timeout: 32 MiB on a loaded machine can pause longer than the 1 s the
    // shared requester allows for its staller tests.
    const patient = await startHost()
    const child = spawn(
      process.execPath,
      [new URL('./helpers/blob-holder.ts', import.meta.url).pathname, TEST_COOP_ID, String(size)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    const lines = createInterface({ input: child.stdout })
    const exited = new Promise((resolve) => child.on('exit', resolve))
    try {
      const [, childPeer, childAddr] = ((await once(lines, 'line')) as [string])[0].split(' ') as [
        string,
        string,
        string,
      ]
      await patient.dial(childAddr)
      await patient.dial(backup.multiaddrs()[0] as string)
      lines.on('line', (line) => {
        // The request reached the child: let a little data flow, then kill it.
        if (line === 'serving') setTimeout(() => child.kill('SIGKILL'), 50)
      })
      const bytes = await patient.fetchBlob(bigDigest, {
        providers: [childPeer, backup.peerId],
        maxBytes: size,
      })
      expect(child.signalCode).toBe('SIGKILL')
      expect(blobDigest(bytes)).toBe(bigDigest)
      expect(patient.penaltyCounts(childPeer)).toEqual({})
    } finally {
      child.kill('SIGKILL')
      await exited
      await Promise.all([backup.stop(), patient.stop()])
    }
  })

  it('rejects wrong bytes, penalises their sender and fetches from an honest holder', async () => {
    const bytes = await requester.fetchBlob(digest, {
      providers: [liar.peerId, holder.peerId],
      maxBytes: 4 * MiB,
    })
    expect(blobDigest(bytes)).toBe(digest)
    expect(requester.penaltyCounts(liar.peerId)).toEqual({ BLOB_DIGEST_MISMATCH: 1 })
    expect(requester.appScore(liar.peerId)).toBeLessThan(0)
  })

  it('reports every failed provider when none delivers, without hanging on a staller', async () => {
    const started = performance.now()
    const failure = await requester
      .fetchBlob(digest, { providers: [staller.peerId, empty.peerId, liar.peerId], maxBytes: 4 * MiB })
      .catch((err: unknown) => err)
    expect(failure).toBeInstanceOf(BlobTransferError)
    expect((failure as BlobTransferError).code).toBe('ALL_PROVIDERS_FAILED')
    expect((failure as BlobTransferError).attempts.map((a) => [a.provider, a.code])).toEqual([
      [staller.peerId, 'TIMEOUT'],
      [empty.peerId, 'NOT_FOUND'],
      [liar.peerId, 'DIGEST_MISMATCH'],
    ])
    expect(performance.now() - started).toBeLessThan(10_000)
  })

  it('charges a provider that breaks the framing with an oversized chunk', async () => {
    await vanisher.libp2p.unhandle(BLOB_PROTOCOL)
    await vanisher.libp2p.handle(BLOB_PROTOCOL, async (stream: Stream) => {
      await readRequest(stream)
      await send(stream, [
        new TextEncoder().encode(JSON.stringify({ status: 'ok', size: payload.byteLength })),
        payload.subarray(0, BLOB_CHUNK_BYTES + 1),
      ])
      await stream.close()
    })
    const bytes = await requester.fetchBlob(digest, {
      providers: [vanisher.peerId, holder.peerId],
      maxBytes: 4 * MiB,
    })
    expect(blobDigest(bytes)).toBe(digest)
    expect(requester.penaltyCounts(vanisher.peerId)).toEqual({ BLOB_PROTOCOL: 1 })
  })

  it('refuses and charges a provider that announces more than was asked for', async () => {
    const oversell = await startHost()
    await oversell.libp2p.unhandle(BLOB_PROTOCOL)
    await oversell.libp2p.handle(BLOB_PROTOCOL, async (stream: Stream) => {
      await readRequest(stream)
      // Announces 10 MiB when the requester accepts at most 4 MiB.
      await send(stream, [new TextEncoder().encode(JSON.stringify({ status: 'ok', size: 10 * MiB }))])
      await stream.close()
    })
    try {
      await requester.dial(oversell.multiaddrs()[0] as string)
      const failure = (await requester
        .fetchBlob(digest, { providers: [oversell.peerId], maxBytes: 4 * MiB })
        .catch((err: unknown) => err)) as BlobTransferError
      expect(failure.attempts.map((a) => a.code)).toEqual(['PROTOCOL'])
      expect(requester.penaltyCounts(oversell.peerId)).toEqual({ BLOB_PROTOCOL: 1 })
    } finally {
      await oversell.stop()
    }
  })

  it('refuses blobs larger than the caller accepts, and malformed digests', async () => {
    const failure = (await requester
      .fetchBlob(digest, { providers: [holder.peerId], maxBytes: MiB })
      .catch((err: unknown) => err)) as BlobTransferError
    expect(failure.attempts.map((a) => a.code)).toEqual(['TOO_LARGE'])
    await expect(
      requester.fetchBlob('sha256:xyz', { providers: [holder.peerId], maxBytes: MiB }),
    ).rejects.toMatchObject({ code: 'BAD_DIGEST' })
    await expect(requester.fetchBlob(digest, { providers: [], maxBytes: MiB })).rejects.toMatchObject({
      code: 'NO_PROVIDERS',
    })
  })

  it('queues concurrent fetches to one provider instead of tripping its stream limit', async () => {
    const fetches = Array.from({ length: 6 }, () =>
      requester.fetchBlob(digest, { providers: [holder.peerId], maxBytes: 4 * MiB }),
    )
    const results = await Promise.all(fetches)
    for (const bytes of results) expect(blobDigest(bytes)).toBe(digest)
  })

  it('serves at most BLOB_MAX_STREAMS_PER_PEER concurrent streams to one peer', async () => {
    let inFlight = 0
    let peak = 0
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const slow = await startHost({
      blobs: memoryBlobSource(async (wanted) => {
        inFlight += 1
        peak = Math.max(peak, inFlight)
        await gate
        inFlight -= 1
        return wanted === digest ? payload : undefined
      }),
    })
    // A greedy client: without our handler registered, its own outbound cap does not protect the holder.
    const greedy = await startHost()
    await greedy.libp2p.unhandle(BLOB_PROTOCOL)
    try {
      await greedy.dial(slow.multiaddrs()[0] as string)
      const attempts = Array.from({ length: BLOB_MAX_STREAMS_PER_PEER + 3 }, async () => {
        try {
          const stream = await greedy.libp2p.dialProtocol(slow.libp2p.peerId, BLOB_PROTOCOL)
          await send(stream, [new TextEncoder().encode(JSON.stringify({ digest, maxBytes: 4 * MiB }))])
          for await (const frame of lp.decode(stream, { maxDataLength: BLOB_CHUNK_BYTES })) {
            const header = JSON.parse(new TextDecoder().decode(frame.subarray())) as { status: string }
            stream.abort(new Error('enough'))
            return header.status
          }
          return 'closed'
        } catch {
          return 'refused'
        }
      })
      await waitFor(() => peak >= BLOB_MAX_STREAMS_PER_PEER, 'the holder to serve its maximum')
      await new Promise((resolve) => setTimeout(resolve, 200))
      release()
      const outcomes = await Promise.all(attempts)
      expect(peak).toBe(BLOB_MAX_STREAMS_PER_PEER)
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(BLOB_MAX_STREAMS_PER_PEER)
      expect(outcomes.filter((o) => o !== 'ok')).toHaveLength(3)
    } finally {
      release()
      await Promise.all([slow.stop(), greedy.stop()])
    }
  })

  it('closes a stream whose requester never asks, and charges only garbled requests', async () => {
    const strict = await startHost({ blobs: mapSource([payload]), blobTimeouts: { chunkTimeoutMs: 300 } })
    try {
      await requester.dial(strict.multiaddrs()[0] as string)
      const stream = await requester.libp2p.dialProtocol(strict.libp2p.peerId, BLOB_PROTOCOL)
      const started = performance.now()
      // Reading ends when the holder gives up on us; it must not wait for the 2-minute transfer limit.
      await (async () => {
        for await (const _ of stream) {
          // The holder sends nothing to a silent requester.
        }
      })().catch(() => undefined)
      expect(performance.now() - started).toBeLessThan(5_000)
      const bytes = await requester.fetchBlob(digest, { providers: [strict.peerId], maxBytes: 4 * MiB })
      expect(blobDigest(bytes)).toBe(digest)
      // Silence may be a crash: not charged. A garbled request is.
      expect(strict.penaltyCounts(requester.peerId)).toEqual({})
      const garbled = await requester.libp2p.dialProtocol(strict.libp2p.peerId, BLOB_PROTOCOL)
      await send(garbled, [new TextEncoder().encode('{"digest":"md5:0","maxBytes":-1}')])
      await waitFor(
        () => strict.penaltyCounts(requester.peerId).BLOB_PROTOCOL === 1,
        'the garbled request to be charged',
      )
    } finally {
      await strict.stop()
    }
  })

  it('serves the envelope of a statement by its digest ("as":"envelope") and refuses one that carries another', async () => {
    const statement = new TextEncoder().encode(JSON.stringify({ predicate: { round: 3 } }))
    const other = new TextEncoder().encode(JSON.stringify({ predicate: { round: 4 } }))
    const envelopeOf = (bytes: Uint8Array) =>
      new TextEncoder().encode(
        JSON.stringify({
          payloadType: 'application/vnd.in-toto+json',
          payload: Buffer.from(bytes).toString('base64'),
          signatures: [],
        }),
      )
    const wanted = blobDigest(statement)
    const honest = await startHost({
      blobs: memoryBlobSource(
        () => undefined,
        (d) => (d === wanted ? envelopeOf(statement) : undefined),
      ),
    })
    // A holder that answers every envelope request with the envelope of another statement.
    const forger = await startHost({
      blobs: memoryBlobSource(
        () => undefined,
        () => envelopeOf(other),
      ),
    })
    try {
      for (const peer of [honest, forger]) await requester.dial(peer.multiaddrs()[0] as string)
      const bytes = await requester.fetchBlob(wanted, {
        providers: [forger.peerId, honest.peerId],
        maxBytes: MiB,
        envelope: true,
      })
      expect(envelopeStatementDigest(bytes)).toBe(wanted)
      expect(requester.penaltyCounts(forger.peerId)).toEqual({ BLOB_DIGEST_MISMATCH: 1 })
      // The blob itself is not served under its statement's digest, nor an envelope by a blob request.
      const plain = (await requester
        .fetchBlob(wanted, { providers: [honest.peerId], maxBytes: MiB })
        .catch((err: unknown) => err)) as BlobTransferError
      expect(plain.attempts.map((a) => a.code)).toEqual(['NOT_FOUND'])
      const none = (await requester
        .fetchBlob(wanted, { providers: [holder.peerId], maxBytes: MiB, envelope: true })
        .catch((err: unknown) => err)) as BlobTransferError
      expect(none.attempts.map((a) => a.code)).toEqual(['NOT_FOUND'])
    } finally {
      await Promise.all([honest.stop(), forger.stop()])
    }
  })

  it('serves from any holder, including a peer that fetched the blob itself', async () => {
    const fetched = await requester.fetchBlob(digest, { providers: [holder.peerId], maxBytes: 4 * MiB })
    requester.setBlobSource(mapSource([fetched]))
    const bytes = await empty.fetchBlob(digest, { providers: [requester.peerId], maxBytes: 4 * MiB })
    expect(blobDigest(bytes)).toBe(digest)
  })
})
