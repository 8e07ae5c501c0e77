// Blob serving under requesters that never read: a real `coop start` process holds a large blob,
// 64 streams from 16 identities ask for it and never read, an honest peer fetches it meanwhile.
// Reports the node's RSS before and at its peak during the attack (sampled from /proc every 50 ms),
// the most V8 held meanwhile (ArrayBuffers and JS heap, from the node's /metrics), whether the
// honest fetch succeeded, and how many attacker streams the node closed. The reference in the
// same run: the same node serving the blob to the honest peer alone, before the attack.
// Writes bench/results/blob-serving.json.
//
// Run: node_modules/.bin/node bench/blob-serving.bench.ts [--blob-mib 64] [--identities 16] [--streams 4] [--hold 14]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { measureServingAttack } from '../test/node/helpers/serving-attack.ts'

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    'blob-mib': { type: 'string', default: '64' },
    identities: { type: 'string', default: '16' },
    streams: { type: 'string', default: '4' },
    hold: { type: 'string', default: '14' },
  },
})

const MB = 1e6
const dir = await mkdtemp(join(tmpdir(), 'coop-bench-serving-'))
const loadBefore = loadavg()
try {
  const result = await measureServingAttack({
    dir,
    blobMiB: Number(values['blob-mib']),
    identities: Number(values.identities),
    streamsPerIdentity: Number(values.streams),
    holdSeconds: Number(values.hold),
    honestAfterSeconds: 3,
  })
  const row = {
    blobMiB: Number(values['blob-mib']),
    streams: result.streams,
    baselineRssMB: Math.round(result.baselineRssBytes / MB),
    peakRssMB: Math.round(result.peakRssBytes / MB),
    growthMB: Math.round((result.peakRssBytes - result.baselineRssBytes) / MB),
    honestFetch: result.honestFetch.ok
      ? `ok, attempt ${result.honestFetch.attempts}`
      : `failed (${result.honestFetch.failures.join('; ')})`,
    honestFailures: result.honestFetch.failures,
    afterAttack: result.afterAttack.ok ? 'ok' : `failed (${result.afterAttack.message ?? ''})`,
    honestFetchSeconds: Number(result.honestFetch.seconds.toFixed(2)),
    closedByHolder: result.closedByHolder,
    peakExternalMB: Math.round(result.peakExternalBytes / MB),
    peakHeapUsedMB: Math.round(result.peakHeapUsedBytes / MB),
    honestAloneGrowthMB: Math.round(
      (result.honestAlone.peakRssBytes - result.honestAlone.beforeRssBytes) / MB,
    ),
    honestAloneSeconds: Number(result.honestAlone.seconds.toFixed(2)),
    rssSamples: result.rssSamples,
    honestWindowSeconds: result.honestWindow.map((t) => Number(t.toFixed(1))),
    rssSeriesMB: result.series.map(([t, rss]) => [t, Math.round(rss / MB)]),
  }
  console.log(
    '| blob | non-reading streams | RSS before | RSS peak | growth | V8 external / heap peak | honest fetch | streams closed by the node |',
  )
  console.log(
    '| ---- | ------------------- | ---------- | -------- | ------ | ----------------------- | ------------ | -------------------------- |',
  )
  console.log(
    `| ${row.blobMiB} MiB | ${row.streams} | ${row.baselineRssMB} MB | ${row.peakRssMB} MB | ${row.growthMB} MB | ${row.peakExternalMB} / ${row.peakHeapUsedMB} MB | ${row.honestFetch} (${row.honestFetchSeconds} s) | ${row.closedByHolder} of ${row.streams} |`,
  )
  await mkdir(new URL('./results/', import.meta.url), { recursive: true })
  await writeFile(
    new URL('./results/blob-serving.json', import.meta.url),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: cpus().length, loadavgBefore: loadBefore, loadavgAfter: loadavg() },
        holdSeconds: Number(values.hold),
        ...row,
      },
      null,
      2,
    )}\n`,
  )
} finally {
  await rm(dir, { recursive: true, force: true })
}
