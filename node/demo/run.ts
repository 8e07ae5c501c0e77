// `coop demo`: one command that shows the whole idea on one machine. It prepares a cooperative
// (data split, keys, consent, charter), runs its peers as real `coop start` processes on
// loopback, and turns the publisher's signed record into checkpoints, sample grids, a loss plot,
// metrics.json and a self-contained report.
import { rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { addrsPath } from '../round/layout.ts'
import { PUBLISHER_INDEX } from './constants.ts'
import { DemoError } from './errors.ts'
import { demoLayout } from './layout.ts'
import type { DemoLayout } from './layout.ts'
import { createPlainView, createTtyView } from './live-view.ts'
import type { ProgressView } from './live-view.ts'
import { runPeers } from './orchestrate.ts'
import type { PeerLaunch } from './orchestrate.ts'
import { buildOutputs } from './outputs.ts'
import type { BuiltOutputs } from './outputs.ts'
import { acquireRunLock, finishAttempt, openRun } from './run-manifest.ts'
import type { DemoParams, RunManifest } from './run-manifest.ts'
import { prepareDemo } from './setup.ts'
import type { DemoSetup } from './setup.ts'
import { errorCode } from '../../protocol/coded-error.ts'

export interface DemoRunOptions {
  out: string
  smoke: boolean
  backend: string
  /** Training threads of each peer (`coop start --threads`); the peers' default when absent. */
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
  threads: number | undefined,
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
    ...(threads === undefined ? [] : ['--threads', String(threads)]),
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

function summary(out: string, built: BuiltOutputs, seconds: number): string {
  const { metrics } = built
  const lines = [
    '',
    `coop demo done in ${formatSeconds(seconds)}: ${metrics.peers.length} peers, ${metrics.params.autoencoderRounds} autoencoder + ${metrics.params.unetRounds} U-Net rounds on ${metrics.backend}.`,
    `checkpoints: ${built.checkpoints}, verified ${built.verified}/${built.checkpoints} (signatures, digests, recomputation)`,
  ]
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
  lines.push(
    `outputs in ${out}: report.html, metrics.json, loss.svg, samples/ (${built.samples.length} grids), checkpoints/ (${built.checkpoints})`,
    `open ${resolve(out, 'report.html')}`,
  )
  return lines.join('\n')
}

export async function runDemo(options: DemoRunOptions): Promise<number> {
  const stdout = options.stdout ?? process.stdout
  const out = resolve(options.out)
  const tty = !options.plain && stdout.isTTY === true
  const view: ProgressView = tty ? createTtyView(stdout) : createPlainView(stdout)
  const note = (text: string): void => view.note(text)
  const release = await acquireRunLock(out)
  let manifest: RunManifest | undefined
  try {
    const opened = await openRun(out, options.params, options.backend)
    manifest = opened.manifest
    const layout = demoLayout(out, options.params.peers, PUBLISHER_INDEX)
    note(
      opened.mode === 'fresh'
        ? `coop demo: new run in ${out}`
        : opened.mode === 'resume'
          ? `coop demo: resuming the run in ${out} (attempt ${manifest.attempts.length}); peers continue from their stores`
          : `coop demo: the run in ${out} is complete; rebuilding its report`,
    )
    const setup = await prepareDemo(layout, options.params, note)
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
      const launches: PeerLaunch[] = layout.peers.map((peer) => ({
        peer,
        args: (bootstrap) =>
          startArgs(layout, setup, peer.index, options.backend, options.threads, bootstrap),
        addrsFile: addrsPath(peer.store),
      }))
      note(
        `starting ${launches.length} peers (coop start) on loopback${tty ? '' : '; logs in peers/<name>/node.log'}...`,
      )
      const outcome = await runPeers({ launches, view })
      if (outcome.kind === 'interrupted') {
        manifest = await finishAttempt(out, manifest, 'interrupted', outcome.signal)
        note(
          `stopped by ${outcome.signal}; every peer flushed its store. Run the same command again to resume.`,
        )
        return EXIT_INTERRUPTED
      }
      backend = outcome.progress.peers[PUBLISHER_INDEX]?.backend ?? backend
    }
    const built = await buildOutputs({
      layout,
      setup,
      params: options.params,
      backend,
      wallSeconds: attemptSeconds(manifest, Date.now()),
      attempts: manifest.attempts.length,
      note,
    })
    manifest = await finishAttempt(out, manifest, 'complete')
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
