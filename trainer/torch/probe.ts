// Finds a python3 that can run the torch worker: COOP_PYTHON when set, else python3 on PATH, then
// Debian's /usr/bin/python3 (where `apt-get install python3-torch` puts torch). Each candidate runs
// `worker.py --probe`, which imports torch the way the worker will and says whether CUDA is usable.

export type { TorchRuntime } from './selection.ts'
import { execFile } from 'node:child_process'
import type { TorchRuntime } from './selection.ts'
import {
  TORCH_PROBE_TIMEOUT_MS,
  TORCH_PROTOCOL_VERSION,
  TORCH_PYTHON_CANDIDATES,
  TORCH_WORKER_SCRIPT,
} from './constants.ts'

/** What one candidate python said, or why it cannot run the worker. */
export type ProbeResult = { python: string; runtime: TorchRuntime } | { python: string; problem: string }

interface ProbeOutput {
  protocol: number
  torch: string
  python: string
  cuda: boolean
  cudaDevice: string | null
  threads: number
}

function firstLine(text: string): string {
  const lines = text.trim().split('\n')
  // A Python traceback's last line is the error ("ModuleNotFoundError: No module named 'torch'").
  return (lines[lines.length - 1] ?? '').trim()
}

function threadsFor(torchDefault: number): number {
  const value = Number(process.env.COOP_TORCH_THREADS)
  return Number.isInteger(value) && value > 0 ? value : torchDefault
}

function deviceFor(cuda: boolean): { device: 'cpu' | 'cuda' } | { problem: string } {
  const wanted = process.env.COOP_TORCH_DEVICE
  if (wanted === 'cpu') return { device: 'cpu' }
  if (wanted === 'cuda' && !cuda) return { problem: 'COOP_TORCH_DEVICE=cuda but torch sees no CUDA device' }
  return { device: cuda ? 'cuda' : 'cpu' }
}

export function probePython(python: string): Promise<ProbeResult> {
  return new Promise((resolve) => {
    execFile(
      python,
      ['-B', TORCH_WORKER_SCRIPT, '--probe', '--max-frame-bytes', '1'],
      { timeout: TORCH_PROBE_TIMEOUT_MS, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
      (error, stdout, stderr) => {
        if (error !== null) {
          const code = (error as NodeJS.ErrnoException).code
          if (code === 'ENOENT') return resolve({ python, problem: 'not found' })
          if (error.killed)
            return resolve({ python, problem: `no answer within ${TORCH_PROBE_TIMEOUT_MS / 1000} s` })
          return resolve({ python, problem: firstLine(String(stderr)) || error.message })
        }
        let output: ProbeOutput
        try {
          output = JSON.parse(String(stdout).trim().split('\n').pop() ?? '') as ProbeOutput
        } catch {
          return resolve({ python, problem: 'the worker probe printed no JSON' })
        }
        if (output.protocol !== TORCH_PROTOCOL_VERSION)
          return resolve({
            python,
            problem: `worker protocol ${output.protocol}, expected ${TORCH_PROTOCOL_VERSION}`,
          })
        const device = deviceFor(output.cuda)
        if ('problem' in device) return resolve({ python, problem: device.problem })
        resolve({
          python,
          runtime: {
            python,
            pythonVersion: output.python,
            torch: output.torch,
            cuda: output.cuda,
            cudaDevice: output.cudaDevice,
            device: device.device,
            threads: threadsFor(output.threads),
          },
        })
      },
    )
  })
}

const cache = new Map<string, Promise<ProbeResult[]>>()

/** Probes the candidates once per process (in order, until one has CUDA); later calls reuse the answers. */
export function probeTorch(): Promise<ProbeResult[]> {
  const explicit = process.env.COOP_PYTHON
  const candidates =
    explicit !== undefined && explicit !== '' ? [explicit] : [...new Set(TORCH_PYTHON_CANDIDATES)]
  const key = JSON.stringify([
    candidates,
    process.env.COOP_TORCH_DEVICE ?? '',
    process.env.COOP_TORCH_THREADS ?? '',
  ])
  const cached = cache.get(key)
  if (cached !== undefined) return cached
  const probing = (async () => {
    const results: ProbeResult[] = []
    for (const python of candidates) {
      const result = await probePython(python)
      results.push(result)
      // The first python with torch and CUDA is the best there is: no need to start the others.
      if ('runtime' in result && result.runtime.cuda) break
    }
    return results
  })()
  cache.set(key, probing)
  return probing
}

/** One line that says what each candidate lacked, for errors and the backend log line. */
export function describeProbes(results: readonly ProbeResult[]): string {
  return results
    .map((r) =>
      'runtime' in r
        ? `${r.python}: torch ${r.runtime.torch}, ${r.runtime.cuda ? `CUDA (${r.runtime.cudaDevice})` : 'no CUDA'}`
        : `${r.python}: ${r.problem}`,
    )
    .join('; ')
}
