// The charter's audit requirement (`audit: {every, samplesPerClass}`, PROTOCOL §7/§9b) on a
// publisher: after it publishes every `every`-th U-Net round's checkpoint, it audits that
// checkpoint for memorization on its own images and attaches the signed audit to the checkpoint
// directory (audit.json, audit.html, then audit.dsse.json: the last file written, so its presence
// means the audit is complete).
//
// Off the round's critical path: the sampling runs in a child process (`coop audit memorization`,
// its own event loop and core, at a lower CPU priority), one audit at a time; only the signing is
// done here, with the node key the child never sees. Audits due but missing (a crash, a stop
// mid-audit) are picked up from the checkpoint directories at the next start.
import { execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { setPriority } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { CoopCharter } from '../../protocol/charter.ts'
import { errorCode } from '../../protocol/coded-error.ts'
import { sha256Digest } from '../../protocol/digest.ts'
import { verifyAudit } from '../../protocol/audit.ts'
import { canonicalize } from '../../protocol/jcs.ts'
import type { Ed25519PrivateKey } from '../../protocol/keys.ts'
import { loadCheckpointDir } from '../round/audit.ts'
import type { RoundEvents } from '../round/events.ts'
import { checkpointDir, listCheckpointDirs } from '../round/layout.ts'
import { genesisRound, roundPlan } from '../round/schedule.ts'
import { writeFileDurable } from '../store/durable.ts'
import {
  AUDIT_DIR_FILES,
  AUDIT_SCHEDULED_NICENESS,
  AUDIT_SCHEDULED_TIMEOUT_MS,
  AUDIT_STOP_WAIT_MS,
} from './constants.ts'
import type { AuditReport } from './memorization.ts'
import { signAuditReport } from './statement.ts'

const COOP_MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url))

export interface AuditSchedulerOptions {
  charter: CoopCharter
  storeDir: string
  /** This node's images: what the publisher audits. */
  dataDir: string
  backend: string
  privateKey: Ed25519PrivateKey
  peerId: string
}

/** Whether U-Net round `round` is one the charter's `audit.every` requires audited. */
export function auditDue(charter: CoopCharter, round: number): boolean {
  if (charter.audit === undefined) return false
  const sinceGenesis = round - genesisRound(roundPlan(charter), 'unet')
  return sinceGenesis >= 1 && sinceGenesis % charter.audit.every === 0
}

export class AuditScheduler {
  readonly #options: AuditSchedulerOptions
  readonly #events: RoundEvents
  readonly #log: Logger
  readonly #queued = new Set<number>()
  #chain: Promise<void> = Promise.resolve()
  #child: ChildProcess | undefined
  #unsubscribe: (() => void) | undefined
  #stopping = false

  constructor(options: AuditSchedulerOptions, modules: { events: RoundEvents; log: Logger }) {
    this.#options = options
    this.#events = modules.events
    this.#log = modules.log
  }

  /** Subscribes to this node's published checkpoints and queues the audits a previous run left undone. */
  async start(): Promise<void> {
    this.#unsubscribe = this.#events.on('checkpointAdopted', (e) => {
      if (e.phase === 'unet' && e.verification === 'published' && auditDue(this.#options.charter, e.round))
        this.#enqueue(e.round)
    })
    for (const dir of await listCheckpointDirs(this.#options.storeDir)) {
      const match = /unet-r(\d{6})$/.exec(dir)
      if (match === null || existsSync(join(dir, AUDIT_DIR_FILES.statement))) continue
      const round = Number(match[1])
      if (!auditDue(this.#options.charter, round)) continue
      try {
        const loaded = await loadCheckpointDir(dir)
        if (loaded.verified.signers.includes(this.#options.peerId)) this.#enqueue(round)
      } catch {
        // not a checkpoint we vouch for
      }
    }
  }

  /**
   * Lets the queued audits finish (the last round's audit should land), for at most
   * AUDIT_STOP_WAIT_MS: then the one in flight is killed and the rest dropped (the next start
   * picks them up).
   */
  async stop(): Promise<void> {
    this.#unsubscribe?.()
    if (this.#queued.size > 0)
      this.#log.info({ rounds: [...this.#queued].sort((a, b) => a - b) }, 'waiting for memorization audits')
    const timer = setTimeout(() => {
      this.#stopping = true
      this.#child?.kill('SIGTERM')
    }, AUDIT_STOP_WAIT_MS)
    await this.#chain
    clearTimeout(timer)
    this.#stopping = true
  }

  #enqueue(round: number): void {
    if (this.#queued.has(round) || this.#stopping) return
    this.#queued.add(round)
    this.#chain = this.#chain.then(async () => {
      try {
        if (!this.#stopping) await this.#audit(round)
      } catch (err) {
        this.#log.error({ err, code: errorCode(err), round }, 'memorization audit failed')
      } finally {
        this.#queued.delete(round)
      }
    })
  }

  async #audit(round: number): Promise<void> {
    // Rights holders come from the manifests the store holds (this node's own among them).
    const { charter, storeDir, dataDir, backend, privateKey } = this.#options
    const dir = checkpointDir(storeDir, 'unet', round)
    if (existsSync(join(dir, AUDIT_DIR_FILES.statement))) return
    const started = performance.now()
    this.#log.info({ round }, 'memorization audit started')
    const work = await mkdtemp(join(storeDir, '.audit-'))
    try {
      const out = join(work, AUDIT_DIR_FILES.report)
      await this.#runChild([
        'audit',
        'memorization',
        '--checkpoint',
        dir,
        '--store',
        storeDir,
        '--data',
        dataDir,
        '--samples-per-class',
        String(charter.audit?.samplesPerClass ?? 1),
        '--backend',
        backend,
        '--out',
        out,
      ])
      const reportBytes = new Uint8Array(await readFile(out))
      const report = JSON.parse(new TextDecoder().decode(reportBytes)) as AuditReport
      const envelope = signAuditReport(report, sha256Digest(reportBytes), privateKey)
      const statement = new TextEncoder().encode(canonicalize(envelope))
      const verified = verifyAudit(statement)
      // The report and page first, the statement last: its presence marks a complete audit.
      await writeFileDurable(join(dir, AUDIT_DIR_FILES.report), reportBytes)
      await writeFileDurable(
        join(dir, AUDIT_DIR_FILES.page),
        await readFile(join(work, AUDIT_DIR_FILES.page)),
      )
      await writeFileDurable(join(dir, AUDIT_DIR_FILES.statement), statement)
      this.#log.info(
        {
          round,
          checkpoint: verified.predicate.checkpoint,
          images: verified.predicate.images,
          flagged: verified.predicate.flagged.length,
          statement: verified.digest,
          seconds: Math.round((performance.now() - started) / 100) / 10,
        },
        'memorization audit attached',
      )
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  }

  #runChild(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        process.execPath,
        [COOP_MAIN, ...args],
        {
          timeout: AUDIT_SCHEDULED_TIMEOUT_MS,
          maxBuffer: 4 * 1024 * 1024,
          env: { ...process.env, COOP_LOG_LEVEL: 'warn' },
        },
        (error, _stdout, stderr) => {
          this.#child = undefined
          if (error === null) resolve()
          else reject(Object.assign(error, { stderrTail: stderr.slice(-2000) }))
        },
      )
      this.#child = child
      try {
        if (child.pid !== undefined) setPriority(child.pid, AUDIT_SCHEDULED_NICENESS)
      } catch {
        // lowering priority is a courtesy; some sandboxes refuse it
      }
    })
  }
}
