// The torch runtime the torch-backend tests use: the first python3 with torch, on the CPU with one
// thread (tests run two files at a time on two cores; CUDA's TF32 convolutions would also loosen parity).
// Without a python that has torch this throws: CI installs python3-torch, so these tests never skip.
import { describeProbes, probeTorch } from '../../trainer/torch/probe.ts'
import type { TorchRuntime } from '../../trainer/torch/probe.ts'
import { TORCH_INSTALL_HINT } from '../../trainer/torch/constants.ts'

export async function torchRuntime(): Promise<TorchRuntime> {
  const results = await probeTorch()
  for (const result of results)
    if ('runtime' in result) return { ...result.runtime, device: 'cpu', threads: 1 }
  throw new Error(
    `the torch backend tests need a python3 with torch (${describeProbes(results)}); ${TORCH_INSTALL_HINT}`,
  )
}

/**
 * Upper bound for one torch-backend test: each starts worker processes, and importing torch alone took
 * 10 s per worker at load 20 on this 2-core machine (under 2 s when idle). A bound, not a speed claim.
 */
export const TORCH_TEST_TIMEOUT_MS = 900_000
