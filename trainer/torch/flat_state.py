"""A model's weights, Adam moments and EMA as flat float32 buffers, updated on the device.

trainer/optim.ts (Adam with global-norm clipping, EMA with warm-up) in a few whole-buffer kernels per step
instead of a dozen per tensor: every parameter is a view into one buffer, so the optimizer, the EMA and the
gradient norm each touch one contiguous tensor. The hyperparameters come from trainer/constants.ts through
the worker's `init_session` request; nothing here has its own copy.

A step never leaves the device: the loss is read one step later (worker.py). So that a non-finite loss
still means "this update was not applied" (as in trainer/session.ts), every update is guarded on the
device: `healthy` turns false at the first non-finite loss or gradient norm, and while it is false every
update (weights, moments, EMA, latent RMS) is a no-op, until the worker has reported the failure and
calls `recover()`.
"""

import torch


class FlatState:
    def __init__(self, layout, trainable, device):
        """`layout`: [(name, torch-layout shape)] sorted by name; `trainable`: the names Adam updates.

        Trainable tensors come first in the buffers (Adam works on that prefix); buffers (the latent RMS)
        after them; the EMA covers both, as trainer/optim.ts Ema does.
        """
        ordered = [entry for entry in layout if entry[0] in trainable] + [e for e in layout if e[0] not in trainable]
        self.names = [name for name, _ in layout]
        self.trainable_names = [name for name, _ in ordered if name in trainable]
        self.shapes = dict(layout)
        self.slices = {}
        offset = 0
        for name, shape in ordered:
            count = 1
            for d in shape:
                count *= d
            self.slices[name] = (offset, count)
            offset += count
        self.trainable_count = sum(self.slices[n][1] for n in self.trainable_names)
        self.device = device
        self.param = torch.zeros(offset, device=device)
        self.m = torch.zeros(self.trainable_count, device=device)
        self.v = torch.zeros(self.trainable_count, device=device)
        self.ema = torch.zeros(offset, device=device)
        self.healthy = torch.ones((), dtype=torch.bool, device=device)
        self.leaves = {name: self._view(self.param, name).detach().requires_grad_(name in trainable) for name in self.names}
        self.ema_views = {name: self._view(self.ema, name) for name in self.names}

    def _view(self, buffer, name):
        offset, count = self.slices[name]
        return buffer[offset : offset + count].view(self.shapes[name])

    def group(self, which):
        """Views of one group by name: 'param', 'ema', 'adam_m', 'adam_v' (moments: trainable names only)."""
        if which == "param":
            return {name: self._view(self.param, name) for name in self.names}
        if which == "ema":
            return dict(self.ema_views)
        buffer = self.m if which == "adam_m" else self.v
        return {name: self._view(buffer, name) for name in self.trainable_names}

    def step(self, grads, loss, t, hyper):
        """One Adam update (update count `t`, 1-based) from `grads` (tensors in trainable order); returns `ok`.

        m' = b1 m + (1-b1) g s,  v' = b2 v + (1-b2) (g s)^2,  p' = p - lr/(1-b1^t) m' / (sqrt(v'/(1-b2^t)) + eps),
        with s = clip / max(|g|, clip): trainer/kernels/optimizer.ts's formula and clipping rule.
        """
        with torch.no_grad():
            g = torch.cat([x.reshape(-1) for x in grads])
            norm = torch.linalg.vector_norm(g)
            ok = self.healthy & torch.isfinite(loss) & torch.isfinite(norm)
            self.healthy.copy_(ok)
            okf = ok.to(torch.float32)
            clip = hyper["gradClipNorm"]
            scale = torch.where(ok, clip / torch.clamp(norm, min=clip), torch.zeros_like(norm))
            g.mul_(scale).nan_to_num_(0.0, 0.0, 0.0)
            beta1, beta2 = hyper["beta1"], hyper["beta2"]
            one = torch.ones_like(okf)
            self.m.mul_(torch.where(ok, one * beta1, one)).add_(g, alpha=1 - beta1)
            self.v.mul_(torch.where(ok, one * beta2, one)).addcmul_(g, g, value=1 - beta2)
            step_size = hyper["lr"] / (1 - beta1**t)
            second_correction = 1 / (1 - beta2**t)
            denominator = torch.mul(self.v, second_correction).sqrt_().add_(hyper["epsilon"])
            update = torch.div(self.m, denominator).mul_(okf * -step_size)
            self.param[: self.trainable_count].add_(update)
            return ok, norm

    def update_ema(self, decay, ok):
        """shadow' = decay shadow + (1 - decay) param over every tensor; a no-op where `ok` is false."""
        with torch.no_grad():
            weight = torch.where(ok, torch.full_like(ok, 1 - decay, dtype=torch.float32), torch.zeros((), device=self.device))
            self.ema.lerp_(self.param, weight)

    def recover(self):
        """After a non-finite step was reported: later updates apply again."""
        self.healthy.fill_(True)
