// What `coop start` shows a person: the live line (redrawn in place) and one summary line per
// round. Pure formatting; node/monitor/round-tracker.ts gathers the figures from the round
// engine's events.

/** One round as this node saw it, from its previous checkpoint to this one. */
export interface RoundSummary {
  round: number
  phase: string
  /** The last round this node runs (the charter's, or --rounds). */
  totalRounds: number
  /** Contributions the checkpoint aggregates (0: a phase's genesis or a component). */
  contributions: number
  checkpoint: string
  /** How this node came to hold it: published, recomputed, signature, genesis, component. */
  verification: string
  /** The publisher's eval loss of the checkpoint on its own images (publishers that train only). */
  evalLoss?: number
  /** Mean training loss of this node's contribution to the round, when it made one. */
  loss?: number
  /** Seconds since the previous checkpoint (or the node's start). */
  seconds: number
  bytesIn: number
  bytesOut: number
}

export type Activity = 'starting' | 'training' | 'waiting' | 'aggregating' | 'done' | 'stopped'

export interface LiveState {
  activity: Activity
  phase: string | null
  round: number | null
  totalRounds: number
  step?: number
  steps?: number
  loss?: number
  imgPerSec?: number
  /** Contributions to the open round this node holds. */
  contributions: number
  quorum: number
  peers: number
}

/** `sha256:3fa9c2e1…` → `3fa9c2e1`: enough to tell checkpoints apart on screen (full ids are in the logs). */
export function shortId(id: string): string {
  const hex = id.startsWith('sha256:') ? id.slice('sha256:'.length) : id
  return hex.slice(0, 8)
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let value = n
  let i = 0
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000
    i += 1
  }
  return `${i === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[i]}`
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`
  const m = Math.floor(seconds / 60)
  const s = Math.round(seconds - m * 60)
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`
}

const PHASE_NAMES: Record<string, string> = { autoencoder: 'autoencoder', unet: 'U-Net' }
const phaseName = (phase: string | null): string => (phase === null ? '' : (PHASE_NAMES[phase] ?? phase))
const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`
const loss = (value: number): string => value.toFixed(4)

/**
 * `round 7/21 U-Net · 4 contributions · checkpoint 3fa9c2e1 recomputed · eval loss 0.1432 ·
 * 41.2 s · in 1.2 MB, out 350 kB`. A checkpoint without contributions starts a phase.
 */
export function formatRoundSummary(s: RoundSummary): string {
  if (s.contributions === 0)
    return `${phaseName(s.phase)} starts from checkpoint ${shortId(s.checkpoint)} (${s.verification})`
  const parts = [
    `round ${s.round}/${s.totalRounds} ${phaseName(s.phase)}`,
    plural(s.contributions, 'contribution'),
    `checkpoint ${shortId(s.checkpoint)} ${s.verification}`,
    ...(s.loss === undefined ? [] : [`loss ${loss(s.loss)}`]),
    ...(s.evalLoss === undefined ? [] : [`eval loss ${loss(s.evalLoss)}`]),
    formatSeconds(s.seconds),
    `in ${formatBytes(s.bytesIn)}, out ${formatBytes(s.bytesOut)}`,
  ]
  return parts.join(' · ')
}

/** `U-Net round 7/21 · step 23/50 · loss 0.1432 · 410 img/s · 3 peers`, or what the node waits for. */
export function formatLiveLine(s: LiveState): string {
  const peers = plural(s.peers, 'peer')
  if (s.activity === 'done') return `all ${s.totalRounds} rounds done · ${peers}`
  if (s.activity === 'stopped')
    return s.round === null ? 'stopped' : `stopped in ${phaseName(s.phase)} round ${s.round}/${s.totalRounds}`
  if (s.round === null || s.activity === 'starting')
    return `waiting for the publisher's first checkpoint · ${peers}`
  const where = `${phaseName(s.phase)} round ${s.round}/${s.totalRounds}`
  const stepParts = [
    ...(s.step === undefined || s.steps === undefined ? [] : [`step ${s.step}/${s.steps}`]),
    ...(s.loss === undefined ? [] : [`loss ${loss(s.loss)}`]),
    ...(s.imgPerSec === undefined ? [] : [`${Math.round(s.imgPerSec)} img/s`]),
  ]
  const contributions = `${s.contributions}/${s.quorum} contributions`
  const doing =
    s.activity === 'training'
      ? stepParts
      : s.activity === 'aggregating'
        ? [`aggregating ${plural(s.contributions, 'contribution')}`]
        : [`waiting for the checkpoint (${contributions})`, ...stepParts]
  return [where, ...doing, peers].join(' · ')
}
