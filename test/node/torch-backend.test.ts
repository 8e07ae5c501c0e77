// The torch backend where the node creates sessions: two real `coop start` processes with
// `--backend torch` complete an autoencoder round and a U-Net round whose checkpoints every peer
// recomputes bit-exactly (the worker trains; the node compresses, signs and aggregates), and
// `coop simulate --backend torch` runs its federated rounds on workers.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listCheckpointDirs } from '../../node/round/layout.ts'
import { TORCH_TEST_TIMEOUT_MS, torchRuntime } from '../trainer/torch-helpers.ts'
import {
  bootstrapAddr,
  createCluster,
  runCoop,
  startNode,
  stopAll,
  type Cluster,
  type NodeProcess,
} from './cluster-helpers/cluster.ts'

const run = promisify(execFile)
const ROOT = join(import.meta.dirname, '..', '..')
let dir: string
let env: NodeJS.ProcessEnv
/** `coop simulate` runs beside the two-peer cooperative (independent processes); its test checks it. */
let simulation: Promise<{ stdout: string }>

beforeAll(async () => {
  const runtime = await torchRuntime()
  env = { COOP_PYTHON: runtime.python, COOP_TORCH_DEVICE: 'cpu', COOP_TORCH_THREADS: '1' }
  process.env.COOP_TEST_BACKEND = 'torch'
  dir = await mkdtemp(join(tmpdir(), 'coop-torch-nodes-'))
  const data = join(dir, 'twemoji')
  const { layoutTwemoji } = await import('../../node/cli/commands/data.ts')
  await layoutTwemoji({ out: data, perCategory: 4 })
  const args = [
    'node/cli/main.ts',
    'simulate',
    '--config',
    'tiny',
    '--data',
    data,
    '--out',
    join(dir, 'simulate'),
    '--backend',
    'torch',
  ]
  const options = [
    '--phase',
    'autoencoder',
    '--peers',
    '2',
    '--rounds',
    '2',
    '--inner-steps',
    '2',
    '--seed',
    '1',
  ]
  simulation = run(process.execPath, [...args, ...options], {
    cwd: ROOT,
    env: { ...process.env, ...env, COOP_LOG_LEVEL: 'silent' },
  })
  // Held until its test awaits it (a failure is reported there, not as an unhandled rejection).
  simulation.catch(() => undefined)
}, TORCH_TEST_TIMEOUT_MS)

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('two peers on --backend torch', { timeout: TORCH_TEST_TIMEOUT_MS }, () => {
  let cluster: Cluster
  let nodes: NodeProcess[] = []
  let exits: { code: number | null }[] = []

  beforeAll(async () => {
    cluster = await createCluster({
      dir: join(dir, 'cluster'),
      peers: 2,
      imagesPerPeer: 8,
      charterArgs: [
        '--ae-rounds',
        '1',
        '--unet-rounds',
        '1',
        '--inner-steps',
        '3',
        '--quorum',
        '2',
        '--deadline',
        '120',
      ],
    })
    const publisher = startNode(cluster, cluster.peers[0]!, { extra: ['--linger', '3'], env })
    const addr = await bootstrapAddr(cluster.peers[0]!)
    nodes = [
      publisher,
      startNode(cluster, cluster.peers[1]!, { bootstrap: [addr], extra: ['--linger', '3'], env }),
    ]
    exits = await Promise.all(nodes.map((n) => n.exited))
  }, TORCH_TEST_TIMEOUT_MS)

  afterAll(async () => {
    await stopAll(nodes.filter((n) => n.running))
  })

  it('both train on the worker, finish every round, and recompute every checkpoint bit-exactly', async () => {
    expect(exits.map((e) => e.code)).toEqual([0, 0])
    for (const node of nodes) {
      const selected = node.lines.find((l) => l.msg === 'training backend selected')
      expect(selected).toMatchObject({ backend: 'torch', device: 'cpu (1 threads)' })
      expect(node.count('all rounds done')).toBe(1)
    }
    for (const peer of cluster.peers) {
      const dirs = await listCheckpointDirs(peer.store)
      expect(dirs.map((d) => d.split('/').pop())).toEqual([
        'autoencoder-r000000',
        'autoencoder-r000001',
        'unet-r000001',
        'unet-r000002',
      ])
      for (const checkpoint of dirs) {
        const result = await runCoop([
          'checkpoint',
          'verify',
          checkpoint,
          '--store',
          peer.store,
          '--require-recompute',
          '--json',
        ])
        expect(result.code, result.stdout).toBe(0)
      }
    }
  })
})

describe('coop simulate --backend torch', { timeout: TORCH_TEST_TIMEOUT_MS }, () => {
  it('runs federated rounds on torch workers and reports the backend', async () => {
    const out = join(dir, 'simulate')
    const { stdout } = await simulation
    expect(stdout).toMatch(/backend torch/)
    const result = JSON.parse(await readFile(join(out, 'results.json'), 'utf8')) as {
      rounds: { round: number; federatedEvalLoss: number | null }[]
    }
    expect(result.rounds.map((r) => r.round)).toEqual([0, 1, 2])
    for (const round of result.rounds) expect(Number.isFinite(round.federatedEvalLoss)).toBe(true)
  })
})
