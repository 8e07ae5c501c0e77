"""PyTorch reference for bench/train.bench.ts: the same autoencoder and U-Net as trainer/ (same
config, same layer sequence and widths, same batch), one training step = forward, backward,
global-norm gradient clipping, Adam and an EMA update, timed on the CPU.

Benchmarks only: the project never depends on PyTorch. Run by the TypeScript harness as
  /usr/bin/python3 bench/reference/train_step.py --config <resolved-config.json> --phase unet --threads 2
and prints one JSON line {"phase", "threads", "batch", "stepMs", "imgPerSec", "imgPerCpuSec", "torch",
"parameters"}; imgPerCpuSec uses this process's CPU time, which a shared machine's load disturbs far less.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupNorm(nn.GroupNorm):
    def __init__(self, groups, channels):
        super().__init__(groups, channels, eps=1e-5)


class ResBlock(nn.Module):
    # trainer/nn.ts resBlock: GN, SiLU, conv (+ projected embedding), GN, SiLU, conv, 1x1 skip on width change.
    def __init__(self, in_ch, out_ch, groups, emb_dim=None):
        super().__init__()
        self.norm1 = GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch) if emb_dim else None
        self.norm2 = GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x, emb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class SelfAttention(nn.Module):
    # trainer/nn.ts selfAttention: GN, one qkv projection, multi-head softmax attention, output projection.
    def __init__(self, ch, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm(groups, ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)

    def forward(self, x):
        n, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [n, hw, c]
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        split = lambda t: t.reshape(n, h * w, self.heads, c // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // self.heads), dim=-1)
        out = (scores @ v).transpose(1, 2).reshape(n, h * w, c)
        return x + self.proj(out).transpose(1, 2).reshape(n, c, h, w)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class UNet(nn.Module):
    # trainer/unet.ts unetForward, level by level.
    def __init__(self, cfg):
        super().__init__()
        u, z = cfg["unet"], cfg["autoencoder"]["latentChannels"]
        ch, g, d = u["channels"], u["groups"], u["timeEmbedDim"]
        self.cfg = u
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.class_embedding = nn.Embedding(len(cfg["classes"]) + 1, d)
        self.conv_in = nn.Conv2d(z, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        skip_ch = [ch[0]]
        prev = ch[0]
        for level, c in enumerate(ch):
            blocks = nn.ModuleList()
            for _ in range(u["resBlocksPerLevel"]):
                blocks.append(ResBlock(prev, c, g, d))
                prev = c
                skip_ch.append(c)
            down = nn.Conv2d(c, c, 3, stride=2, padding=1) if level < len(ch) - 1 else None
            if down is not None:
                skip_ch.append(c)
            self.down.append(nn.ModuleDict({"res": blocks, **({"down": down} if down is not None else {})}))
        self.mid1 = ResBlock(prev, prev, g, d)
        self.attn = SelfAttention(prev, u["attentionHeads"], g) if u["attention"] else None
        self.mid2 = ResBlock(prev, prev, g, d)
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch))):
            c = ch[level]
            blocks = nn.ModuleList()
            for _ in range(u["resBlocksPerLevel"] + 1):
                blocks.append(ResBlock(prev + skip_ch.pop(), c, g, d))
                prev = c
            # As in trainer/unet.ts: the upsampling conv already narrows to the next level's width.
            up = nn.Conv2d(c, ch[level - 1], 3, padding=1) if level > 0 else None
            if up is not None:
                prev = ch[level - 1]
            self.up.append(nn.ModuleDict({"res": blocks, **({"up": up} if up is not None else {})}))
        self.norm_out = GroupNorm(g, prev)
        self.conv_out = nn.Conv2d(prev, z, 3, padding=1)

    def forward(self, x, t, labels):
        emb = self.time_mlp(timestep_embedding(t, self.cfg["timeEmbedDim"])) + self.class_embedding(labels)
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for block in level["res"]:
                h = block(h, emb)
                skips.append(h)
            if "down" in level:
                h = level["down"](h)
                skips.append(h)
        h = self.mid1(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, emb)
        for level in self.up:
            for block in level["res"]:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if "up" in level:
                h = level["up"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    # trainer/autoencoder.ts encode/decode.
    def __init__(self, cfg):
        super().__init__()
        a = cfg["autoencoder"]
        ch, g, z = a["channels"], a["groups"], a["latentChannels"]
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.downs = nn.ModuleList(nn.Conv2d(ch[i - 1], ch[i], 3, stride=2, padding=1) for i in range(1, len(ch)))
        self.enc_mid = ResBlock(ch[-1], ch[-1], g)
        self.enc_norm = GroupNorm(g, ch[-1])
        self.enc_out = nn.Conv2d(ch[-1], 2 * z, 3, padding=1)
        self.dec_in = nn.Conv2d(z, ch[-1], 3, padding=1)
        self.dec_mid = ResBlock(ch[-1], ch[-1], g)
        self.ups = nn.ModuleList(nn.Conv2d(ch[i], ch[i - 1], 3, padding=1) for i in range(len(ch) - 1, 0, -1))
        self.up_norms = nn.ModuleList(GroupNorm(g, ch[i - 1]) for i in range(len(ch) - 1, 0, -1))
        self.dec_out = nn.Conv2d(ch[0], 3, 3, padding=1)
        self.z = z

    def forward(self, x, noise):
        h = self.conv_in(x)
        for down in self.downs:
            h = down(F.silu(h))
        moments = self.enc_out(F.silu(self.enc_norm(self.enc_mid(h))))
        mean, logvar = moments[:, : self.z], moments[:, self.z :].clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * noise
        h = self.dec_mid(self.dec_in(z))
        for up, norm in zip(self.ups, self.up_norms):
            h = F.silu(norm(up(F.interpolate(h, scale_factor=2, mode="nearest"))))
        return self.dec_out(h), mean, logvar


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="resolved CoopConfig as JSON (from configs/)")
    parser.add_argument("--phase", choices=["unet", "autoencoder"], required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size, z = cfg["image"]["size"], cfg["autoencoder"]["latentChannels"]
    latent = size // 2 ** (len(cfg["autoencoder"]["channels"]) - 1)
    if args.phase == "unet":
        model, batch, lr = UNet(cfg), cfg["unet"]["batchSize"], cfg["unet"]["lr"]
        x0 = torch.randn(batch, z, latent, latent)
        noise = torch.randn_like(x0)
        t = torch.randint(0, cfg["diffusion"]["timesteps"], (batch,))
        labels = torch.randint(0, len(cfg["classes"]) + 1, (batch,))
        abar = torch.rand(batch)[:, None, None, None]

        def loss_fn():
            xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
            return F.mse_loss(model(xt, t, labels), noise)

    else:
        model, batch, lr = Autoencoder(cfg), cfg["autoencoder"]["batchSize"], cfg["autoencoder"]["lr"]
        x = torch.rand(batch, 3, size, size) * 2 - 1
        noise = torch.randn(batch, z, latent, latent)
        kl_weight = cfg["autoencoder"]["klWeight"]

        def loss_fn():
            recon, mean, logvar = model(x, noise)
            kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()
            return F.mse_loss(recon, x) + kl_weight * kl

    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    ema = [p.detach().clone() for p in params]

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.99)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=0.01)
        return loss.item()

    for _ in range(3):
        step()
    started = time.perf_counter()
    cpu_started = time.process_time()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - started) / args.steps
    cpu_seconds = (time.process_time() - cpu_started) / args.steps
    print(
        json.dumps(
            {
                "phase": args.phase,
                "threads": args.threads,
                "batch": batch,
                "stepMs": seconds * 1000,
                "imgPerSec": batch / seconds,
                "imgPerCpuSec": batch / cpu_seconds,
                "torch": torch.__version__,
                "parameters": sum(p.numel() for p in params),
            }
        )
    )


if __name__ == "__main__":
    main()
