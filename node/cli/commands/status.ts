// `coop status`: what a node is doing. LevelDB admits one process, so this never opens the
// database: it reads the status snapshot the running node rewrites atomically
// (<store>/snapshots/status.json), its addrs.json and checkpoints/latest.json.
import { parseArgs } from 'node:util'
import { readAddrs } from '../../round/layout.ts'
import { readSnapshot } from '../../store/store.ts'
import { assertStoreFolder } from '../../store/dirs.ts'
import type { Command } from '../command.ts'
import { CliError, UsageError } from '../command.ts'
import { errorCode } from '../../../protocol/coded-error.ts'

const usage = `Usage: coop status --store <dir> [--json]

Shows a node's peers, current round, latest checkpoint and recent losses, from the snapshot
the node writes while it runs (safe to run at any time; the database is never opened).`

interface StatusSnapshot {
  peerId: string
  coop: string
  pid: number
  updatedAt: string
  publisher: boolean
  state: string
  round: number | null
  phase: string | null
  totalRounds: number
  contributionsThisRound: number
  latestCheckpoint: { id: string; phase: string; round: number; verification: string; dir: string } | null
  checkpoints: { id: string; phase: string; round: number; contributions: number; verification: string }[]
  peers: string[]
  recentLosses: { round: number; phase: string; loss: number | null; evalLoss?: number }[]
  /** Absent in snapshots written before they existed. */
  equivocations?: { phase: string; round: number; adopted: string; conflicting: string; signers: string[] }[]
  refusedPayloads?: { round: number; contribution: string; contributor: string; code: string }[]
  penalized?: Record<string, { score: number; appScore: number; penalties: Record<string, number> }>
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return errorCode(err) === 'EPERM'
  }
}

export const command: Command = {
  summary: "show a node's peers, round, latest checkpoint and losses",
  usage,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: { store: { type: 'string' }, json: { type: 'boolean' } },
    })
    if (values.store === undefined) throw new UsageError('--store is required')
    await assertStoreFolder(values.store)
    const snapshot = (await readSnapshot(values.store, 'status')) as StatusSnapshot | undefined
    if (snapshot === undefined)
      throw new CliError('NO_STATUS', `no status snapshot in ${values.store}: the node has not run there yet`)
    const addrs = await readAddrs(values.store)
    const running = snapshot.state === 'running' || snapshot.state === 'done' ? alive(snapshot.pid) : false
    if (values.json === true) {
      process.stdout.write(
        `${JSON.stringify({ ...snapshot, running, addrs: addrs?.addrs ?? [] }, null, 2)}\n`,
      )
      return 0
    }
    const lines = [
      `node       ${snapshot.peerId}${snapshot.publisher ? ' (publisher)' : ''} — ${running ? `running (pid ${snapshot.pid})` : 'not running'}, snapshot ${snapshot.updatedAt}`,
      `coop       ${snapshot.coop}`,
      `listening  ${(addrs?.addrs ?? []).join(' ') || '-'}`,
      `peers      ${snapshot.peers.length}${snapshot.peers.length > 0 ? `: ${snapshot.peers.join(', ')}` : ''}`,
      `round      ${snapshot.round === null ? `all ${snapshot.totalRounds} rounds done` : `${snapshot.round}/${snapshot.totalRounds} (${snapshot.phase}), ${snapshot.contributionsThisRound} contribution(s) so far`}`,
      `checkpoint ${snapshot.latestCheckpoint === null ? 'none yet' : `${snapshot.latestCheckpoint.phase} round ${snapshot.latestCheckpoint.round} ${snapshot.latestCheckpoint.id} (${snapshot.latestCheckpoint.verification})`}`,
    ]
    if (snapshot.recentLosses.length > 0) {
      lines.push('losses')
      for (const l of snapshot.recentLosses) {
        const parts = [`  ${l.phase} round ${l.round}`]
        if (l.loss !== null && Number.isFinite(l.loss)) parts.push(`train ${l.loss.toFixed(4)}`)
        if (l.evalLoss !== undefined) parts.push(`eval ${l.evalLoss.toFixed(4)}`)
        lines.push(parts.join('  '))
      }
    }
    // Evidence against peers: a publisher that signed two checkpoints for one round, payloads
    // refused at admission, and who was charged for what (docs/THREAT-MODEL.md).
    for (const e of snapshot.equivocations ?? [])
      lines.push(
        `EQUIVOCATION ${e.phase} round ${e.round}: adopted ${e.adopted}, also signed ${e.conflicting} by ${e.signers.join(', ')}`,
      )
    const refused = snapshot.refusedPayloads ?? []
    if (refused.length > 0) {
      lines.push(`refused    ${refused.length} contribution payload(s)`)
      for (const r of refused.slice(-5)) lines.push(`  round ${r.round} ${r.code} from ${r.contributor}`)
    }
    for (const [peer, p] of Object.entries(snapshot.penalized ?? {}))
      lines.push(
        `penalized  ${peer} score ${p.score.toFixed(1)} (${Object.entries(p.penalties)
          .map(([code, n]) => `${code} x${n}`)
          .join(', ')})`,
      )
    process.stdout.write(`${lines.join('\n')}\n`)
    return 0
  },
}
