// The status page: one HTML document with its style and script inline, so it works with no
// network beyond the node itself (no CDN, no fonts, no images). The script polls /status.json
// and writes every value with textContent (peer ids and codes are never parsed as HTML).

const STYLE = `
:root { color-scheme: light dark; --fg: #1d2330; --muted: #667085; --bg: #f7f8fa; --card: #fff; --line: #d0d5dd; --accent: #3056d3; --bad: #c4320a; --ok: #067647; }
@media (prefers-color-scheme: dark) { :root { --fg: #e4e7ec; --muted: #98a2b3; --bg: #101828; --card: #1d2939; --line: #344054; --accent: #7a9cff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 16px 24px; border-bottom: 1px solid var(--line); display: flex; justify-content: space-between; align-items: baseline; gap: 16px; flex-wrap: wrap; }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 8px; }
main { padding: 16px 24px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
.wide { grid-column: 1 / -1; }
.big { font-size: 26px; font-weight: 600; }
.mid { font-size: 18px; font-weight: 600; }
.muted { color: var(--muted); }
.mono { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
#conn.down { color: var(--bad); }
#conn.up { color: var(--ok); }
svg { width: 100%; height: 180px; }
.legend span { margin-right: 12px; }
`

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const short = (id) => id.length > 20 ? id.slice(0, 14) + '\\u2026' + id.slice(-6) : id;
function bytes(n) { const u = ['B', 'kB', 'MB', 'GB']; let i = 0; while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; } return n.toFixed(i === 0 ? 0 : 1) + ' ' + u[i]; }
function rows(tbody, items, cells) {
  tbody.replaceChildren(...items.map((item) => {
    const tr = document.createElement('tr');
    for (const value of cells(item)) { const td = document.createElement('td'); td.textContent = String(value); tr.append(td); }
    return tr;
  }));
}
function plot(losses) {
  const svg = $('losses');
  const series = [['loss', 'var(--accent)'], ['evalLoss', 'var(--bad)']];
  const points = losses.filter((l) => l.loss !== null || l.evalLoss !== undefined);
  svg.replaceChildren();
  if (points.length === 0) { $('losses-note').textContent = 'no loss yet'; return; }
  $('losses-note').textContent = points.length + ' round(s)';
  const values = points.flatMap((l) => [l.loss, l.evalLoss]).filter((v) => typeof v === 'number' && isFinite(v));
  const max = Math.max(...values), min = Math.min(0, ...values);
  const x = (i) => 30 + (points.length === 1 ? 0 : i * 560 / (points.length - 1));
  const y = (v) => 170 - (v - min) / ((max - min) || 1) * 160;
  for (const [key, color] of series) {
    const coords = points.map((l, i) => [x(i), l[key]]).filter(([, v]) => typeof v === 'number' && isFinite(v)).map(([px, v]) => px.toFixed(1) + ',' + y(v).toFixed(1));
    if (coords.length === 0) continue;
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', coords.join(' ')); line.setAttribute('fill', 'none'); line.setAttribute('stroke', color); line.setAttribute('stroke-width', '2');
    svg.append(line);
  }
  $('losses-note').textContent = points.length + ' round(s), scale ' + min.toFixed(3) + ' to ' + max.toFixed(3);
}
function render(s) {
  $('node').textContent = s.peerId + (s.publisher ? ' (publisher)' : '');
  $('coop').textContent = s.coop;
  $('state').textContent = s.state;
  const round = $('round');
  round.dataset.round = s.round === null ? '' : String(s.round);
  round.textContent = s.round === null ? 'all ' + s.totalRounds + ' rounds done' : 'round ' + s.round + ' / ' + s.totalRounds;
  $('phase').textContent = s.round === null ? '' : s.phase + ' \\u00b7 ' + s.contributionsThisRound + ' contribution(s) so far';
  const peers = $('peers');
  peers.dataset.peers = String(s.peers.length);
  peers.textContent = s.peers.length + (s.peers.length === 1 ? ' peer' : ' peers');
  rows($('peer-rows'), s.peers, (p) => [short(p.id), p.score.toFixed(2)]);
  const c = s.latestCheckpoint;
  const checkpoint = $('checkpoint');
  checkpoint.dataset.round = c === null ? '' : String(c.round);
  checkpoint.textContent = c === null ? 'none yet' : c.phase + ' round ' + c.round;
  $('checkpoint-detail').textContent = c === null ? '' : 'verification: ' + c.verification + ' \\u00b7 ' + c.id;
  rows($('checkpoint-rows'), s.checkpoints.slice().reverse().slice(0, 12), (k) => [k.phase, k.round, k.contributions, k.verification]);
  const rejections = s.rejections.slice().sort((a, b) => b.count - a.count);
  const rejected = (what) => s.rejections.filter((r) => r.what === what).reduce((n, r) => n + r.count, 0);
  const counts = $('rejected');
  counts.dataset.contributions = String(rejected('contributions'));
  counts.dataset.checkpoints = String(rejected('checkpoints'));
  counts.textContent = rejected('contributions') + ' contribution(s) \u00b7 ' + rejected('checkpoints') + ' checkpoint(s) \u00b7 ' + rejected('consent') + ' consent document(s)';
  $('rejections-note').textContent = rejections.length === 0 ? 'none' : '';
  rows($('rejection-rows'), rejections, (r) => [r.what, r.stage, r.code, r.count]);
  rows($('recent-rows'), s.recentRejections, (r) => [new Date(r.at).toLocaleTimeString(), r.what, r.code, r.peer !== undefined ? 'from ' + short(r.peer) : r.checkpoint !== undefined ? short(r.checkpoint) : '']);
  const penalties = s.penalties.slice().sort((a, b) => b.count - a.count);
  const total = penalties.reduce((n, p) => n + p.count, 0);
  $('penalties').dataset.penalties = String(total);
  $('penalties').textContent = total + (total === 1 ? ' penalty' : ' penalties');
  rows($('penalty-rows'), penalties, (p) => [p.code, p.count]);
  rows($('penalized-rows'), s.penalizedPeers, (p) => [short(p.id), p.points.toFixed(1), Object.entries(p.counts).map(([c, n]) => c + ' \u00d7' + n).join(', ')]);
  $('bandwidth').textContent = bytes(s.bandwidth.inBytes) + ' in \\u00b7 ' + bytes(s.bandwidth.outBytes) + ' out';
  $('rate').textContent = bytes(s.bandwidth.inBytesPerSecond) + '/s in \\u00b7 ' + bytes(s.bandwidth.outBytesPerSecond) + '/s out';
  plot(s.losses);
  $('updated').textContent = 'updated ' + new Date(s.updatedAt).toLocaleTimeString();
}
async function poll() {
  try {
    const response = await fetch('status.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(String(response.status));
    render(await response.json());
    $('conn').textContent = 'live'; $('conn').className = 'up';
  } catch {
    $('conn').textContent = 'node unreachable'; $('conn').className = 'down';
  }
  setTimeout(poll, 1000);
}
poll();
`

export function statusPageHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>diffusion-coop node</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>diffusion-coop node <span id="conn" class="muted">connecting</span></h1>
  <div class="muted"><span id="state"></span> · <span id="updated"></span></div>
</header>
<main>
  <section class="wide"><h2>Node</h2>
    <div>node <span id="node" class="mono"></span></div>
    <div>coop <span id="coop" class="mono"></span></div>
  </section>
  <section><h2>Round</h2><div id="round" class="big">-</div><div id="phase" class="muted"></div></section>
  <section><h2>Peers</h2><div id="peers" class="big">-</div>
    <table><thead><tr><th>peer</th><th>gossip score</th></tr></thead><tbody id="peer-rows"></tbody></table>
  </section>
  <section><h2>Latest checkpoint</h2><div id="checkpoint" class="big">-</div><div id="checkpoint-detail" class="muted mono"></div></section>
  <section><h2>Bandwidth</h2><div id="bandwidth" class="mid">-</div><div id="rate" class="muted"></div></section>
  <section class="wide"><h2>Losses by round</h2>
    <div class="legend muted"><span style="color:var(--accent)">&#9632; training loss</span><span style="color:var(--bad)">&#9632; eval loss (publisher)</span><span id="losses-note"></span></div>
    <svg id="losses" viewBox="0 0 600 180" preserveAspectRatio="none" role="img" aria-label="loss per round"></svg>
  </section>
  <section class="wide"><h2>Checkpoints (latest 12)</h2>
    <table><thead><tr><th>phase</th><th>round</th><th>contributions</th><th>verification</th></tr></thead><tbody id="checkpoint-rows"></tbody></table>
  </section>
  <section class="wide"><h2>Rejected</h2><div id="rejected" class="mid">-</div><div id="rejections-note" class="muted"></div>
    <table><thead><tr><th>what</th><th>stage</th><th>code</th><th>count</th></tr></thead><tbody id="rejection-rows"></tbody></table>
    <h2 style="margin-top:12px">Latest rejections</h2>
    <table><thead><tr><th>time</th><th>what</th><th>code</th><th>sender or checkpoint</th></tr></thead><tbody id="recent-rows"></tbody></table>
  </section>
  <section class="wide"><h2>Penalties charged to peers</h2><div id="penalties" class="mid">-</div>
    <table><thead><tr><th>code</th><th>count</th></tr></thead><tbody id="penalty-rows"></tbody></table>
    <table><thead><tr><th>peer</th><th>points (decaying)</th><th>charges</th></tr></thead><tbody id="penalized-rows"></tbody></table>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`
}
