// A small, dependency-free SVG line plot for reports (loss per round, loss against bytes).
// Output is a standalone SVG document that browsers and GitHub render, and the same input
// always gives the same bytes (coordinates rounded to 0.1 px), so reports diff cleanly.

export interface PlotSeries {
  name: string
  /** [x, y] pairs; non-finite values (and non-positive ones on a log axis) are skipped. */
  points: [number, number][]
  /** Draw dashed, e.g. for a baseline or reference. */
  dashed?: boolean
  /** CSS colour; defaults to the palette by series position. */
  color?: string
}

export interface LinePlotOptions {
  title: string
  xLabel: string
  yLabel: string
  series: PlotSeries[]
  logX?: boolean
  logY?: boolean
  width?: number
  height?: number
}

/** Colour-blind-safe palette (Okabe & Ito 2008). */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442', '#000000']

const MARGIN = { left: 64, right: 16, top: 36, bottom: 48 }
/** Above this many points per series, markers clutter the line and are left out. */
const MAX_MARKERS = 40
const TARGET_TICKS = 5

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

function px(value: number): string {
  return (Math.round(value * 10) / 10).toString()
}

/** Tick label: short, and exact for round numbers (1e6 -> "1M" style for large byte counts). */
export function formatTick(value: number): string {
  if (value === 0) return '0'
  const abs = Math.abs(value)
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ]
  for (const [size, suffix] of units)
    if (abs >= size) return `${Number((value / size).toPrecision(3))}${suffix}`
  if (abs < 1e-3) return value.toExponential(0)
  return `${Number(value.toPrecision(3))}`
}

/** Evenly spaced "nice" ticks (1, 2 or 5 times a power of ten) covering [min, max]. */
export function niceTicks(min: number, max: number, target = TARGET_TICKS): number[] {
  if (!(max > min)) return [min]
  const raw = (max - min) / target
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power
  const ticks: number[] = []
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step)
    ticks.push(Number(t.toPrecision(12)))
  return ticks
}

interface Axis {
  min: number
  max: number
  log: boolean
  ticks: number[]
}

function makeAxis(values: number[], log: boolean): Axis {
  let min = Math.min(...values)
  let max = Math.max(...values)
  if (log) {
    const lo = Math.floor(Math.log10(min))
    const hi = Math.ceil(Math.log10(max))
    const top = hi === lo ? hi + 1 : hi
    const ticks: number[] = []
    for (let e = lo; e <= top; e++) ticks.push(10 ** e)
    return { min: 10 ** lo, max: 10 ** top, log, ticks }
  }
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1
    min -= pad
    max += pad
  }
  const pad = (max - min) * 0.05
  const ticks = niceTicks(min - pad, max + pad)
  return {
    min: Math.min(min - pad, ticks[0] as number),
    max: Math.max(max + pad, ticks[ticks.length - 1] as number),
    log,
    ticks,
  }
}

function project(axis: Axis, value: number, from: number, to: number): number {
  const t = axis.log
    ? (Math.log10(value) - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min))
    : (value - axis.min) / (axis.max - axis.min)
  return from + t * (to - from)
}

/** The plot as an SVG document. A plot with no drawable point says so instead of failing. */
export function linePlotSvg(options: LinePlotOptions): string {
  const width = options.width ?? 640
  const height = options.height ?? 400
  const usable = (x: number, y: number) =>
    Number.isFinite(x) && Number.isFinite(y) && (!options.logX || x > 0) && (!options.logY || y > 0)
  const series = options.series.map((s, i) => ({
    ...s,
    color: s.color ?? (PALETTE[i % PALETTE.length] as string),
    points: s.points.filter(([x, y]) => usable(x, y)),
  }))
  const all = series.flatMap((s) => s.points)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${px(width / 2)}" y="20" text-anchor="middle" font-size="14" font-weight="600">${escapeXml(options.title)}</text>`,
  ]
  if (all.length === 0) {
    out.push(
      `<text x="${px(width / 2)}" y="${px(height / 2)}" text-anchor="middle" fill="#666">no data</text>`,
      '</svg>',
    )
    return `${out.join('\n')}\n`
  }
  const xAxis = makeAxis(
    all.map(([x]) => x),
    options.logX === true,
  )
  const yAxis = makeAxis(
    all.map(([, y]) => y),
    options.logY === true,
  )
  const left = MARGIN.left
  const right = width - MARGIN.right
  const top = MARGIN.top
  const bottom = height - MARGIN.bottom
  const X = (x: number) => project(xAxis, x, left, right)
  const Y = (y: number) => project(yAxis, y, bottom, top)

  for (const tick of yAxis.ticks) {
    const y = px(Y(tick))
    out.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e5e5e5"/>`)
    out.push(
      `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#333">${escapeXml(formatTick(tick))}</text>`,
    )
  }
  for (const tick of xAxis.ticks) {
    const x = px(X(tick))
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="#f0f0f0"/>`)
    out.push(
      `<text x="${x}" y="${bottom + 16}" text-anchor="middle" fill="#333">${escapeXml(formatTick(tick))}</text>`,
    )
  }
  out.push(
    `<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#999"/>`,
  )
  out.push(
    `<text x="${px((left + right) / 2)}" y="${height - 10}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
  )
  out.push(
    `<text transform="translate(14 ${px((top + bottom) / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
  )

  for (const s of series) {
    if (s.points.length === 0) continue
    const path = s.points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${px(X(x))} ${px(Y(y))}`).join(' ')
    out.push(
      `<path d="${path}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    )
    if (s.points.length <= MAX_MARKERS)
      for (const [x, y] of s.points)
        out.push(`<circle cx="${px(X(x))}" cy="${px(Y(y))}" r="2.5" fill="${s.color}"/>`)
  }
  // Legend, top right inside the frame.
  const legendWidth = Math.max(...series.map((s) => s.name.length)) * 7 + 36
  let legendY = top + 14
  out.push(
    `<rect x="${px(right - legendWidth - 8)}" y="${top + 4}" width="${legendWidth}" height="${series.length * 18 + 6}" fill="#ffffff" fill-opacity="0.85" stroke="#ddd"/>`,
  )
  for (const s of series) {
    const x0 = right - legendWidth
    out.push(
      `<line x1="${px(x0)}" y1="${px(legendY)}" x2="${px(x0 + 20)}" y2="${px(legendY)}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    )
    out.push(
      `<text x="${px(x0 + 26)}" y="${px(legendY)}" dominant-baseline="middle">${escapeXml(s.name)}</text>`,
    )
    legendY += 18
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
