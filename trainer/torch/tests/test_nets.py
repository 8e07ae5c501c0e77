"""nets.py: the layout conversion, TensorFlow's 'same' padding, and the blocks, checked against direct
NHWC computations written independently of nets.py (the cross-backend parity test is in TypeScript)."""

import math
import unittest

import torch
import torch.nn.functional as F

import nets
from tests.helpers import TINY


def conv_nhwc_same(x, kernel_hwio, bias, stride):
    """Convolution over NHWC with an HWIO kernel and TensorFlow 'same' padding, by explicit sums."""
    n, h, w, c = x.shape
    kh, kw, _, out = kernel_hwio.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + kh - h, 0)
    pad_w = max((out_w - 1) * stride + kw - w, 0)
    padded = torch.zeros(n, h + pad_h, w + pad_w, c, dtype=x.dtype)
    padded[:, pad_h // 2 : pad_h // 2 + h, pad_w // 2 : pad_w // 2 + w] = x
    y = torch.zeros(n, out_h, out_w, out, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            y[:, i, j] = torch.einsum("nhwc,hwco->no", patch, kernel_hwio) + bias
    return y


class LayoutTest(unittest.TestCase):
    def test_conv_kernels_convert_both_ways_and_nothing_else_changes(self):
        hwio = torch.randn(3, 3, 5, 7)
        self.assertEqual(list(nets.to_torch_layout(hwio).shape), [7, 5, 3, 3])
        self.assertTrue(torch.equal(nets.to_tfjs_layout(nets.to_torch_layout(hwio)), hwio))
        self.assertEqual(nets.torch_shape([3, 3, 5, 7]), [7, 5, 3, 3])
        self.assertEqual(nets.tfjs_shape([7, 5, 3, 3]), [3, 3, 5, 7])
        linear = torch.randn(4, 6)
        self.assertIs(nets.to_torch_layout(linear), linear)

    def test_conv_with_converted_kernels_equals_tensorflow_same_convolution(self):
        torch.manual_seed(0)
        for size, kernel, stride in [(8, 3, 1), (8, 3, 2), (7, 3, 2), (6, 1, 1)]:
            with self.subTest(size=size, kernel=kernel, stride=stride):
                x = torch.randn(2, size, size, 3, dtype=torch.float64)
                hwio = torch.randn(kernel, kernel, 3, 4, dtype=torch.float64)
                bias = torch.randn(4, dtype=torch.float64)
                p = nets.Params({"c.weight": nets.to_torch_layout(hwio), "c.bias": bias})
                ours = nets.conv(p, "c", x.permute(0, 3, 1, 2), 4, kernel=kernel, stride=stride).permute(0, 2, 3, 1)
                self.assertTrue(torch.allclose(ours, conv_nhwc_same(x, hwio, bias, stride), atol=1e-10))

    def test_linear_weights_are_in_features_by_out_features(self):
        w = torch.randn(3, 5)
        b = torch.randn(5)
        x = torch.randn(2, 3)
        self.assertTrue(torch.allclose(nets.linear(nets.Params({"l.weight": w, "l.bias": b}), "l", x, 5), x @ w + b))


class BlocksTest(unittest.TestCase):
    def test_timestep_embedding_is_float64_sin_cos_rounded_once(self):
        t = torch.tensor([0, 1, 999])
        emb = nets.timestep_embedding(t, 8)
        for row, step in enumerate([0, 1, 999]):
            for i in range(4):
                frequency = math.exp((-math.log(10000) * i) / 4)
                self.assertEqual(emb[row, i].item(), torch.tensor(math.sin(step * frequency)).float().item())
                self.assertEqual(emb[row, 4 + i].item(), torch.tensor(math.cos(step * frequency)).float().item())

    def test_attention_tokens_are_row_major_positions_and_match_explicit_softmax(self):
        torch.manual_seed(1)
        c, heads = 8, 2
        p = nets.Params(create=True)
        x = torch.randn(2, c, 3, 4)
        nets.self_attention(p, "a", x, heads, 2)
        p.tensors["a.proj.weight"] = torch.randn(c, c)  # zero-initialised: make the branch visible
        ours = nets.self_attention(p, "a", x, heads, 2)
        # Independently, in NHWC: tokens are (h, w) positions in row-major order.
        normed = F.group_norm(x, 2, p.tensors["a.norm.weight"], p.tensors["a.norm.bias"], 1e-5)
        tokens = normed.permute(0, 2, 3, 1).reshape(2, 12, c)
        qkv = tokens @ p.tensors["a.qkv.weight"] + p.tensors["a.qkv.bias"]
        q, k, v = (qkv[..., i * c : (i + 1) * c].reshape(2, 12, heads, c // heads).transpose(1, 2) for i in range(3))
        attended = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), -1) @ v
        merged = attended.transpose(1, 2).reshape(2, 12, c) @ p.tensors["a.proj.weight"] + p.tensors["a.proj.bias"]
        expected = x + merged.reshape(2, 3, 4, c).permute(0, 3, 1, 2)
        self.assertTrue(torch.allclose(ours, expected, atol=1e-5))

    def test_models_have_trainer_names_and_start_as_identity_where_zero_initialised(self):
        unet = nets.create_params(TINY, "unet")
        ae = nets.create_params(TINY, "autoencoder")
        self.assertEqual(len(unet.names()), 111)
        self.assertEqual(len(ae.names()), 39)
        self.assertEqual(list(unet.tensors["class_embedding.weight"].shape), [4, 32])
        self.assertEqual(list(unet.tensors["down.0.downsample.weight"].shape), [16, 16, 3, 3])
        self.assertEqual(ae.trainable_names(), [n for n in ae.names() if n != "stats.latent_rms"])
        x = torch.randn(2, 4, 4, 4)
        out = nets.unet_forward(unet, TINY, x, torch.tensor([3, 900]), torch.tensor([0, 3]))
        self.assertTrue(torch.equal(out, torch.zeros_like(out)))  # conv_out is zero-initialised

    def test_v_target_and_min_snr_weights_enter_the_loss_as_given(self):
        torch.manual_seed(2)
        cfg = dict(TINY, diffusion=dict(TINY["diffusion"], prediction="v"))
        p = nets.create_params(cfg, "unet")
        x0, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
        a, b = torch.tensor([0.9, 0.5]), torch.tensor([math.sqrt(1 - 0.81), math.sqrt(0.75)])
        t, labels = torch.tensor([10, 500]), torch.tensor([1, 3])
        # Zero output: the loss is the target's mean square, weighted per sample.
        target = noise * a[:, None, None, None] - x0 * b[:, None, None, None]
        per_sample = (target**2).mean(dim=(1, 2, 3))
        weights = torch.tensor([0.25, 2.0])
        loss = nets.diffusion_loss(p, cfg, x0, noise, t, labels, a, b, weights)
        self.assertAlmostEqual(loss.item(), (per_sample * weights).mean().item(), places=5)
        self.assertAlmostEqual(nets.diffusion_loss(p, cfg, x0, noise, t, labels, a, b).item(), per_sample.mean().item(), places=5)


if __name__ == "__main__":
    unittest.main()
