// Protocol throughput: Ed25519 signatures and document verification per second, consent
// manifest creation over 10,000 generated PNGs, and the Merkle root of 1,000,000 leaves.
// Prints a table and writes bench/results/protocol.json.
// Run: npm run bench:protocol   (goals: >= 5,000 verifications/s; 10k-image manifest < 3 s)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32, deflateSync } from 'node:zlib'
import { scanImageFolder } from '../node/cli/commands/consent.ts'
import { createContribution, verifyContribution } from '../protocol/contribution.ts'
import { pae } from '../protocol/dsse.ts'
import { sha256Digest } from '../protocol/digest.ts'
import { canonicalBytes } from '../protocol/jcs.ts'
import { generateKey, peerIdString, sign, verify } from '../protocol/keys.ts'
import { createManifest, verifyManifest } from '../protocol/manifest.ts'
import { merkleRoot } from '../protocol/merkle.ts'

const IMAGES = 10_000
const IMAGE_SIZE = 32
const MERKLE_LEAVES = 1_000_000
const REPEATS = 3

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
}

/** Runs `fn` for ~`seconds` and returns operations per second (best of REPEATS). */
function opsPerSecond(fn: () => void, seconds = 1): number {
  const rates: number[] = []
  for (let r = 0; r < REPEATS; r++) {
    let ops = 0
    const start = performance.now()
    const until = start + seconds * 1000
    while (performance.now() < until) {
      for (let i = 0; i < 100; i++) fn()
      ops += 100
    }
    rates.push(ops / ((performance.now() - start) / 1000))
  }
  return median(rates)
}

/** A valid RGB PNG of noise (so every file is distinct and incompressible, as photos are). */
function noisePng(seed: number, size: number): Uint8Array {
  const chunk = (type: string, data: Uint8Array) => {
    const out = Buffer.alloc(12 + data.length)
    out.writeUInt32BE(data.length, 0)
    out.write(type, 4, 'latin1')
    out.set(data, 8)
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length)
    return out
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(size, 0)
  header.writeUInt32BE(size, 4)
  header[8] = 8
  header[9] = 2
  const raw = Buffer.alloc(size * (size * 3 + 1))
  // xorshift32, seeded per image: deterministic, distinct images.
  let state = Math.imul(seed + 1, 0x9e3779b1) | 1
  for (let y = 0; y < size; y++) {
    raw[y * (size * 3 + 1)] = 0
    for (let x = 1; x <= size * 3; x++) {
      state ^= state << 13
      state ^= state >>> 17
      state ^= state << 5
      raw[y * (size * 3 + 1) + x] = state >>> 24
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

// Shared machines distort timings: the load average is recorded next to every figure.
const loadBefore = loadavg()
const rows: [string, string, string][] = []
const results: Record<string, unknown> = {}

// --- Signatures ---------------------------------------------------------------------------
const key = generateKey()
const message = new Uint8Array(256).fill(7)
const signature = sign(key, message)
const signPerSecond = opsPerSecond(() => sign(key, message))
const verifyPerSecond = opsPerSecond(() => {
  if (!verify(key.publicKey, message, signature)) throw new Error('verification failed')
})
rows.push(['Ed25519 sign (256 B message)', `${Math.round(signPerSecond).toLocaleString('en')} /s`, ''])
rows.push([
  'Ed25519 verify (256 B message)',
  `${Math.round(verifyPerSecond).toLocaleString('en')} /s`,
  'goal >= 5,000 /s',
])

// Whole-document verification: what a node does for every gossiped contribution.
const digestOf = (s: string) => sha256Digest(new TextEncoder().encode(s))
const envelope = createContribution(
  {
    delta: digestOf('d'),
    coop: digestOf('c'),
    round: 1,
    phase: 'unet',
    baseCheckpoint: digestOf('b'),
    manifests: [digestOf('m')],
    itemsRoot: digestOf('r'),
    itemCount: 100,
    samples: 800,
    localSteps: 50,
    loss: 0.1,
    codec: { kind: 'int8' },
  },
  key,
)
const envelopeBytes = canonicalBytes(envelope)
const contributionPerSecond = opsPerSecond(() => verifyContribution(envelopeBytes))
rows.push([
  'verifyContribution (DSSE envelope bytes)',
  `${Math.round(contributionPerSecond).toLocaleString('en')} /s`,
  'goal >= 5,000 /s',
])
const paeBytes = pae(envelope.payloadType, Buffer.from(envelope.payload, 'base64'))
results.signatures = {
  signPerSecond,
  verifyPerSecond,
  verifyContributionPerSecond: contributionPerSecond,
  contributionEnvelopeBytes: envelopeBytes.length,
  paeBytes: paeBytes.length,
}

// --- Consent manifest over 10,000 generated images -----------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'coop-bench-consent-'))
try {
  let totalBytes = 0
  for (let i = 0; i < IMAGES; i++) {
    const png = noisePng(i, IMAGE_SIZE)
    totalBytes += png.length
    writeFileSync(join(dir, `img-${String(i).padStart(5, '0')}.png`), png)
  }
  // Files were just written, so they are in the page cache: this measures our work, not the disk.
  const custodian = peerIdString(generateKey().publicKey)
  const runs: { seconds: number; hashSeconds: number; bytes: number }[] = []
  let manifestBytes = 0
  for (let r = 0; r < REPEATS; r++) {
    const started = performance.now()
    const scan = await scanImageFolder(dir, { progress: false })
    const hashed = performance.now()
    const manifest = createManifest({
      issuerKey: key,
      custodian,
      license: 'CC-BY-4.0',
      attribution: { name: 'Bench' },
      scope: { commercialUse: false, weightRedistribution: true },
      items: scan.images.map(({ digest, mediaType, byteLength }) => ({ digest, mediaType, byteLength })),
    })
    const bytes = canonicalBytes(manifest)
    const seconds = (performance.now() - started) / 1000
    if (scan.images.length !== IMAGES)
      throw new Error(`expected ${IMAGES} images, scanned ${scan.images.length}`)
    manifestBytes = bytes.length
    runs.push({ seconds, hashSeconds: (hashed - started) / 1000, bytes: scan.bytesHashed })
    if (r === REPEATS - 1) {
      const verifyStart = performance.now()
      verifyManifest(bytes, { now: new Date() })
      results.manifestVerifySeconds = (performance.now() - verifyStart) / 1000
    }
  }
  const seconds = median(runs.map((r) => r.seconds))
  const mbPerSecond = totalBytes / 1e6 / seconds
  rows.push([
    `consent create, ${IMAGES.toLocaleString('en')} images (${(totalBytes / 1e6).toFixed(1)} MB)`,
    `${seconds.toFixed(2)} s`,
    'goal < 3 s',
  ])
  rows.push([
    '  of which hashing + type sniffing',
    `${median(runs.map((r) => r.hashSeconds)).toFixed(2)} s`,
    `${mbPerSecond.toFixed(0)} MB/s end to end`,
  ])
  rows.push([
    `verifyManifest, ${IMAGES.toLocaleString('en')} items (${(manifestBytes / 1e6).toFixed(1)} MB)`,
    `${(results.manifestVerifySeconds as number).toFixed(2)} s`,
    '',
  ])
  results.consentCreate = {
    images: IMAGES,
    imageBytesTotal: totalBytes,
    medianSeconds: seconds,
    mbPerSecond,
    runs,
    manifestBytes,
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}

// --- Merkle root of 1,000,000 leaves -------------------------------------------------------
const leaves: string[] = new Array(MERKLE_LEAVES)
for (let i = 0; i < MERKLE_LEAVES; i++)
  leaves[i] = sha256Digest(new Uint8Array([i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff]))
const merkleRuns: number[] = []
let root = ''
for (let r = 0; r < REPEATS; r++) {
  const started = performance.now()
  root = merkleRoot(leaves)
  merkleRuns.push((performance.now() - started) / 1000)
}
rows.push([
  `Merkle root, ${MERKLE_LEAVES.toLocaleString('en')} leaves`,
  `${median(merkleRuns).toFixed(2)} s`,
  `${(MERKLE_LEAVES / median(merkleRuns) / 1e6).toFixed(2)} M leaves/s`,
])
results.merkle = { leaves: MERKLE_LEAVES, medianSeconds: median(merkleRuns), runs: merkleRuns, root }

// --- Report ---------------------------------------------------------------------------------
const width = [Math.max(...rows.map((r) => r[0].length)), Math.max(...rows.map((r) => r[1].length))]
process.stdout.write(
  `protocol benchmark (node ${process.version}, ${cpus().length} cpus, ${cpus()[0]?.model ?? 'unknown cpu'}, load average ${loadBefore[0]?.toFixed(1)} -> ${loadavg()[0]?.toFixed(1)})\n`,
)
for (const [name, value, note] of rows)
  process.stdout.write(
    `  ${name.padEnd(width[0] as number)}  ${value.padStart(width[1] as number)}  ${note}\n`,
  )
await mkdir(new URL('./results/', import.meta.url), { recursive: true })
await writeFile(
  new URL('./results/protocol.json', import.meta.url),
  `${JSON.stringify(
    {
      bench: 'protocol',
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      repeats: REPEATS,
      goals: { verificationsPerSecond: 5000, manifest10kSeconds: 3 },
      loadAverage: { before: loadBefore, after: loadavg() },
      ...results,
      date: new Date().toISOString(),
    },
    null,
    2,
  )}\n`,
)
