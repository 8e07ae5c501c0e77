// Limits and defaults for backend selection and the wasm training kernels.

/**
 * The order `auto` tries backends in: fastest first, per the issue; `cpu` is the last resort. `torch` (the
 * PyTorch worker) is first, and `auto` takes it only where torch sees a CUDA device (measured ~1x PyTorch).
 */
export const AUTO_BACKEND_ORDER = ['torch', 'tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const

/**
 * Backend names a user may pass to `--backend`; `tensorflow` means tfjs-node-gpu if it sees a GPU, else
 * tfjs-node; `torch` trains in a PyTorch worker process (CUDA when present, else CPU).
 */
export const REQUESTED_BACKENDS = ['auto', 'tensorflow', 'wasm', 'cpu', 'webgpu', 'torch'] as const

/**
 * Where Linux's NVIDIA driver lists the GPUs it manages. tfjs-node-gpu silently falls back to its CPU
 * kernels when no GPU is usable, so "loads and sees a GPU" is checked here rather than assumed.
 */
export const NVIDIA_GPU_PROC_DIR = '/proc/driver/nvidia/gpus'

/**
 * WebGPU dispatches recorded before tfjs submits them (its default is 15). Larger batches cut host-side
 * submit cost (the shared GPU notes measured 1.3x from this alone); memory freed within a batch is reused
 * only after the submit. Override with COOP_WEBGPU_SUBMIT_BATCH.
 */
export const WEBGPU_SUBMIT_BATCH = 256
