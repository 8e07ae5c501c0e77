"""PyTorch reference for bench/train.bench.ts and bench/gpu.bench.ts: the models of trainer/ as
trainer/torch/nets.py defines them (the one Python definition, shared with the `--backend torch` worker),
trained the way a PyTorch user would write it: torch.optim.Adam, clip_grad_norm_, a foreach EMA, a fixed
batch already on the device, no host round-trip inside the timed loop.

Benchmarks only. Run by the TypeScript harnesses as
  python3 bench/reference/train_step.py --config <resolved-config.json> --phase unet --threads 2 [--device cuda]
and prints one JSON line {"phase", "device", "threads", "batch", "steps", "stepMs", "imgPerSec", "imgPerCpuSec", "torch",
"parameters"}; imgPerCpuSec uses this process's CPU time, which a shared machine's load disturbs far less.
"""

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "trainer", "torch"))
import nets  # noqa: E402  (the worker's model definition)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="resolved CoopConfig as JSON (from configs/)")
    parser.add_argument("--phase", choices=["unet", "autoencoder"], required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0, help="time about this long instead of --steps steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the worker does: fixed shapes
    generator = torch.Generator().manual_seed(0)
    size, z = cfg["image"]["size"], cfg["autoencoder"]["latentChannels"]
    latent = size // 2 ** (len(cfg["autoencoder"]["channels"]) - 1)
    params = nets.create_params(cfg, args.phase, device=device)
    trainable = [params.tensors[n].requires_grad_() for n in params.trainable_names()]

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    if args.phase == "unet":
        batch, lr = cfg["unet"]["batchSize"], cfg["unet"]["lr"]
        x0, noise = randn(batch, z, latent, latent), randn(batch, z, latent, latent)
        t = torch.randint(0, cfg["diffusion"]["timesteps"], (batch,), generator=generator).to(device)
        labels = torch.randint(0, len(cfg["classes"]) + 1, (batch,), generator=generator).to(device)
        abar = torch.rand(batch, generator=generator).to(device)
        weights = torch.ones(batch, device=device)

        def loss_fn():
            return nets.diffusion_loss(params, cfg, x0, noise, t, labels, abar.sqrt(), (1 - abar).sqrt(), weights)

    else:
        batch, lr = cfg["autoencoder"]["batchSize"], cfg["autoencoder"]["lr"]
        x = torch.rand(batch, 3, size, size, generator=generator).to(device) * 2 - 1
        noise = randn(batch, z, latent, latent)

        def loss_fn():
            return nets.autoencoder_loss(params, cfg["autoencoder"], x, noise)[0]

    optimizer = torch.optim.Adam(trainable, lr=lr)
    ema = [p.detach().clone() for p in trainable]

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.99)
            torch._foreach_add_(ema, [p.detach() for p in trainable], alpha=0.01)
        return loss

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    loss = step()
    if not math.isfinite(loss.item()):
        raise SystemExit("reference loss is not finite")
    synchronize()
    steps = args.steps
    if args.seconds > 0:
        # A short calibration block sets the count, so the timed loop itself never syncs.
        calibration = time.perf_counter()
        for _ in range(5):
            step()
        synchronize()
        per_step = (time.perf_counter() - calibration) / 5
        steps = max(5, min(2000, round(args.seconds / per_step)))
    started = time.perf_counter()
    cpu_started = time.process_time()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - started) / steps
    cpu_seconds = (time.process_time() - cpu_started) / steps
    print(
        json.dumps(
            {
                "phase": args.phase,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "threads": args.threads,
                "batch": batch,
                "steps": steps,
                "stepMs": seconds * 1000,
                "imgPerSec": batch / seconds,
                "imgPerCpuSec": batch / cpu_seconds,
                "torch": torch.__version__,
                "parameters": sum(p.numel() for p in trainable),
            }
        )
    )


if __name__ == "__main__":
    main()
