// Renders the demo report: one self-contained HTML file (no external requests; images as data
// URIs, the loss plot inline) that opens from disk and carries the attribution CC-BY requires.
import type {
  AttributionEntry,
  DemoReportModel,
  ReportCheckpoint,
  ReportPeer,
  ReportSample,
} from './model.ts'

const LICENSE_URLS: Record<string, string> = {
  'CC-BY-4.0': 'https://creativecommons.org/licenses/by/4.0/',
  'CC-BY-SA-4.0': 'https://creativecommons.org/licenses/by-sa/4.0/',
  'CC0-1.0': 'https://creativecommons.org/publicdomain/zero/1.0/',
}

/** Escapes text for element content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  )
}

const esc = escapeHtml

/** Width and height from a PNG's IHDR chunk; undefined when the bytes are not a PNG. */
export function pngSize(png: Uint8Array): { width: number; height: number } | undefined {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
  if (png.length < 24 || signature.some((b, i) => png[i] !== b)) return undefined
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength)
  return { width: view.getUint32(16), height: view.getUint32(20) }
}

function shortDigest(digest: string): string {
  const hex = digest.startsWith('sha256:') ? digest.slice(7) : digest
  return `${hex.slice(0, 12)}…`
}

function code(text: string, full?: string): string {
  return full === undefined ? `<code>${esc(text)}</code>` : `<code title="${esc(full)}">${esc(text)}</code>`
}

function formatLoss(loss: number | undefined): string {
  return loss === undefined || !Number.isFinite(loss) ? '–' : loss.toFixed(4)
}

function formatDuration(seconds: number): string {
  const m = Math.floor(seconds / 60)
  const s = Math.round(seconds - m * 60)
  return m > 0 ? `${m} min ${s} s` : `${s} s`
}

function licenseLink(license: string): string {
  const url = LICENSE_URLS[license]
  return url === undefined ? esc(license) : `<a href="${esc(url)}">${esc(license)}</a>`
}

function peerName(peers: ReportPeer[], peerId: string): string {
  return peers.find((p) => p.peerId === peerId)?.name ?? shortDigest(peerId)
}

function charterSection(model: DemoReportModel): string {
  const c = model.charter
  const rows: [string, string][] = [
    ['Coop id (charter digest)', code(c.coopId)],
    ['Model configuration', esc(c.config)],
    ['Phases', esc(c.phases)],
    ['Local steps per round (H)', String(c.innerSteps)],
    ['Outer optimiser', `SGD, Nesterov momentum ${c.outerMomentum}, learning rate ${c.outerLr}`],
    ['Aggregator', esc(c.aggregator)],
    ['Delta compression', esc(c.compression)],
    ['Quorum', String(c.quorum)],
    [
      'Publishers',
      c.publishers.map((p) => `${esc(peerName(model.peers, p))} ${code(shortDigest(p), p)}`).join('<br>'),
    ],
    ['Signing threshold', String(c.threshold)],
    ['Admission', esc(c.admission)],
    ['Licenses accepted for training', c.acceptedLicenses.map(licenseLink).join(', ')],
    ['Created', esc(c.createdAt)],
  ]
  return `<section id="coop"><h2>The cooperative and its charter</h2>
<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join('\n')}</table>
<details><summary>Full charter (JSON)</summary><pre>${esc(JSON.stringify(model.charterJson, null, 2))}</pre></details>
</section>`
}

function peersSection(model: DemoReportModel): string {
  const rows = model.peers.map(
    (p) => `<tr><td>${esc(p.name)}${p.publisher ? ' <span class="tag">publisher</span>' : ''}</td>
<td>${code(shortDigest(p.peerId), p.peerId)}</td><td>${code(shortDigest(p.rightsHolder.replace(/^did:key:/, '')), p.rightsHolder)}</td>
<td>${esc(p.categories.join(', '))}</td><td class="num">${p.items}</td></tr>`,
  )
  return `<section id="peers"><h2>Peers</h2>
<p>Each peer is a separate node process on loopback. Its images are covered by a consent manifest
signed by its own rights-holder key, naming that node as the only custodian allowed to train on them.</p>
<table><thead><tr><th>Peer</th><th>PeerId</th><th>Rights holder</th><th>Categories (non-IID split)</th><th>Images</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table></section>`
}

function checkpointRow(model: DemoReportModel, cp: ReportCheckpoint): string {
  const contributions = cp.contributions
    .map(
      (c) =>
        `${esc(peerName(model.peers, c.peerId))}: ${c.samples} samples, loss ${formatLoss(c.loss)} ${code(shortDigest(c.digest), c.digest)}`,
    )
    .join('<br>')
  const verified = cp.verification.ok
    ? `<span class="ok" title="${esc(cp.verification.detail)}">✔ verified</span>`
    : `<span class="bad" title="${esc(cp.verification.detail)}">✘ ${esc(cp.verification.code ?? 'failed')}</span>`
  return `<tr><td class="num">${cp.round}</td><td>${esc(cp.phase)}</td><td><a href="${esc(cp.path)}">${code(shortDigest(cp.digest), cp.digest)}</a></td>
<td>${cp.parent === null ? 'genesis' : code(shortDigest(cp.parent), cp.parent)}</td><td>${contributions || '–'}</td>
<td class="num">${cp.excludedItems}${cp.expiredManifests ? ` (+ ${cp.expiredManifests} expired manifest${cp.expiredManifests === 1 ? '' : 's'})` : ''}</td><td class="num">${formatLoss(cp.evalLoss)}</td><td>${verified}</td></tr>`
}

function checkpointsSection(model: DemoReportModel): string {
  const ok = model.checkpoints.filter((c) => c.verification.ok).length
  return `<section id="checkpoints"><h2>Checkpoints</h2>
<p>${ok} of ${model.checkpoints.length} checkpoints verified with <code>coop checkpoint verify</code>
(publisher signature, file digests, and the aggregate recomputed bit-exactly from the listed contributions).</p>
<table><thead><tr><th>Round</th><th>Phase</th><th>Checkpoint</th><th>Parent</th><th>Contributions</th><th>Consent withdrawn since parent</th><th>Eval loss</th><th>Verification</th></tr></thead>
<tbody>${model.checkpoints.map((cp) => checkpointRow(model, cp)).join('\n')}</tbody></table></section>`
}

function sampleFigure(sample: ReportSample): string {
  const size = pngSize(sample.png)
  const rows = Math.max(1, sample.rows.length)
  // Upscale small grids with crisp pixels so 32x32 emoji stay readable.
  const rowPx = size === undefined ? 48 : Math.max(32, Math.min(96, Math.round((size.height / rows) * 2)))
  const data = Buffer.from(sample.png).toString('base64')
  return `<figure class="grid"><figcaption>Round ${sample.round}</figcaption>
<div class="gridbox"><div class="labels" style="grid-template-rows: repeat(${rows}, ${rowPx}px)">${sample.rows.map((r) => `<span>${esc(r)}</span>`).join('')}</div>
<img alt="Samples after round ${sample.round}, one row per category" style="height:${rows * rowPx}px" src="data:image/png;base64,${data}"></div></figure>`
}

function samplesSection(model: DemoReportModel): string {
  if (model.samples.length === 0)
    return '<section id="samples"><h2>Samples</h2><p>No U-Net round has closed yet.</p></section>'
  const ordered = [...model.samples].sort((a, b) => b.round - a.round)
  return `<section id="samples"><h2>Samples</h2>
<p>Class-conditional samples of the averaged model after each U-Net round, with classifier-free guidance, from the same
seed every round: one row per category, newest first.</p>
${ordered.map(sampleFigure).join('\n')}</section>`
}

function attributionSection(model: DemoReportModel): string {
  const items = model.attribution.map(
    (
      a: AttributionEntry,
    ) => `<li><strong>${esc(a.attribution)}</strong>${a.uri ? `, <a href="${esc(a.uri)}">${esc(a.uri)}</a>` : ''},
licensed under ${licenseLink(a.license)}. ${a.items} images, rights holder ${code(a.rightsHolder)}, held by ${esc(a.peers.join(', '))}.</li>`,
  )
  return `<section id="attribution"><h2>Attribution</h2>
<p>The published checkpoints were trained on the works below. Their licenses require this credit.
Changes were made: the images were resized and used to train the models whose checkpoints are listed above;
no image is redistributed by them.</p>
<ul class="attribution">${items.join('\n')}</ul></section>`
}

const STYLE = `body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2327}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{border-bottom:1px solid #eee;padding:.35em .5em;text-align:left;vertical-align:top}
table.kv th{width:16em;color:#555;font-weight:500}.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:.88em ui-monospace,Menlo,Consolas,monospace;background:#f4f4f4;padding:0 .25em;border-radius:3px}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}.tag{font-size:.75em;background:#e6f0ff;color:#1a4fa0;padding:0 .4em;border-radius:3px}
.ok{color:#137333}.bad{color:#b3261e;font-weight:600}.summary{color:#555}
figure.grid{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}figcaption{font-weight:600;margin-bottom:.3em}
.gridbox{display:flex;gap:.5em}.labels{display:grid;font-size:.8em;color:#444}.labels span{display:flex;align-items:center;justify-content:flex-end;white-space:nowrap}
.gridbox img{image-rendering:pixelated;image-rendering:crisp-edges}.plot svg{max-width:100%;height:auto}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots .plot{flex:1 1 480px}`

function lossSection(model: DemoReportModel): string {
  const loss = `<div class="plot">${inlineSvg(model.lossSvg)}</div>`
  if (model.qualitySvg === undefined)
    return `<section id="loss"><h2>Loss</h2><p>Training loss reported by each peer per round, and the eval loss of the averaged model (fixed held-out batch).</p>${loss}</section>`
  const final =
    model.quality === undefined
      ? ''
      : ` The final grid's model (round ${model.quality.round}): class accuracy ${(model.quality.classAccuracy * 100).toFixed(1)}%, Fréchet distance ${model.quality.frechetDistance.toFixed(2)}, from ${model.quality.samples} samples.`
  return `<section id="loss"><h2>Loss and sample quality</h2><p>Left: training loss reported by each peer per round, and the eval loss of the averaged model (fixed held-out batch).
Right: sample quality of the averaged model per round, measured on its grid's samples by the project's in-domain classifier
(class accuracy: share of samples classified as the row's category, chance 1/9; Fréchet distance between the classifier's features
of the samples and of held-out real Twemoji, lower is better, comparable only at the same sample count).${final}</p>
<div class="plots">${loss}<div class="plot">${inlineSvg(model.qualitySvg)}</div></div></section>`
}

/** An SVG document inlined in HTML must not carry its XML prolog or doctype. */
function inlineSvg(svg: string): string {
  return svg.replace(/^\s*<\?xml[^>]*\?>\s*/, '').replace(/^\s*<!DOCTYPE[^>]*>\s*/i, '')
}

function extraNav(model: DemoReportModel): string {
  return (model.extraSections ?? []).map((s) => ` · <a href="#${esc(s.id)}">${esc(s.title)}</a>`).join('')
}

/** The whole report as one HTML document. */
export function renderReportHtml(model: DemoReportModel): string {
  const last = model.checkpoints.at(-1)
  const summary =
    `${model.peers.length} peers, ${model.checkpoints.length} checkpoints, ${formatDuration(model.wallSeconds)} from setup to the last checkpoint on the ${esc(model.backend)} backend` +
    (last?.evalLoss !== undefined ? `, final eval loss ${formatLoss(last.evalLoss)}` : '') +
    (model.quality === undefined
      ? ''
      : `, final class accuracy ${(model.quality.classAccuracy * 100).toFixed(0)}% (chance 11%) on ${model.quality.samples} samples`) +
    (model.timeBox === undefined
      ? ''
      : `; the time box ended the run after U-Net round ${model.timeBox.unetRoundsDone} of the charter's ${model.timeBox.unetRoundsPlanned}, to finish within ${Math.round(model.timeBox.limitSeconds / 60)} minutes`)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(model.title)}</title><style>${STYLE}</style></head>
<body><h1>${esc(model.title)}</h1>
<p class="summary">${summary}. Generated ${esc(model.generatedAt)}.</p>
<nav><a href="#coop">Charter</a> · <a href="#peers">Peers</a> · <a href="#checkpoints">Checkpoints</a> · <a href="#samples">Samples</a> · <a href="#loss">Loss and quality</a>${extraNav(model)} · <a href="#attribution">Attribution</a></nav>
${charterSection(model)}
${peersSection(model)}
${checkpointsSection(model)}
${samplesSection(model)}
${lossSection(model)}
${(model.extraSections ?? []).map((section) => section.html).join('\n')}
${attributionSection(model)}
</body></html>
`
}
