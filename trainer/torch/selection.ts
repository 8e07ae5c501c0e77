// Which torch runtime, if any, initBackend chose: the one piece of the torch backend that
// trainer/session.ts and trainer/sample.ts consult, kept free of Node-only imports (child processes,
// paths) so that those modules stay loadable where the torch backend cannot exist.

export interface TorchRuntime {
  /** The python command the worker runs with. */
  python: string
  pythonVersion: string
  torch: string
  cuda: boolean
  /** The first CUDA device's name, when there is one. */
  cudaDevice: string | null
  /** Where sessions compute: COOP_TORCH_DEVICE (cpu|cuda) when set, else CUDA when present. */
  device: 'cpu' | 'cuda'
  /**
   * CPU threads per worker: COOP_TORCH_THREADS when set, else torch's own default (its count of physical
   * cores). Not every logical core: on a busy machine OpenMP threads that outnumber the free cores spin
   * and wait on each other (measured here, load 20 on 2 cores: 2 threads ran 10x slower than 1).
   */
  threads: number
}

let selected: TorchRuntime | undefined

/** Set by initBackend: the runtime sessions train with, or undefined when a tfjs backend was chosen. */
export function selectTorchRuntime(runtime: TorchRuntime | undefined): void {
  selected = runtime
}

/** The torch runtime initBackend chose, if it chose torch (createTrainerSession dispatches on it). */
export function selectedTorchRuntime(): TorchRuntime | undefined {
  return selected
}
