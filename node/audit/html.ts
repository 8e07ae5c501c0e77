// The audit as a page a rights holder can read: per holder, their image that a sample came
// closest to, beside that sample, with the distances and the verdict; then every flagged image.
// Self-contained (images as data URIs). `auditSection` is the fragment the demo report embeds.
import sharp from 'sharp'
import { escapeHtml as esc } from '../report/html.ts'
import { AUDIT_THUMBNAIL_PX } from './constants.ts'
import type { AuditRun } from './memorization.ts'

async function thumbnail(pixels: Uint8Array, index: number, size: number): Promise<string> {
  const stride = size * size * 3
  const png = await sharp(Buffer.from(pixels.subarray(index * stride, (index + 1) * stride)), {
    raw: { width: size, height: size, channels: 3 },
  })
    .resize(AUDIT_THUMBNAIL_PX, AUDIT_THUMBNAIL_PX, { kernel: 'nearest' })
    .png()
    .toBuffer()
  return `data:image/png;base64,${png.toString('base64')}`
}

// Inline styles: the section is embedded in pages (the demo report) whose stylesheet is not ours.
const PAIR_STYLE = 'display:flex;gap:.5em;align-items:flex-start'
const FIGURE_STYLE = 'margin:0;text-align:center;font-size:.8em;color:#555'
const IMG_STYLE = 'image-rendering:pixelated;border:1px solid #ddd;display:block'

function figure(src: string, caption: string): string {
  return `<figure style="${FIGURE_STYLE}"><img style="${IMG_STYLE}" src="${src}" width="${AUDIT_THUMBNAIL_PX}" height="${AUDIT_THUMBNAIL_PX}" alt="${esc(caption)}">${esc(caption)}</figure>`
}

/** The audit as an HTML section (no page chrome), for audit.html and the demo report. */
export async function auditSection(run: AuditRun): Promise<string> {
  const { report } = run
  const indexOf = new Map(report.images.map((image, i) => [image.sha256, i]))
  const rows: string[] = []
  for (const holder of report.holders) {
    const closest = holder.closest
    let pair = '–'
    if (closest !== null) {
      const imageIndex = indexOf.get(closest.sha256) ?? 0
      pair = `<div style="${PAIR_STYLE}">${figure(await thumbnail(run.images, imageIndex, run.size), 'their image')}${figure(
        await thumbnail(run.samples, closest.sample, run.size),
        `sample ${closest.sample}`,
      )}</div>`
    }
    rows.push(
      `<tr><td>${esc(holder.name)}${holder.issuer === null ? '' : `<br><code>${esc(holder.issuer)}</code>`}</td><td>${holder.images}</td><td class="${holder.flagged > 0 ? 'bad' : 'ok'}">${holder.flagged}</td><td>${closest === null ? '–' : `${closest.l2.toFixed(3)} / ${closest.ratio.toFixed(2)}`}</td><td>${pair}</td></tr>`,
    )
  }
  const flagged = report.images.filter((i) => i.flagged)
  const flaggedRows: string[] = []
  for (const image of flagged) {
    const index = indexOf.get(image.sha256) ?? 0
    flaggedRows.push(
      `<tr><td><code>${esc(image.sha256.slice(7, 19))}…</code> ${esc(image.class ?? '')}</td><td>${image.nearest.l2.toFixed(3)}</td><td>${image.ratio.toFixed(2)}</td><td><div style="${PAIR_STYLE}">${figure(await thumbnail(run.images, index, run.size), 'training image')}${figure(await thumbnail(run.samples, image.nearest.sample, run.size), `sample ${image.nearest.sample}`)}</div></td></tr>`,
    )
  }
  const m = report.method
  return `<section id="memorization-audit">
<h2>Memorization audit</h2>
<p>${report.summary.samples} samples (${m.samplesPerClass} per class, DDIM ${m.sampler.steps} steps, guidance ${m.sampler.guidance}, seed ${m.sampler.seed}) compared with ${report.summary.images} training images in pixel space (normalised ℓ2 at ${m.imageSize}×${m.imageSize}) and in the feature space <code>${esc(m.features.extractor)}</code> (${m.features.dims} dimensions).
An image is flagged as a near-copy when a sample lies within ℓ2 ${report.thresholds.l2} of it <em>and</em> is at most ${report.thresholds.ratio.toFixed(3)} times as far from it as from any other training image.
<strong>${report.summary.flagged} of ${report.summary.images} images flagged.</strong></p>
<p class="sources">Thresholds: ${report.thresholds.sources.map(esc).join('; ')}.</p>
<table><thead><tr><th>Rights holder</th><th>Images</th><th>Flagged</th><th>Closest ℓ2 / ratio</th><th>Their closest image and the sample</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>
${flagged.length === 0 ? '<p>No image is flagged.</p>' : `<h3>Flagged images</h3><table><thead><tr><th>Image</th><th>ℓ2</th><th>Ratio</th><th>Image and nearest sample</th></tr></thead><tbody>${flaggedRows.join('\n')}</tbody></table>`}
</section>`
}

const STYLE = `body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.4em .6em;text-align:left;vertical-align:middle}
.bad{color:#b00;font-weight:bold}.ok{color:#070}.sources{font-size:.85em;color:#555}
code{font-size:.85em}`

/** A whole page: audit.html next to audit.json. */
export async function auditPage(run: AuditRun): Promise<string> {
  const c = run.report.checkpoint
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Memorization audit</title><style>${STYLE}</style></head><body>
<p>Checkpoint <code>${esc(c.id ?? c.dir)}</code>${c.round === null ? '' : ` (round ${c.round})`}, audited ${esc(run.report.createdAt)}.</p>
${await auditSection(run)}
</body></html>
`
}
