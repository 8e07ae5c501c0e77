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
