// Cost of rejection: CPU time a node spends refusing forged gossip (a manifest, a revocation or
// a contribution whose signature does not verify: the most expensive forgery, since every cheaper
// check passes) at several sizes, through the real validation chains a node installs. Each row
// is compared, in the same run, with JSON.parse of the same bytes (the least any verifier must
// do), so the ratio holds on a loaded machine where absolute times do not.
// Prints a table and writes bench/results/rejection.json.
// Run: npm run bench:rejection   (goal: a forged 1 MiB manifest costs < 20 ms of CPU)
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createContribution } from '../protocol/contribution.ts'
import { canonicalize } from '../protocol/jcs.ts'
import { generateKey, peerIdString } from '../protocol/keys.ts'
import { createManifest } from '../protocol/manifest.ts'
import { createRevocation } from '../protocol/revocation.ts'
import { isGossipValidationError } from '../node/p2p/gossip-errors.ts'
import type { GossipInput } from '../node/p2p/gossip-validator.ts'
import { createConsentValidator } from '../node/validation/consent.ts'
import { encodeGossipMessage } from '../node/validation/messages.ts'
import { createContributionValidator } from '../node/validation/statements.ts'

/** Rejections timed per row; the median is reported (a loaded machine has long tails). */
const RUNS = 31
const GOAL_MS_PER_MIB_MANIFEST = 20

const digest = (): string => `sha256:${createHash('sha256').update(randomBytes(16)).digest('hex')}`
const issuer = generateKey()
const node = generateKey()
const nodeId = peerIdString(node.publicKey)
const coop = digest()

/** Flips the last character of a Data Integrity proofValue: the signature no longer verifies. */
function forgeProof<T extends { proof: { proofValue: string } }>(doc: T): T {
  const copy = JSON.parse(JSON.stringify(doc)) as T
  const last = copy.proof.proofValue.at(-1) === '1' ? '2' : '1'
  copy.proof.proofValue = copy.proof.proofValue.slice(0, -1) + last
  return copy
}

function forgedManifest(items: number): Uint8Array {
  const manifest = createManifest({
    issuerKey: issuer,
    custodian: nodeId,
    license: 'CC-BY-4.0',
    attribution: { name: 'Bench rights holder' },
    scope: { commercialUse: false, weightRedistribution: false },
    items: Array.from({ length: items }, (_, i) => ({
      digest: digest(),
      mediaType: 'image/png' as const,
      byteLength: 1000 + i,
    })),
  })
  return encodeGossipMessage('manifest', forgeProof(manifest))
}

function forgedRevocation(items: number): Uint8Array {
  const revocation = createRevocation({
    issuerKey: issuer,
    manifest: digest(),
    items: Array.from({ length: items }, () => digest()),
  })
  return encodeGossipMessage('revocation', forgeProof(revocation))
}

function forgedContribution(manifests: number): Uint8Array {
  const envelope = createContribution(
    {
      coop,
      round: 1,
      phase: 'unet',
      baseCheckpoint: digest(),
      manifests: Array.from({ length: manifests }, () => digest()),
      itemsRoot: digest(),
      itemCount: 100,
      samples: 800,
      localSteps: 50,
      loss: 0.1,
      codec: { kind: 'int8' },
      delta: digest(),
    },
    node,
  )
  const sig = envelope.signatures[0]?.sig as string
  const flipped = `${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`
  return encodeGossipMessage('contribution', {
    ...envelope,
    signatures: [{ keyid: nodeId, sig: flipped }],
  })
}

const consentValidator = createConsentValidator(
  {
    acceptedLicenses: ['CC-BY-4.0'],
    admission: { mode: 'open' },
    intendedUse: { commercialUse: false, weightRedistribution: false },
  },
  {
    revocationStatus: () => ({ kind: 'unknown-manifest' }),
    holdRevocation: () => 'held',
    fullyRevoked: () => false,
  },
)
const contributionValidator = createContributionValidator({ coopId: coop, admission: { mode: 'open' } })

function cpuMs(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
}

/** Median CPU ms of one rejection; throws if the message is not rejected with `code`. */
async function rejectionCpu(
  validate: (input: GossipInput) => Promise<void>,
  data: Uint8Array,
  topic: GossipInput['topic'],
  code: string,
): Promise<number> {
  const input: GossipInput = { from: nodeId, propagationSource: nodeId, topic, data }
  const samples: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const started = cpuMs()
    try {
      await validate(input)
      throw new Error('forged message was accepted')
    } catch (err) {
      if (!isGossipValidationError(err) || err.code !== code)
        throw new Error(`expected ${code}, got ${String(err)}`)
    }
    samples.push(cpuMs() - started)
  }
  return median(samples)
}

function parseCpu(data: Uint8Array): number {
  const text = Buffer.from(data.buffer, data.byteOffset + 1, data.byteLength - 1).toString('utf8')
  const samples: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const started = cpuMs()
    JSON.parse(text)
    samples.push(cpuMs() - started)
  }
  return median(samples)
}

interface Row {
  kind: 'manifest' | 'revocation' | 'contribution'
  size: string
  bytes: number
  rejectCpuMs: number
  jsonParseCpuMs: number
  ratioToJsonParse: number
}

const cases: { kind: Row['kind']; size: string; data: Uint8Array }[] = [
  { kind: 'manifest', size: '10 items', data: forgedManifest(10) },
  { kind: 'manifest', size: '1,000 items', data: forgedManifest(1000) },
  { kind: 'manifest', size: '1 MiB (gossip limit)', data: forgedManifest(8200) },
  { kind: 'revocation', size: '10 items', data: forgedRevocation(10) },
  { kind: 'revocation', size: '1,000 items', data: forgedRevocation(1000) },
  { kind: 'revocation', size: '512 KiB (gossip limit)', data: forgedRevocation(7000) },
  { kind: 'contribution', size: '1 manifest', data: forgedContribution(1) },
  { kind: 'contribution', size: '100 manifests', data: forgedContribution(100) },
  { kind: 'contribution', size: '1,024 manifests', data: forgedContribution(1024) },
]

const loadBefore = loadavg()
const rows: Row[] = []
for (const c of cases) {
  const validate = c.kind === 'contribution' ? contributionValidator : consentValidator
  const topic = c.kind === 'contribution' ? 'contributions' : 'consent'
  // Warm up the JIT on this shape before timing.
  await rejectionCpu(validate, c.data, topic, 'BAD_SIGNATURE')
  const rejectCpuMs = await rejectionCpu(validate, c.data, topic, 'BAD_SIGNATURE')
  const jsonParseCpuMs = parseCpu(c.data)
  rows.push({
    kind: c.kind,
    size: c.size,
    bytes: c.data.byteLength,
    rejectCpuMs,
    jsonParseCpuMs,
    ratioToJsonParse: rejectCpuMs / Math.max(jsonParseCpuMs, 0.001),
  })
}
const loadAfter = loadavg()

const header = ['forged (bad signature)', 'size', 'bytes', 'CPU ms / rejection', 'JSON.parse ms', 'ratio']
const table = rows.map((r) => [
  r.kind,
  r.size,
  r.bytes.toLocaleString('en'),
  r.rejectCpuMs.toFixed(2),
  r.jsonParseCpuMs.toFixed(2),
  `${r.ratioToJsonParse.toFixed(1)}x`,
])
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] as string).length)))
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ')
process.stdout.write(`${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`)
for (const row of table) process.stdout.write(`${line(row)}\n`)
const mib = rows.find((r) => r.kind === 'manifest' && r.size.startsWith('1 MiB')) as Row
process.stdout.write(
  `\nforged 1 MiB manifest: ${mib.rejectCpuMs.toFixed(1)} ms CPU (goal < ${GOAL_MS_PER_MIB_MANIFEST} ms); ` +
    `load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} -> ${loadAfter.map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} CPUs\n`,
)

const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'rejection.json')
mkdirSync(dirname(out), { recursive: true })
writeFileSync(
  out,
  `${canonicalize({
    bench: 'rejection',
    date: new Date().toISOString(),
    runsPerRow: RUNS,
    cpus: cpus().length,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadAfter,
    goalMsPerForgedMiBManifest: GOAL_MS_PER_MIB_MANIFEST,
    rows,
  })}\n`,
)
process.stdout.write(`wrote ${out}\n`)
