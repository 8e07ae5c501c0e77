// The demo's two standalone SVG figures: loss.svg (training and eval loss per round, one panel
// per phase) and quality.svg (class accuracy and Fréchet distance of each round's grid).
import { linePlotSvg } from '../report/svg-plot.ts'
import type { PlotSeries } from '../report/svg-plot.ts'
import type { DemoQuality } from './evaluate.ts'
import type { RoundMetrics } from './outputs.ts'

const PANEL = { width: 640, height: 360 }

/** One panel per phase: the autoencoder's and the U-Net's losses are on different scales and must not be joined. */
function phasePanel(
  rounds: RoundMetrics[],
  peers: { name: string }[],
  phase: 'autoencoder' | 'unet',
): string {
  const inPhase = rounds.filter((r) => r.phase === phase && !r.genesis)
  const series: PlotSeries[] = peers.map((peer) => ({
    name: `${peer.name} training loss`,
    points: inPhase.flatMap((r) =>
      r.contributions
        .filter((c) => c.peer === peer.name && c.loss !== undefined)
        .map((c) => [r.round, c.loss as number] as [number, number]),
    ),
  }))
  series.push({
    name: 'averaged model, eval loss',
    color: '#000000',
    dashed: true,
    points: inPhase
      .filter((r) => r.evalLoss !== undefined)
      .map((r) => [r.round, r.evalLoss as number] as [number, number]),
  })
  const name = phase === 'unet' ? 'U-Net (denoising loss)' : 'Autoencoder (reconstruction + KL loss)'
  return linePlotSvg({
    title: `${name} per round`,
    xLabel: 'round',
    yLabel: 'loss (log scale)',
    logY: true,
    series,
    ...PANEL,
  })
}

/** quality.svg: class accuracy and Fréchet distance of each U-Net round's grid, two stacked panels. */
export function qualityPlot(rounds: RoundMetrics[], final: DemoQuality | null): string {
  const scored = rounds.filter((r) => r.quality !== undefined)
  const point = (r: RoundMetrics, value: number) => [r.round, value] as [number, number]
  const samples = scored[0]?.quality?.samples ?? 0
  const finalPoint = (value: number | undefined) =>
    final === null || value === undefined
      ? []
      : [
          {
            name: `final model, ${final.samples} samples`,
            color: '#000000',
            points: [[final.round, value] as [number, number]],
          },
        ]
  const panels = [
    linePlotSvg({
      title: 'Class accuracy of the samples per round (chance 1/9)',
      xLabel: 'round',
      yLabel: 'class accuracy',
      series: [
        {
          name: `grid samples (${samples})`,
          points: scored.map((r) => point(r, r.quality?.classAccuracy as number)),
        },
        ...finalPoint(final?.classAccuracy),
      ],
      ...PANEL,
    }),
    linePlotSvg({
      title: 'Fréchet distance to held-out real Twemoji per round (lower is better)',
      xLabel: 'round',
      yLabel: 'Fréchet distance (classifier features)',
      series: [
        {
          name: `grid samples (${samples})`,
          points: scored.map((r) => point(r, r.quality?.frechetDistance as number)),
        },
        ...finalPoint(final?.frechetDistance),
      ],
      ...PANEL,
    }),
  ].map((panel, i) =>
    panel.replace(/^\s*<\?xml[^>]*\?>\s*/, '').replace(/^<svg /, `<svg x="0" y="${i * PANEL.height}" `),
  )
  const height = 2 * PANEL.height
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL.width}" height="${height}" viewBox="0 0 ${PANEL.width} ${height}">`,
    ...panels,
    '</svg>',
    '',
  ].join('\n')
}

/** loss.svg: the two phase panels stacked in one standalone SVG document. */
export function lossPlot(rounds: RoundMetrics[], peers: { name: string }[]): string {
  const phases = (['autoencoder', 'unet'] as const).filter((phase) =>
    rounds.some((r) => r.phase === phase && !r.genesis),
  )
  const panels = phases.map((phase, i) =>
    phasePanel(rounds, peers, phase)
      .replace(/^\s*<\?xml[^>]*\?>\s*/, '')
      .replace(/^<svg /, `<svg x="0" y="${i * PANEL.height}" `),
  )
  const height = Math.max(1, panels.length) * PANEL.height
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL.width}" height="${height}" viewBox="0 0 ${PANEL.width} ${height}">`,
    ...panels,
    '</svg>',
    '',
  ].join('\n')
}
