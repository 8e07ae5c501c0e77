"""flat_state.py: Adam with global-norm clipping and the EMA equal trainer/optim.ts's per-tensor formulas
(written out here in float64), and a non-finite step leaves every buffer as it was."""

import math
import unittest

import torch

from flat_state import FlatState
from tests.helpers import HYPER


def reference_adam(params, grads, m, v, t, hyper):
    """trainer/kernels/optimizer.ts adamKernel, per tensor, in float64."""
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))
    scale = hyper["gradClipNorm"] / norm if norm > hyper["gradClipNorm"] else 1.0
    step_size = hyper["lr"] / (1 - hyper["beta1"] ** t)
    second = 1 / (1 - hyper["beta2"] ** t)
    out = {}
    for name, p in params.items():
        g = grads[name].double() * scale
        m[name] = hyper["beta1"] * m[name] + (1 - hyper["beta1"]) * g
        v[name] = hyper["beta2"] * v[name] + (1 - hyper["beta2"]) * g * g
        out[name] = p.double() - step_size * m[name] / (torch.sqrt(v[name] * second) + hyper["epsilon"])
    return out


class FlatStateTest(unittest.TestCase):
    def make(self):
        layout = [("a.weight", [2, 3]), ("b.bias", [4]), ("stats.latent_rms", [1])]
        state = FlatState(layout, {"a.weight", "b.bias"}, torch.device("cpu"))
        torch.manual_seed(0)
        with torch.no_grad():
            state.param.copy_(torch.randn(state.param.numel()))
            state.ema.copy_(state.param)
        return state

    def test_three_steps_match_the_reference_adam_with_and_without_clipping(self):
        state = self.make()
        params = {n: state.leaves[n].detach().clone() for n in state.trainable_names}
        m = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
        v = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
        for t, size in [(1, 0.01), (2, 5.0), (3, 0.3)]:  # the middle step's norm is clipped
            grads = {n: torch.randn_like(p) * size for n, p in params.items()}
            ok, _ = state.step([grads[n] for n in state.trainable_names], torch.tensor(1.0), t, HYPER)
            self.assertTrue(bool(ok))
            params = {n: p.float() for n, p in reference_adam(params, grads, m, v, t, HYPER).items()}
            for name in state.trainable_names:
                self.assertTrue(torch.allclose(state.leaves[name], params[name], rtol=1e-5, atol=1e-7), name)

    def test_ema_mixes_every_tensor_including_buffers(self):
        state = self.make()
        before = state.ema.clone()
        with torch.no_grad():
            state.param.add_(1.0)
        state.update_ema(0.9, torch.tensor(True))
        self.assertTrue(torch.allclose(state.ema, 0.9 * before + 0.1 * state.param, atol=1e-6))

    def test_a_non_finite_loss_or_gradient_changes_nothing_until_recover(self):
        state = self.make()
        grads = [torch.randn(2, 3), torch.randn(4)]
        state.step(grads, torch.tensor(0.5), 1, HYPER)
        snapshot = [x.clone() for x in (state.param, state.m, state.v, state.ema)]
        for loss, bad_grads in [
            (torch.tensor(float("nan")), grads),
            (torch.tensor(0.5), [torch.full((2, 3), float("inf")), torch.randn(4)]),
        ]:
            ok, _ = state.step(bad_grads, loss, 2, HYPER)
            state.update_ema(0.5, ok)
            self.assertFalse(bool(ok))
            for a, b in zip((state.param, state.m, state.v, state.ema), snapshot):
                self.assertTrue(torch.equal(a, b))
        # Still unhealthy: even a good step is a no-op until the worker has reported the failure.
        ok, _ = state.step(grads, torch.tensor(0.5), 2, HYPER)
        self.assertFalse(bool(ok))
        self.assertTrue(torch.equal(state.param, snapshot[0]))
        state.recover()
        ok, _ = state.step(grads, torch.tensor(0.5), 2, HYPER)
        self.assertTrue(bool(ok))
        self.assertFalse(torch.equal(state.param, snapshot[0]))


if __name__ == "__main__":
    unittest.main()
