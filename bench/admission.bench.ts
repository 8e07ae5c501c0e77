// Payload admission: what decoding one contribution payload costs, honest or forged, against the
// model's own size. Each case runs in a child process that builds the payload, reads its peak
// RSS (VmHWM), decodes the payload through node/round/recompute.ts's decodeContributionPayload
// (the path the publisher, every verifier and `coop checkpoint verify` take), and reads VmHWM
// again: the difference is the decode's own peak memory. Layouts are synthetic (100 tensors)
// with the parameter counts of the tiny and emoji32 models. Prints a table and writes
// bench/results/admission.json.
//
// The reference, in the same run: the attack (8 MiB of top-k entries declaring four
// 2^28-element tensors, one kept index per memory page) through the decoder before issue 8
// (protocol/compression.ts at BEFORE_COMMIT, loaded from git into a temp dir: it decoded
// whatever shape a payload declared) and through today's path. The "before" row allocates about
// 4 GiB for a few seconds; `--skip-before` leaves it out.
// Run: node bench/admission.bench.ts [--skip-before]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { compressDelta, payloadMaxBytes, topkCount, type Codec } from '../protocol/compression.ts'
import { decodeSafetensors, encodeSafetensors, type TensorEntry } from '../protocol/safetensors.ts'
import { decodeContributionPayload } from '../node/round/recompute.ts'

/** main before issue 8 part 2: its decoder allocated whatever dense shape a top-k payload declared. */
const BEFORE_COMMIT = '6e57bb07647bfdc02522b883e3e33e90c7a4e713'

const MODELS = { tiny: 148_000, emoji32: 586_000 } as const
const TENSORS = 100
const CODECS: Record<string, Codec> = {
  int8: { kind: 'int8' },
  'topk:0.01': { kind: 'topk', fraction: 0.01 },
  'topk:0.0625:2bit': { kind: 'topk', fraction: 0.0625, values: '2bit' },
}
const CASES = [
  'honest',
  'another model',
  'huge-shape top-k (8 MiB)',
  'huge-shape top-k (within the bound)',
  "the issue's attack: 8 MiB, 4 x 2^28 elements, one index per page",
] as const
type Case = (typeof CASES)[number]

function layoutOf(parameters: number): { name: string; shape: number[] }[] {
  const per = Math.ceil(parameters / TENSORS)
  return Array.from({ length: TENSORS }, (_, i) => ({
    name: `block${String(i).padStart(3, '0')}.weight`,
    shape: [per],
  }))
}

function values(n: number, seed: number): Float32Array {
  let x = seed
  return Float32Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return (x / 2147483648 - 0.5) * 1e-2
  })
}

/** Top-k entries with the model's names, each declaring 2^40 elements. */
function hugeShape(layout: { name: string }[], k: number): TensorEntry[] {
  return layout.flatMap((t) => [
    {
      name: `${t.name}.idx`,
      dtype: 'I32' as const,
      shape: [k],
      data: Int32Array.from({ length: k }, (_, i) => i),
    },
    { name: `${t.name}.val`, dtype: 'F32' as const, shape: [k], data: new Float32Array(k).fill(1e-3) },
    { name: `${t.name}.shape`, dtype: 'I32' as const, shape: [2], data: Int32Array.from([1 << 20, 1 << 20]) },
  ])
}

/** Four top-k tensors with the model's first names, each declaring 2^28 elements (the old per-tensor limit), k indices 1024 apart: every kept value lands on its own 4 KiB page. */
function pageSpread(layout: { name: string }[]): Uint8Array {
  const k = (8 * 1024 * 1024) / 8 / 4
  return encodeSafetensors(
    layout.slice(0, 4).flatMap((t): TensorEntry[] => [
      {
        name: `${t.name}.idx`,
        dtype: 'I32',
        shape: [k],
        data: Int32Array.from({ length: k }, (_, i) => i * 1024),
      },
      { name: `${t.name}.val`, dtype: 'F32', shape: [k], data: new Float32Array(k).fill(1e-3) },
      { name: `${t.name}.shape`, dtype: 'I32', shape: [2], data: Int32Array.from([1 << 14, 1 << 14]) },
    ]),
  )
}

function payload(which: Case, layout: { name: string; shape: number[] }[], codec: Codec): Uint8Array {
  const dense = (names: string[]) =>
    layout.map((t, i) => ({
      name: names[i] as string,
      shape: t.shape,
      data: values(t.shape[0] as number, i + 1),
    }))
  switch (which) {
    case 'honest':
      return encodeSafetensors(compressDelta(dense(layout.map((t) => t.name)), codec).entries)
    case 'another model':
      return encodeSafetensors(compressDelta(dense(layout.map((t) => `evil.${t.name}`)), codec).entries)
    case 'huge-shape top-k (8 MiB)':
      return encodeSafetensors(hugeShape(layout, Math.ceil((8 * 1024 * 1024) / 8 / layout.length)))
    case 'huge-shape top-k (within the bound)':
      return encodeSafetensors(hugeShape(layout, topkCount(layout[0]?.shape[0] as number, 0.01)))
    case "the issue's attack: 8 MiB, 4 x 2^28 elements, one index per page":
      return pageSpread(layout)
  }
}

function highWaterMiB(): number {
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))
  return Number(match?.[1]) / 1024
}

if (process.argv[2] === '--child') {
  const [, , , model, codecName, which, beforeModule] = process.argv as [
    string,
    string,
    string,
    keyof typeof MODELS,
    string,
    Case,
    string | undefined,
  ]
  // The old decoder took the entries alone and trusted their declared shapes.
  const before =
    beforeModule === undefined
      ? undefined
      : ((await import(beforeModule)) as { decompressDelta: (e: Map<string, TensorEntry>) => unknown })
  const layout = layoutOf(MODELS[model])
  const codec = CODECS[codecName] as Codec
  const bytes = payload(which, layout, codec)
  const peakBefore = highWaterMiB()
  const started = process.cpuUsage()
  let code = before === undefined ? 'admitted' : 'decoded'
  try {
    if (before === undefined) decodeContributionPayload(bytes, layout, codec)
    else before.decompressDelta(decodeSafetensors(bytes).tensors)
  } catch (err) {
    code = (err as { code?: string }).code ?? 'error'
  }
  const cpu = process.cpuUsage(started)
  process.stdout.write(
    JSON.stringify({
      payloadBytes: bytes.byteLength,
      decodePeakMiB: highWaterMiB() - peakBefore,
      cpuMs: (cpu.user + cpu.system) / 1000,
      code,
    }),
  )
  process.exit(0)
}

/** The pre-issue-8 decoder as a module in a temp dir (its one value import pointed at today's errors.ts), or why not. */
function loadBefore(dir: string): string {
  const errors = pathToFileURL(fileURLToPath(new URL('../protocol/errors.ts', import.meta.url))).href
  const source = execFileSync('git', ['show', `${BEFORE_COMMIT}:protocol/compression.ts`], {
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  }).replace("from './errors.ts'", `from '${errors}'`)
  const path = join(dir, 'compression-before.ts')
  writeFileSync(path, source)
  return pathToFileURL(path).href
}

const self = fileURLToPath(import.meta.url)
const skipBefore = process.argv.includes('--skip-before')
const tempDir = mkdtempSync(join(tmpdir(), 'bench-admission-'))
let beforeModule: string | undefined
let beforeNote = 'skipped (--skip-before)'
if (!skipBefore) {
  try {
    beforeModule = loadBefore(tempDir)
    beforeNote = `protocol/compression.ts at ${BEFORE_COMMIT}`
  } catch (err) {
    beforeNote = `unavailable: ${(err as Error).message.split('\n')[0]}`
  }
}
const rows: Record<string, unknown>[] = []
for (const model of Object.keys(MODELS) as (keyof typeof MODELS)[]) {
  const modelMiB = (4 * MODELS[model]) / 2 ** 20
  for (const [codecName, codec] of Object.entries(CODECS)) {
    const boundMiB = payloadMaxBytes(layoutOf(MODELS[model]), codec) / 2 ** 20
    for (const which of CASES) {
      const attack = which.startsWith('the issue')
      // The hostile layouts are F32 top-k entries; the 2-bit layout carries no names, so only honest.
      if ((which.startsWith('huge') || attack) && (codec.kind !== 'topk' || codec.values === '2bit')) continue
      if (which === 'another model' && codec.kind === 'topk' && codec.values === '2bit') continue
      // The reference rows once: the attack does not depend on the model.
      const decoders: ('after' | 'before')[] =
        attack && model === 'tiny' && beforeModule !== undefined ? ['before', 'after'] : ['after']
      for (const decoder of decoders) {
        const args = [
          self,
          '--child',
          model,
          codecName,
          which,
          ...(decoder === 'before' ? [beforeModule as string] : []),
        ]
        const out = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' })) as {
          payloadBytes: number
          decodePeakMiB: number
          cpuMs: number
          code: string
        }
        rows.push({
          model,
          modelMiB: Number(modelMiB.toFixed(2)),
          codec: codecName,
          payloadBoundMiB: Number(boundMiB.toFixed(3)),
          decoder,
          case: which,
          payloadMiB: Number((out.payloadBytes / 2 ** 20).toFixed(3)),
          outcome: out.code,
          decodePeakMiB: Number(out.decodePeakMiB.toFixed(1)),
          decodePeakOverModel: Number((out.decodePeakMiB / modelMiB).toFixed(2)),
          cpuMs: Number(out.cpuMs.toFixed(1)),
        })
      }
    }
  }
}
rmSync(tempDir, { recursive: true, force: true })
console.table(rows)
const result = {
  bench: 'admission',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() },
  note: 'decodePeakMiB: VmHWM after minus before one decode, in a fresh child per case; decoder after = decodeContributionPayload (today), before = decompressDelta of the reference commit',
  before: beforeNote,
  rows,
}
writeFileSync(new URL('./results/admission.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
