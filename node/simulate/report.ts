// What `coop simulate` leaves in --out: results.json (deterministic for a seed), and two plots.
// Also the per-round table the CLI prints.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { formatTick, linePlotSvg } from '../report/svg-plot.ts'
import type { QualityFigures, RoundResult, SimulationResult } from './run.ts'

export const RESULT_FILES = {
  results: 'results.json',
  lossPerRound: 'loss-vs-round.svg',
  lossPerByte: 'loss-vs-bytes.svg',
} as const

const COLUMNS = ['round', 'federated', 'baseline', 'gap %', 'bytes/peer', 'dense/peer', 'ratio', 'time s']
const WIDTHS = [5, 10, 10, 8, 11, 11, 8, 7]

function cell(text: string, width: number): string {
  return text.padStart(width)
}

export function tableHeader(): string {
  return COLUMNS.map((c, i) => cell(c, WIDTHS[i] as number)).join('  ')
}

function loss(value: number | null): string {
  return value === null ? 'diverged' : value.toPrecision(4)
}

/** One table line per round: eval loss of both models, the gap, and the bytes one peer sent against per-step dense exchange. */
export function tableRow(row: RoundResult, seconds: number): string {
  const values = [
    String(row.round),
    loss(row.federatedEvalLoss),
    loss(row.baselineEvalLoss),
    row.gapPercent === null ? '-' : `${row.gapPercent >= 0 ? '+' : ''}${row.gapPercent.toFixed(1)}`,
    row.round === 0 ? '-' : `${formatTick(row.bytesPerPeer)}B`,
    row.round === 0 ? '-' : `${formatTick(row.denseBytesPerPeer)}B`,
    row.round === 0 ? '-' : `${Math.round(row.bytesRatio)}x`,
    seconds.toFixed(1),
  ]
  return values.map((v, i) => cell(v, WIDTHS[i] as number)).join('  ')
}

function qualityText(q: QualityFigures | null): string {
  return q === null
    ? 'diverged'
    : `class accuracy ${(q.classAccuracy * 100).toFixed(1)}%, Fréchet distance ${q.frechetDistance.toPrecision(4)}`
}

/** One line for a round whose samples were scored (trainer/quality), or undefined. */
export function qualityLine(row: RoundResult): string | undefined {
  if (row.quality === undefined) return undefined
  const samples = row.quality.baseline.samples
  return `  quality after round ${row.round} (${samples} samples each): federated ${qualityText(row.quality.federated)}; baseline ${qualityText(row.quality.baseline)}`
}

/** A short closing summary for the terminal. */
export function summaryLines(result: SimulationResult): string[] {
  const { final } = result
  const lines = [
    `final eval loss: federated ${loss(final.federatedEvalLoss)}, baseline ${loss(final.baselineEvalLoss)}` +
      (final.gapPercent === null
        ? ''
        : ` (gap ${final.gapPercent >= 0 ? '+' : ''}${final.gapPercent.toFixed(2)}%)`),
    `bytes per peer: ${formatTick(final.totalBytesPerPeer)}B sent vs ${formatTick(final.totalDenseBytesPerPeer)}B for per-step dense fp32 exchange (${Math.round(final.bytesRatio)}x fewer)`,
  ]
  if (final.quality !== null)
    lines.push(
      `sample quality (${final.quality.baseline.samples} class-conditional samples, in-domain classifier): federated ${qualityText(final.quality.federated)}; baseline ${qualityText(final.quality.baseline)}`,
    )
  if (final.diverged !== null)
    lines.push(`the federated model diverged in round ${final.diverged.round}: ${final.diverged.reason}`)
  return lines
}

function title(result: SimulationResult): string {
  const s = result.settings
  return `${s.config} ${s.phase}: ${s.peers} peers, H=${s.innerSteps}, ${s.split}, ${s.aggregator}, ${s.compress}${s.byzantine === null ? '' : `, byzantine ${s.byzantine}`}`
}

export function lossPerRoundSvg(result: SimulationResult): string {
  const federated = result.rounds
    .filter((r) => r.federatedEvalLoss !== null)
    .map((r) => [r.round, r.federatedEvalLoss as number] as [number, number])
  return linePlotSvg({
    title: title(result),
    xLabel: 'round',
    yLabel: 'held-out eval loss',
    series: [
      { name: 'federated', points: federated },
      {
        name: 'centralized baseline',
        points: result.rounds.map((r) => [r.round, r.baselineEvalLoss]),
        dashed: true,
      },
    ],
  })
}

/** Loss against the bytes one peer uploaded: federated (compressed deltas) vs a per-step dense exchange reaching the baseline's loss. */
export function lossPerByteSvg(result: SimulationResult): string {
  const trained = result.rounds.filter((r) => r.round > 0)
  return linePlotSvg({
    title: title(result),
    xLabel: 'bytes uploaded per peer (log)',
    yLabel: 'held-out eval loss',
    logX: true,
    series: [
      {
        name: `federated (${result.settings.compress})`,
        points: trained
          .filter((r) => r.federatedEvalLoss !== null)
          .map((r) => [r.cumulativeBytesPerPeer, r.federatedEvalLoss as number]),
      },
      {
        name: 'per-step dense fp32 (baseline loss)',
        points: trained.map((r) => [r.cumulativeDenseBytesPerPeer, r.baselineEvalLoss]),
        dashed: true,
      },
    ],
  })
}

/** Writes results.json and the two plots into `out` (created). */
export async function writeSimulationReport(out: string, result: SimulationResult): Promise<string[]> {
  await mkdir(out, { recursive: true })
  const files = [
    [RESULT_FILES.results, `${JSON.stringify(result, null, 2)}\n`],
    [RESULT_FILES.lossPerRound, lossPerRoundSvg(result)],
    [RESULT_FILES.lossPerByte, lossPerByteSvg(result)],
  ] as const
  for (const [name, text] of files) await writeFile(join(out, name), text)
  return files.map(([name]) => join(out, name))
}
