// `coop demo`: one command that shows the whole idea on one machine. It prepares a cooperative
// (data split, keys, consent, charter), runs its peers as real `coop start` processes on
// loopback, and turns the publisher's signed record into checkpoints, sample grids, a loss plot,
// metrics.json and a self-contained report.
import { existsSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { addrsPath } from '../round/layout.ts'
import { PUBLISHER_INDEX, TIME_BOX_FILE } from './constants.ts'
import { DemoError } from './errors.ts'
import { demoLayout } from './layout.ts'
import type { DemoLayout } from './layout.ts'
import { createPlainView, createTtyView } from './live-view.ts'
import type { ProgressView } from './live-view.ts'
import { runPeers } from './orchestrate.ts'
import type { PeerLaunch } from './orchestrate.ts'
import { buildOutputs } from './outputs.ts'
import type { BuiltOutputs, DemoMetrics } from './outputs.ts'
import { acquireRunLock, finishAttempt, openRun, readRunManifest } from './run-manifest.ts'
import { calibrateSteps, defaultPeerThreads, planUnetRounds } from './plan.ts'
import type { DemoPlan } from './plan.ts'
import { timeBoxDecision } from './time-box.ts'
import type { TimeBoxStop } from './time-box.ts'
import type { DemoProgress } from './progress.ts'
import { writeFileDurable } from '../store/durable.ts'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfig } from '../../configs/index.ts'
import type { DemoParams, RunManifest } from './run-manifest.ts'
import { prepareDemo } from './setup.ts'
import type { DemoSetup } from './setup.ts'
import { errorCode } from '../../protocol/coded-error.ts'

export interface DemoRunOptions {
  out: string
  smoke: boolean
  /** Plan the U-Net rounds from a measured step time (a fresh run only; a resumed run keeps its rounds). */
  planRounds?: boolean
  backend: string
  /** Training threads of each peer (`coop start --threads`); absent: defaultPeerThreads (the cores shared out among the peers). */
  threads?: number
  /** Plain lines even on a terminal. */
  plain: boolean
  params: DemoParams
  /** Where progress goes (default process.stdout). */
  stdout?: NodeJS.WriteStream
}

/** Exit status of a run stopped by Ctrl-C: 128 + SIGINT, as shells report it. */
const EXIT_INTERRUPTED = 130

function startArgs(
  layout: DemoLayout,
  setup: DemoSetup,
  index: number,
  backend: string,
  threads: number,
  bootstrap: string[],
): string[] {
  const peer = layout.peers[index]
  if (peer === undefined) throw new RangeError(`no peer ${index}`)
  return [
    'start',
    '--charter',
    layout.charter,
    '--store',
    peer.store,
    '--data',
    peer.dataDir,
    '--consent',
    peer.consent,
    '--key',
    peer.nodeKey,
    '--listen',
    '/ip4/127.0.0.1/tcp/0',
    ...bootstrap.flatMap((addr) => ['--bootstrap', addr]),
    ...(peer.publisher ? ['--publisher'] : []),
    '--backend',
    backend,
    '--threads',
    String(threads),
  ]
}

function attemptSeconds(manifest: RunManifest, nowMs: number): number {
  let total = 0
  for (const attempt of manifest.attempts) {
    const start = Date.parse(attempt.startedAt)
    const end = attempt.endedAt === undefined ? nowMs : Date.parse(attempt.endedAt)
    if (Number.isFinite(start) && Number.isFinite(end) && end >= start) total += (end - start) / 1000
  }
  return total
}

function formatSeconds(seconds: number): string {
  const m = Math.floor(seconds / 60)
  return m > 0 ? `${m} min ${Math.round(seconds - m * 60)} s` : `${Math.round(seconds)} s`
}

/** "N U-Net rounds", or "N of M planned U-Net rounds" when the time box ended the run early. */
function unetRoundsText(metrics: DemoMetrics): string {
  const done = metrics.rounds.filter((r) => r.phase === 'unet' && !r.genesis).length
  return done === metrics.params.unetRounds
    ? `${done} U-Net rounds`
    : `${done} of ${metrics.params.unetRounds} planned U-Net rounds`
}

function summary(out: string, built: BuiltOutputs, seconds: number): string {
  const { metrics } = built
  const lines = [
    '',
    `coop demo done in ${formatSeconds(seconds)}: ${metrics.peers.length} peers, ${metrics.params.autoencoderRounds} autoencoder + ${unetRoundsText(metrics)} on ${metrics.backend}.`,
    `checkpoints: ${built.checkpoints}, verified ${built.verified}/${built.checkpoints} (signatures, digests, recomputation)`,
  ]
  const timeBox = metrics.timeBox
  if (timeBox !== null)
    lines.push(
      `time box: stopped after U-Net round ${timeBox.unetRoundsDone} of ${timeBox.unetRoundsPlanned} to finish within ${Math.round(timeBox.limitSeconds / 60)} minutes ` +
        `(U-Net rounds took ${timeBox.unetRoundSeconds.toFixed(1)} s, the plan assumed ${timeBox.plannedUnetRoundSeconds.toFixed(1)} s)`,
    )
  for (const phase of ['autoencoder', 'unet'] as const) {
    const evals = metrics.rounds.filter((r) => r.phase === phase && !r.genesis && r.evalLoss !== undefined)
    const first = evals[0]
    const last = evals.at(-1)
    if (first !== undefined && last !== undefined) {
      lines.push(
        `eval loss, ${phase === 'unet' ? 'U-Net' : 'autoencoder'}: round ${first.round} ${first.evalLoss?.toFixed(4)} -> round ${last.round} ${last.evalLoss?.toFixed(4)}`,
      )
    }
  }
  if (built.audit !== undefined)
    lines.push(
      `memorization audit of the last checkpoint (publisher's images): ${built.audit.flagged} of ${built.audit.images} flagged`,
    )
  if (built.ledger !== undefined)
    lines.push(
      `credit ledger (share of sample-steps): ${built.ledger.holders.map((h) => `${h.did === null ? 'unknown' : `${h.did.slice(0, 16)}…`} ${(h.share * 100).toFixed(1)} %`).join(', ')}`,
    )
  lines.push(
    `outputs in ${out}: report.html, metrics.json, loss.svg, credit.json, audit/, samples/ (${built.samples.length} grids), checkpoints/ (${built.checkpoints})`,
    `open ${resolve(out, 'report.html')}`,
  )
  return lines.join('\n')
}

/** The metrics of a finished run, when both metrics.json and report.html are there. */
async function readRecordedMetrics(
  metricsPath: string,
  reportPath: string,
): Promise<DemoMetrics | undefined> {
  if (!existsSync(reportPath)) return undefined
  try {
    const metrics = JSON.parse(await readFile(metricsPath, 'utf8')) as DemoMetrics
    return metrics.kind === 'diffusion-coop/demo-metrics' && Array.isArray(metrics.rounds)
      ? metrics
      : undefined
  } catch {
    return undefined
  }
}

function recordedSummary(out: string, metrics: DemoMetrics): string {
  const verified = metrics.rounds.filter((r) => r.verified).length
  return [
    `coop demo: the run in ${out} is complete; its recorded figures are kept (nothing rewritten).`,
    `recorded: ${metrics.peers.length} peers, ${metrics.params.autoencoderRounds} autoencoder + ${unetRoundsText(metrics)} on ${metrics.backend}, ` +
      `${formatSeconds(metrics.wallSeconds)} over ${metrics.attempts} attempt(s); checkpoints verified ${verified}/${metrics.rounds.length}`,
    `open ${resolve(out, 'report.html')} (delete report.html or metrics.json to rebuild them; use another --out for a new run)`,
  ].join('\n')
}

export async function runDemo(options: DemoRunOptions): Promise<number> {
  const stdout = options.stdout ?? process.stdout
  const out = resolve(options.out)
  const tty = !options.plain && stdout.isTTY === true
  const view: ProgressView = tty ? createTtyView(stdout) : createPlainView(stdout)
  const note = (text: string): void => view.note(text)
  // The user's clock: the time box (time-box.ts) keeps a planned run within its limit from here.
  const startedAtMs = Date.now()
  const release = await acquireRunLock(out)
  let manifest: RunManifest | undefined
  try {
    let params = options.params
    let plan: DemoPlan | undefined
    let timeBoxed: TimeBoxStop | undefined
    if (options.planRounds === true) {
      const recorded = await readRunManifest(out)
      if (recorded !== undefined) params = { ...params, unetRounds: recorded.params.unetRounds }
      else {
        note('measuring a training step on this machine to plan the U-Net rounds...')
        const { initBackend } = await import('../../trainer/backend.ts')
        const choice = await initBackend(options.backend)
        const config = loadConfig(params.config, params.configOverrides)
        plan = planUnetRounds({
          calibration: await calibrateSteps(config, choice.name),
          peers: params.peers,
          innerSteps: params.innerSteps,
          autoencoderRounds: params.autoencoderRounds,
        })
        params = { ...params, unetRounds: plan.unetRounds }
        note(
          `  ${choice.name}: ${plan.calibration.unetStepCpu.toFixed(2)} CPU-s per U-Net step, ${plan.calibration.autoencoderStepCpu.toFixed(2)} per autoencoder step, ` +
            `${Math.round(plan.calibration.cpuShare * 100)}% of a core free: ${plan.note}; --rounds N fixes them`,
        )
      }
    }
    const opened = await openRun(out, params, options.backend)
    manifest = opened.manifest
    const layout = demoLayout(out, options.params.peers, PUBLISHER_INDEX)
    if (opened.mode === 'complete') {
      // A finished run is a record: report its figures and rewrite nothing (wall time, backend
      // and the report stay what the run measured).
      const recorded = await readRecordedMetrics(layout.metrics, layout.report)
      if (recorded !== undefined) {
        note(recordedSummary(options.out, recorded))
        const verified = recorded.rounds.filter((r) => r.verified).length
        return verified === recorded.rounds.length ? 0 : 1
      }
    }
    note(
      opened.mode === 'fresh'
        ? `coop demo: new run in ${out}`
        : opened.mode === 'resume'
          ? `coop demo: resuming the run in ${out} (attempt ${manifest.attempts.length}); peers continue from their stores`
          : `coop demo: the run in ${out} is complete; rebuilding its report`,
    )
    const setup = await prepareDemo(layout, params, note)
    if (plan !== undefined) {
      await mkdir(join(out, 'setup'), { recursive: true })
      await writeFileDurable(join(out, 'setup', 'plan.json'), `${JSON.stringify(plan, null, 2)}\n`)
    }
    for (const p of setup.peers)
      note(
        `  ${p.peer.name}${p.peer.publisher ? ' (publisher)' : ''}: ${p.items} images of ${p.categories.join(', ')}; node ${p.peerId}`,
      )
    note(`  coop id ${setup.coopId}`)

    // Evaluate on the backend the peers trained on, so the numbers match theirs.
    let backend = options.backend
    if (opened.mode !== 'complete') {
      // A stale addrs file from an earlier attempt would point the others at a dead port.
      await rm(addrsPath(layout.peers[PUBLISHER_INDEX]?.store ?? ''), { force: true })
      const threads = options.threads ?? defaultPeerThreads(layout.peers.length)
      const launches: PeerLaunch[] = layout.peers.map((peer) => ({
        peer,
        args: (bootstrap) => startArgs(layout, setup, peer.index, options.backend, threads, bootstrap),
        addrsFile: addrsPath(peer.store),
      }))
      note(
        `starting ${launches.length} peers (coop start, ${threads} training thread${threads === 1 ? '' : 's'} each) on loopback${tty ? '' : '; logs in peers/<name>/node.log'}...`,
      )
      const planned = plan
      const timeBox =
        planned === undefined
          ? undefined
          : (progress: DemoProgress) => timeBoxDecision({ plan: planned, startedAtMs }, progress, Date.now())
      const outcome = await runPeers({ launches, view, ...(timeBox ? { timeBox } : {}) })
      if (outcome.kind === 'interrupted') {
        manifest = await finishAttempt(out, manifest, 'interrupted', outcome.signal)
        note(
          `stopped by ${outcome.signal}; every peer flushed its store. Run the same command again to resume.`,
        )
        return EXIT_INTERRUPTED
      }
      backend = outcome.progress.peers[PUBLISHER_INDEX]?.backend ?? backend
      if (outcome.kind === 'time-boxed') {
        timeBoxed = outcome.stop
        await writeFileDurable(
          join(out, 'setup', TIME_BOX_FILE),
          `${JSON.stringify(outcome.stop, null, 2)}\n`,
        )
      }
    }
    const complete = opened.mode === 'complete'
    // Rebuilding the deleted outputs of a finished run: its own attempts and backend, no new attempt.
    if (complete) backend = manifest.attempts.at(-1)?.backend ?? backend
    const built = await buildOutputs({
      layout,
      setup,
      params,
      backend,
      wallSeconds: attemptSeconds(manifest, Date.now()),
      attempts: manifest.attempts.length,
      note,
    })
    if (!complete)
      manifest = await finishAttempt(
        out,
        manifest,
        'complete',
        timeBoxed === undefined
          ? undefined
          : `time-boxed after U-Net round ${timeBoxed.unetRoundsDone} of ${timeBoxed.unetRoundsPlanned}`,
      )
    note(summary(options.out, built, attemptSeconds(manifest, Date.now())))
    return built.verified === built.checkpoints ? 0 : 1
  } catch (error) {
    if (manifest !== undefined) {
      const code = error instanceof DemoError ? error.code : (errorCode(error) ?? 'ERROR')
      manifest = await finishAttempt(out, manifest, 'failed', code).catch(() => manifest)
    }
    throw error
  } finally {
    await release()
  }
}
