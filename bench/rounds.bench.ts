// Real cooperatives of N = 4, 8 and 16 `coop start` processes on loopback, for the tiny and
// emoji32 configs: one autoencoder round, then U-Net rounds. Writes bench/results/rounds.json:
//   - bytes each peer sends per round (its compressed contribution; and measured uploads: blob
//     bytes served plus gossip originated) against a per-step dense fp32 exchange over the same
//     H steps (H x 4 bytes x parameters), and the ratio;
//   - round-close latency: last contribution accepted by the publisher -> checkpoint verified
//     (recomputed) and adopted on every peer;
//   - peak RSS per node (VmHWM).
// Goals (issue 4): >= 1000x fewer bytes; round close < 2 s for a 10 MB model at 16 peers.
//
// Run: npm run bench:rounds [-- --peers 4,8,16 --configs tiny,emoji32 --inner-steps 25 --compress topk:0.01 --unet-rounds 2]
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { compressDelta, parseCodec } from '../protocol/compression.ts'
import { sha256Digest } from '../protocol/digest.ts'
import { encodeSafetensors } from '../protocol/safetensors.ts'
import { computeCheckpoint } from '../node/round/recompute.ts'
import { decodeTensors, zerosLike, type NamedTensor } from '../node/round/tensors.ts'
import { checkpointDir } from '../node/round/layout.ts'
import {
  bootstrapAddr,
  createCluster,
  startNode,
  stopAll,
  type LogLine,
  type NodeProcess,
} from '../test/node/cluster-helpers/cluster.ts'

const GOALS = { minBytesRatio: 1000, maxCloseSecondsAt16For10MB: 2 }

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    peers: { type: 'string', default: '4,8,16' },
    configs: { type: 'string', default: 'tiny,emoji32' },
    'inner-steps': { type: 'string', default: '25' },
    compress: { type: 'string', default: 'topk:0.01' },
    'unet-rounds': { type: 'string', default: '2' },
    images: { type: 'string', default: '8' },
    out: { type: 'string', default: 'bench/results/rounds.json' },
    /** Skip the process runs: only the 10 MB close-compute measurement. */
    'synthetic-only': { type: 'boolean', default: false },
  },
})

const innerSteps = Number(values['inner-steps'])
const unetRounds = Number(values['unet-rounds'])

async function peakRss(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const match = /VmHWM:\s+(\d+) kB/.exec(status)
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length
}

interface RunResult {
  config: string
  peers: number
  innerSteps: number
  codec: string
  parameters: number
  modelBytes: number
  contributionBytesPerPeerPerRound: number
  denseBytesPerPeerPerRound: number
  ratio: number
  measuredUploadBytesPerTrainerPerRound: number
  measuredRatio: number
  publisherUploadBytesPerRound: number
  roundCloseSeconds: { round: number; seconds: number }[]
  roundCloseSecondsMax: number
  /** Publisher: decode + aggregate + outer step + encode, per U-Net round (ms). */
  aggregateMs: number[]
  /** Slowest peer's fetch + recomputation per U-Net round (ms): the close latency one peer on its own machine would see, minus gossip. */
  verifyMsMax: number[]
  peakRssBytes: { min: number; max: number; mean: number }
  wallSeconds: number
}

async function runOnce(config: string, peers: number): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), `coop-bench-${config}-${peers}-`))
  const started = performance.now()
  const nodes: NodeProcess[] = []
  const rss = new Map<number, number>()
  try {
    const cluster = await createCluster({
      dir,
      peers,
      config,
      imagesPerPeer: Number(values.images),
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        String(unetRounds),
        '--inner-steps',
        String(innerSteps),
        '--compress',
        values.compress as string,
        '--quorum',
        String(peers),
        '--deadline',
        '3600',
      ],
    })
    const publisher = startNode(cluster, cluster.peers[0]!, { extra: ['--linger', '5'] })
    nodes.push(publisher)
    const addr = await bootstrapAddr(cluster.peers[0]!)
    for (const peer of cluster.peers.slice(1))
      nodes.push(startNode(cluster, peer, { bootstrap: [addr], extra: ['--linger', '5'] }))
    const poll = setInterval(() => {
      for (const n of nodes) {
        const pid = n.child.pid
        if (pid === undefined || !n.running) continue
        void peakRss(pid).then((v) => {
          if (v !== undefined) rss.set(pid, Math.max(rss.get(pid) ?? 0, v))
        })
      }
    }, 250)
    const exits = await Promise.all(nodes.map((n) => n.exited))
    clearInterval(poll)
    if (exits.some((e) => e.code !== 0))
      throw new Error(`a node failed: ${nodes.map((n) => `${n.peer.name}: ${n.tail(5)}`).join('\n')}`)

    const total = 1 + unetRounds
    const model = decodeTensors(
      new Uint8Array(
        await readFile(join(checkpointDir(cluster.peers[0]!.store, 'unet', total), 'model.safetensors')),
      ),
    )
    const parameters = model.reduce((n, t) => n + t.data.length, 0)
    const modelBytes = (
      await readFile(join(checkpointDir(cluster.peers[0]!.store, 'unet', total), 'model.safetensors'))
    ).byteLength
    const unetRoundsList = Array.from({ length: unetRounds }, (_, i) => 2 + i)
    const contributionBytes = nodes.flatMap((n) =>
      n.lines
        .filter((l) => l.msg === 'contribution published' && unetRoundsList.includes(l.round as number))
        .map((l) => l.bytes as number),
    )
    const traffic = (n: NodeProcess) => {
      const line = n.lines.find((l) => l.msg === 'node stopped') as
        (LogLine & { blobServedBytes: number; gossipPublishedBytes: number }) | undefined
      return line === undefined ? Number.NaN : line.blobServedBytes + line.gossipPublishedBytes
    }
    const measuredTrainers = nodes.slice(1).map((n) => traffic(n) / total)
    const closes = unetRoundsList.map((round) => {
      const accepted = publisher.lines.filter(
        (l) => (l.msg === 'contribution accepted' || l.msg === 'contribution published') && l.round === round,
      )
      const lastAccepted = Math.max(...accepted.map((l) => l.time as number))
      const adopted = nodes
        .slice(1)
        .map((n) => n.lines.find((l) => l.msg === 'checkpoint adopted' && l.round === round)?.time as number)
      return { round, seconds: (Math.max(...adopted) - lastAccepted) / 1000 }
    })
    const dense = innerSteps * 4 * parameters
    const contribution = mean(contributionBytes)
    const measured = mean(measuredTrainers)
    const rssValues = [...rss.values()]
    return {
      config,
      peers,
      innerSteps,
      codec: values.compress as string,
      parameters,
      modelBytes,
      contributionBytesPerPeerPerRound: Math.round(contribution),
      denseBytesPerPeerPerRound: dense,
      ratio: Math.round(dense / contribution),
      measuredUploadBytesPerTrainerPerRound: Math.round(measured),
      measuredRatio: Math.round(dense / measured),
      publisherUploadBytesPerRound: Math.round(traffic(publisher) / total),
      roundCloseSeconds: closes,
      roundCloseSecondsMax: Math.max(...closes.map((c) => c.seconds)),
      aggregateMs: unetRoundsList.map(
        (round) =>
          publisher.lines.find((l) => l.msg === 'round closed' && l.round === round)?.aggregateMs as number,
      ),
      verifyMsMax: unetRoundsList.map((round) =>
        Math.max(
          ...nodes
            .slice(1)
            .map(
              (n) =>
                (n.lines.find((l) => l.msg === 'checkpoint adopted' && l.round === round)
                  ?.verifyMs as number) ?? Number.NaN,
            ),
        ),
      ),
      peakRssBytes: {
        min: Math.min(...rssValues),
        max: Math.max(...rssValues),
        mean: Math.round(mean(rssValues)),
      },
      wallSeconds: Math.round((performance.now() - started) / 100) / 10,
    }
  } finally {
    await stopAll(nodes.filter((n) => n.running))
    await rm(dir, { recursive: true, force: true })
  }
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`

/**
 * The compute part of closing a round for a 10 MB model (2.5 M float32 parameters in 64 tensors)
 * with 16 contributions, in this process: what the publisher runs to aggregate and what every
 * peer runs to verify. The process runs above cannot reach 10 MB models on a 2-core machine
 * (training 16 such peers takes hours); this measures the part of close latency that grows with
 * the model, separately from training.
 */
function syntheticClose(
  codecText: string,
  contributions: number,
): {
  codec: string
  contributions: number
  parameters: number
  payloadBytes: number
  computeSeconds: number
} {
  const parameters = 2_500_000
  const tensorsCount = 64
  const per = Math.floor(parameters / tensorsCount)
  let seed = 1
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648 - 0.5
  }
  const parent: NamedTensor[] = Array.from({ length: tensorsCount }, (_, i) => ({
    name: `layer${String(i).padStart(2, '0')}.weight`,
    shape: [per],
    data: Float32Array.from({ length: per }, random),
  }))
  const codec = parseCodec(codecText)
  const payloads = Array.from({ length: contributions }, () => {
    const delta = parent.map((t) => ({ ...t, data: t.data.map(() => random() * 0.01) }))
    const bytes = encodeSafetensors(compressDelta(delta, codec).entries)
    return { payloadDigest: sha256Digest(bytes), samples: 32, payload: bytes }
  })
  const started = performance.now()
  computeCheckpoint(parent, zerosLike(parent), payloads, {
    aggregator: { kind: 'mean' },
    outerLr: 0.7,
    outerMomentum: 0.9,
    codec,
    maxSamples: 32,
  })
  return {
    codec: codecText,
    contributions,
    parameters: per * tensorsCount,
    payloadBytes: payloads[0]!.payload.byteLength,
    computeSeconds: Math.round(performance.now() - started) / 1000,
  }
}

let results: RunResult[] = []
if (values['synthetic-only'] === true) {
  // Keep the process runs of an earlier full run; only the synthetic section is refreshed.
  const previous = await readFile(values.out as string, 'utf8').catch(() => undefined)
  if (previous !== undefined) results = (JSON.parse(previous) as { results?: RunResult[] }).results ?? []
} else {
  process.stdout.write(
    `rounds bench: H=${innerSteps}, codec ${values.compress}, 1 autoencoder + ${unetRounds} U-Net rounds, ${cpus().length} CPUs, ${mb(totalmem())} RAM\n`,
  )
  process.stdout.write(
    'config   peers  params     contribution  dense/step-H   ratio   measured/round  ratio(meas)  close max  peak RSS max\n',
  )
  for (const config of (values.configs as string).split(',')) {
    for (const peers of (values.peers as string).split(',').map(Number)) {
      const r = await runOnce(config, peers)
      results.push(r)
      process.stdout.write(
        `${config.padEnd(8)} ${String(peers).padStart(5)}  ${String(r.parameters).padStart(9)}  ${mb(r.contributionBytesPerPeerPerRound).padStart(12)}  ${mb(r.denseBytesPerPeerPerRound).padStart(12)}  ${String(r.ratio).padStart(6)}x  ${mb(r.measuredUploadBytesPerTrainerPerRound).padStart(14)}  ${String(r.measuredRatio).padStart(10)}x  ${r.roundCloseSecondsMax.toFixed(2).padStart(8)} s  ${mb(r.peakRssBytes.max)}\n`,
      )
    }
  }
}
const synthetic = ['topk:0.01', 'int8'].map((codec) => syntheticClose(codec, 16))
for (const s of synthetic)
  process.stdout.write(
    `10 MB model, 16 contributions, ${s.codec}: payload ${mb(s.payloadBytes)}, aggregate + outer step (= recompute) ${s.computeSeconds.toFixed(2)} s\n`,
  )
await mkdir(join(values.out as string, '..'), { recursive: true })
await writeFile(
  values.out as string,
  `${JSON.stringify(
    {
      bench: 'rounds',
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, memoryBytes: totalmem(), node: process.version },
      settings: {
        innerSteps,
        codec: values.compress,
        autoencoderRounds: 1,
        unetRounds,
        imagesPerPeer: Number(values.images),
      },
      goals: GOALS,
      notes: [
        'contribution = the compressed U-Net pseudo-gradient payload one peer publishes per round (what DiLoCo ratios count)',
        'measured = blob bytes a trainer actually served (its payload to every verifying peer, plus any file it relayed) + gossip it originated, averaged over all rounds including the autoencoder round',
        "round close = publisher accepted the last contribution of the round -> the last peer adopted the recomputed checkpoint; all N processes share this machine's CPUs",
        'syntheticClose10MB = the model-size-dependent compute of closing (publisher) and verifying (every peer) a round of a 10 MB model with 16 contributions, one process',
      ],
      results,
      syntheticClose10MB: synthetic,
    },
    null,
    2,
  )}\n`,
)
process.stdout.write(`wrote ${values.out}\n`)
