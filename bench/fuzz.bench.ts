// `npm run fuzz`: every fuzz target (test/fuzz/targets/) over many inputs, 10^6 each by default.
// Prints a table (inputs, accepted, distinct refusal codes, the most common, inputs per second,
// the most external memory one input allocated) and writes bench/results/fuzz.json. A failure prints the
// shrunk input and the seed to replay it (--seed, --targets <name>).
//
// Run: npm run fuzz [-- --runs 1000000] [--targets safetensors,payload] [--seed 42]
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { fuzz, type FuzzReport } from '../test/fuzz/harness.ts'
import { FUZZ_TARGETS } from '../test/fuzz/targets/index.ts'

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    runs: { type: 'string', default: '1000000' },
    targets: { type: 'string' },
    seed: { type: 'string' },
  },
})

const runs = Number(values.runs)
const wanted = values.targets?.split(',')
const targets = FUZZ_TARGETS.filter((t) => wanted === undefined || wanted.includes(t.name))
if (targets.length === 0)
  throw new Error(`no target named ${values.targets}; have ${FUZZ_TARGETS.map((t) => t.name).join(', ')}`)

const MB = 1024 * 1024
const loadBefore = loadavg()
const reports: (FuzzReport & { cpuSeconds: number })[] = []
console.log(
  '| target | inputs | accepted | refusal codes | most common | inputs/s | inputs/CPU-s | most one input allocated |',
)
console.log(
  '| ------ | ------ | -------- | ------------- | ----------- | -------- | ------------ | ------------------------ |',
)
for (const target of targets) {
  const cpu = process.cpuUsage()
  const report = await fuzz(target, {
    runs,
    ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
  })
  const used = process.cpuUsage(cpu)
  const cpuSeconds = (used.user + used.system) / 1e6
  reports.push({ ...report, cpuSeconds })
  const top = Object.entries(report.codes).sort((a, b) => b[1] - a[1])[0]
  console.log(
    `| ${report.target} | ${report.runs} | ${report.accepted} | ${Object.keys(report.codes).length} | ${top?.[0] ?? '-'} (${top?.[1] ?? 0}) | ${Math.round(report.runs / report.seconds)} | ${Math.round(report.runs / cpuSeconds)} | ${(report.peakInputAllocationBytes / MB).toFixed(1)} MiB |`,
  )
}
await mkdir(new URL('./results/', import.meta.url), { recursive: true })
await writeFile(
  new URL('./results/fuzz.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length, loadavgBefore: loadBefore, loadavgAfter: loadavg() }, runsPerTarget: runs, targets: reports }, null, 2)}\n`,
)
