// Blob transfer throughput over /diffusion-coop/blob/1.0.0 between two real hosts on loopback
// TCP (noise + yamux), digest verification included. Writes bench/results/blob.json.
// Run: node_modules/.bin/node bench/blob.bench.ts
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { blobDigest, memoryBlobSource } from '../node/p2p/blob.ts'
import { createCoopHost } from '../node/p2p/host.ts'

const MiB = 1024 * 1024
const sizes = [1, 4, 32, 128].map((n) => n * MiB)
const repeats = 3

const blobs = new Map<string, Uint8Array>()
const holder = await createCoopHost({
  privateKey: await generateKeyPair('Ed25519'),
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: [],
  coopId: 'bench',
  blobs: memoryBlobSource((d) => blobs.get(d)),
})
const requester = await createCoopHost({
  privateKey: await generateKeyPair('Ed25519'),
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: [],
  coopId: 'bench',
})
await holder.start()
await requester.start()
await requester.dial(holder.multiaddrs()[0] as string)

const results = []
for (const size of sizes) {
  const bytes = new Uint8Array(randomBytes(size))
  const digest = blobDigest(bytes)
  blobs.set(digest, bytes)
  const seconds: number[] = []
  for (let i = 0; i < repeats; i++) {
    const started = performance.now()
    const fetched = await requester.fetchBlob(digest, { providers: [holder.peerId], maxBytes: size })
    seconds.push((performance.now() - started) / 1000)
    if (fetched.byteLength !== size) throw new Error('short blob')
  }
  const best = Math.min(...seconds)
  const median = [...seconds].sort((a, b) => a - b)[Math.floor(seconds.length / 2)] as number
  results.push({
    bytes: size,
    medianSeconds: median,
    bestSeconds: best,
    medianMiBPerSecond: size / MiB / median,
  })
  blobs.delete(digest)
  console.log(
    `${(size / MiB).toString().padStart(4)} MiB: median ${median.toFixed(3)} s, ${(size / MiB / median).toFixed(1)} MiB/s`,
  )
}
await requester.stop()
await holder.stop()
await mkdir(new URL('./results/', import.meta.url), { recursive: true })
await writeFile(
  new URL('./results/blob.json', import.meta.url),
  `${JSON.stringify({ bench: 'blob-transfer-loopback', node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadAverage1m: loadavg()[0], repeats, results, date: new Date().toISOString() }, null, 2)}\n`,
)
