// Payload admission: what decoding one contribution payload costs, honest or forged, against the
// model's own size. Each case runs in a child process that builds the payload, reads its peak
// RSS (VmHWM), decodes the payload through node/round/recompute.ts's decodeContributionPayload
// (the path the publisher, every verifier and `coop checkpoint verify` take), and reads VmHWM
// again: the difference is the decode's own peak memory. Layouts are synthetic (100 tensors)
// with the parameter counts of the tiny and emoji32 models. Prints a table and writes
// bench/results/admission.json.
// Run: node bench/admission.bench.ts
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { compressDelta, payloadMaxBytes, topkCount, type Codec } from '../protocol/compression.ts'
import { encodeSafetensors, type TensorEntry } from '../protocol/safetensors.ts'
import { decodeContributionPayload } from '../node/round/recompute.ts'

const MODELS = { tiny: 148_000, emoji32: 586_000 } as const
const TENSORS = 100
const CODECS: Record<string, Codec> = {
  int8: { kind: 'int8' },
  'topk:0.01': { kind: 'topk', fraction: 0.01 },
}
const CASES = [
  'honest',
  'another model',
  'huge-shape top-k (8 MiB)',
  'huge-shape top-k (within the bound)',
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
  }
}

function highWaterMiB(): number {
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))
  return Number(match?.[1]) / 1024
}

if (process.argv[2] === '--child') {
  const [, , , model, codecName, which] = process.argv as [
    string,
    string,
    string,
    keyof typeof MODELS,
    string,
    Case,
  ]
  const layout = layoutOf(MODELS[model])
  const codec = CODECS[codecName] as Codec
  const bytes = payload(which, layout, codec)
  const before = highWaterMiB()
  const started = process.cpuUsage()
  let code = 'admitted'
  try {
    decodeContributionPayload(bytes, layout, codec)
  } catch (err) {
    code = (err as { code?: string }).code ?? 'error'
  }
  const cpu = process.cpuUsage(started)
  process.stdout.write(
    JSON.stringify({
      payloadBytes: bytes.byteLength,
      decodePeakMiB: highWaterMiB() - before,
      cpuMs: (cpu.user + cpu.system) / 1000,
      code,
    }),
  )
  process.exit(0)
}

const self = fileURLToPath(import.meta.url)
const rows: Record<string, unknown>[] = []
for (const model of Object.keys(MODELS) as (keyof typeof MODELS)[]) {
  const modelMiB = (4 * MODELS[model]) / 2 ** 20
  for (const [codecName, codec] of Object.entries(CODECS)) {
    const boundMiB = payloadMaxBytes(layoutOf(MODELS[model]), codec) / 2 ** 20
    for (const which of CASES) {
      if (which.startsWith('huge') && codec.kind !== 'topk') continue
      const out = JSON.parse(
        execFileSync(process.execPath, [self, '--child', model, codecName, which], { encoding: 'utf8' }),
      ) as { payloadBytes: number; decodePeakMiB: number; cpuMs: number; code: string }
      rows.push({
        model,
        modelMiB: Number(modelMiB.toFixed(2)),
        codec: codecName,
        payloadBoundMiB: Number(boundMiB.toFixed(3)),
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
console.table(rows)
const result = {
  bench: 'admission',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() },
  note: 'decodePeakMiB: VmHWM after minus before one decodeContributionPayload call, in a fresh child per case',
  rows,
}
writeFileSync(new URL('./results/admission.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
