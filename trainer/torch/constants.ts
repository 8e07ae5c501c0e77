// Limits and defaults of the torch backend (the PyTorch worker process), each with its reason.
import { fileURLToPath } from 'node:url'

/** The worker script; it imports only its siblings in this folder (nets.py, framing.py, flat_state.py). */
export const TORCH_WORKER_SCRIPT = fileURLToPath(new URL('./worker.py', import.meta.url))
/** Bumped on any incompatible change to the requests or frames (framing.py PROTOCOL_VERSION). */
export const TORCH_PROTOCOL_VERSION = 1
/**
 * Largest frame either side accepts: one group of gpu256 U-Net tensors (65M float32, 262 MB) fits with
 * room; larger transfers (the dataset, the state) are split into several frames.
 */
export const TORCH_MAX_FRAME_BYTES = 1024 * 1024 * 1024
/** Training inputs are sent in frames of about this size, so no frame holds a whole large dataset. */
export const TORCH_DATA_CHUNK_BYTES = 64 * 1024 * 1024
/** Importing torch and initialising CUDA takes seconds, more on a loaded machine or a cold disk. */
export const TORCH_START_TIMEOUT_MS = 180_000
/**
 * Any single request (one step, an evaluation, a weight transfer). Generous, since a CPU-only worker
 * on a large config is slow, but finite: a hung worker becomes an error, never a hang.
 * COOP_TORCH_TIMEOUT_MS overrides it.
 */
export const TORCH_REQUEST_TIMEOUT_MS = 600_000
/** Probing a python3 (`worker.py --probe`: import torch, ask for CUDA). */
export const TORCH_PROBE_TIMEOUT_MS = 60_000
/** After dispose() closes its input, a worker that has not exited within this is killed. */
export const TORCH_EXIT_GRACE_MS = 5_000
/** How much of the worker's stderr an error message quotes (the end of a Python traceback). */
export const TORCH_STDERR_TAIL_BYTES = 4096
/** The pythons tried, in order, unless COOP_PYTHON names one: PATH's first, then Debian's (python3-torch). */
export const TORCH_PYTHON_CANDIDATES = ['python3', '/usr/bin/python3']
/** What to install, quoted by every "torch is missing" error. */
export const TORCH_INSTALL_HINT =
  'install PyTorch for python3: `apt-get install python3-torch` (Debian/Ubuntu, CPU only), or `pip install torch` ' +
  '(CUDA wheels for NVIDIA GPUs; see https://pytorch.org/get-started/locally/); or set COOP_PYTHON to a python that has torch'
/** Samples per DDIM request (as trainer/sample.ts's chunks): bounds the worker's memory on big grids. */
export const TORCH_SAMPLE_CHUNK = 64
