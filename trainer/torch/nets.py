"""The autoencoder and U-Net of trainer/ in PyTorch: the one Python definition of both models.

Mirrors trainer/nn.ts, trainer/autoencoder.ts, trainer/unet.ts and the loss and sampling maths of
trainer/diffusion.ts, block by block and name by name, so that the same named weights give the same
outputs in both backends (test/trainer/torch-parity.test.ts checks losses and gradients).

Layout: tensors cross the boundary in tfjs layout, as model.safetensors stores them: convolution
kernels HWIO [kh, kw, in, out], linear weights [in, out]. Inside, convolution kernels are OIHW as
torch.conv2d wants them (`to_torch_layout` / `to_tfjs_layout` convert 4-D tensors; nothing else is
converted). Linear weights stay [in, out] and are applied as x @ W. Activations are NCHW; the channel
order of every concatenation and split is the same as in tfjs's NHWC, so the same weights mean the same thing.

Used by trainer/torch/worker.py (the `--backend torch` worker) and bench/reference/train_step.py.
"""

import math

import torch
import torch.nn.functional as F

# trainer/constants.ts GROUPNORM_EPSILON, LOGVAR_MIN, LOGVAR_MAX: the worker checks at start-up that
# the TypeScript side sends the same values (worker.py `check_constants`).
GROUPNORM_EPSILON = 1e-5
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0

LATENT_RMS_NAME = "stats.latent_rms"
CLASS_EMBEDDING_NAME = "class_embedding.weight"

# torch >= 2.0 has a fused attention kernel (flash / memory-efficient on CUDA); 1.13 gets the explicit maths.
_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def to_torch_layout(tensor):
    """tfjs layout -> torch layout: HWIO convolution kernels become OIHW; other tensors are unchanged."""
    return tensor.permute(3, 2, 0, 1).contiguous() if tensor.dim() == 4 else tensor


def to_tfjs_layout(tensor):
    """torch layout -> tfjs layout (the inverse of `to_torch_layout`)."""
    return tensor.permute(2, 3, 1, 0).contiguous() if tensor.dim() == 4 else tensor


def torch_shape(tfjs_shape):
    shape = list(tfjs_shape)
    return [shape[3], shape[2], shape[0], shape[1]] if len(shape) == 4 else shape


def tfjs_shape(shape_in_torch):
    shape = list(shape_in_torch)
    return [shape[2], shape[3], shape[1], shape[0]] if len(shape) == 4 else shape


class Params:
    """Named parameters in torch layout, looked up by the forward functions (trainer/nn.ts ParamStore).

    With `create` set, a missing parameter is created where the forward pass first asks for it
    (normal(0, 1/fan_in), zeros or ones, as nn.ts initialises them, from torch's RNG: the values differ
    from tfjs's Rng, the names and shapes do not). The worker never creates: its weights come from the
    TypeScript side, so both backends start from the same numbers.
    """

    def __init__(self, tensors=None, create=False, device=None, generator=None, buffers=()):
        self.tensors = dict(tensors or {})
        self.create = create
        self.device = device
        self.generator = generator
        self.buffers = set(buffers)

    def get(self, name, shape, init, buffer=False):
        existing = self.tensors.get(name)
        if existing is not None:
            if list(existing.shape) != list(shape):
                raise ValueError(f"parameter {name} has shape {list(existing.shape)}, the model asks for {list(shape)}")
            return existing
        if not self.create:
            raise KeyError(f"parameter {name} does not exist")
        if init == "zeros":
            value = torch.zeros(shape, device=self.device)
        elif init == "ones":
            value = torch.ones(shape, device=self.device)
        else:
            value = torch.randn(shape, device=self.device, generator=self.generator) * init
        self.tensors[name] = value
        if buffer:
            self.buffers.add(name)
        return value

    def names(self):
        return sorted(self.tensors)

    def trainable_names(self):
        return [n for n in self.names() if n not in self.buffers]


def _fan_in_std(fan_in):
    return math.sqrt(1.0 / fan_in)


def _same_padding(size, kernel, stride):
    """TensorFlow's 'same' padding (before, after): asymmetric for a stride-2 conv on an even size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(p, name, x, out_channels, kernel=3, stride=1, zero_init=False):
    in_channels = x.shape[1]
    w = p.get(
        f"{name}.weight",
        (out_channels, in_channels, kernel, kernel),
        "zeros" if zero_init else _fan_in_std(kernel * kernel * in_channels),
    )
    b = p.get(f"{name}.bias", (out_channels,), "zeros")
    top, bottom = _same_padding(x.shape[2], kernel, stride)
    left, right = _same_padding(x.shape[3], kernel, stride)
    if top == bottom and left == right:
        return F.conv2d(x, w, b, stride=stride, padding=(top, left))
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=stride)


def linear(p, name, x, out_features, zero_init=False):
    in_features = x.shape[-1]
    w = p.get(f"{name}.weight", (in_features, out_features), "zeros" if zero_init else _fan_in_std(in_features))
    b = p.get(f"{name}.bias", (out_features,), "zeros")
    if x.dim() == 2:
        return torch.addmm(b, x, w)
    return torch.matmul(x, w) + b


def group_norm(p, name, x, groups):
    c = x.shape[1]
    gamma = p.get(f"{name}.weight", (c,), "ones")
    beta = p.get(f"{name}.bias", (c,), "zeros")
    return F.group_norm(x, groups, gamma, beta, GROUPNORM_EPSILON)


def upsample2x(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


def res_block(p, name, x, out_channels, groups, embedding=None):
    """nn.ts resBlock: GN, SiLU, conv (+ projected embedding), GN, SiLU, zero-initialised conv, 1x1 skip."""
    h = conv(p, f"{name}.conv1", F.silu(group_norm(p, f"{name}.norm1", x, groups)), out_channels)
    if embedding is not None:
        projected = linear(p, f"{name}.emb", F.silu(embedding), out_channels)
        h = h + projected[:, :, None, None]
    h = conv(p, f"{name}.conv2", F.silu(group_norm(p, f"{name}.norm2", h, groups)), out_channels, zero_init=True)
    skip = x if x.shape[1] == out_channels else conv(p, f"{name}.skip", x, out_channels, kernel=1)
    return skip + h


def self_attention(p, name, x, heads, groups):
    """nn.ts selfAttention: tokens in row-major (h, w) order, one qkv projection, softmax attention."""
    n, c, h, w = x.shape
    tokens = h * w
    head_dim = c // heads
    normalized = group_norm(p, f"{name}.norm", x, groups).flatten(2).transpose(1, 2).reshape(n * tokens, c)
    qkv = linear(p, f"{name}.qkv", normalized, 3 * c)

    def split(index):
        part = qkv[:, index * c : (index + 1) * c]
        return part.reshape(n, tokens, heads, head_dim).transpose(1, 2)

    q, k, v = split(0), split(1), split(2)
    if _HAS_SDPA:
        attended = F.scaled_dot_product_attention(q, k, v)
    else:
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)
    merged = attended.transpose(1, 2).reshape(n * tokens, c)
    projected = linear(p, f"{name}.proj", merged, c, zero_init=True)
    return x + projected.reshape(n, h, w, c).permute(0, 3, 1, 2)


def timestep_embedding(timesteps, dim):
    """Sinusoidal embedding computed in float64 and rounded once, as nn.ts does in JavaScript numbers."""
    half = dim // 2
    index = torch.arange(half, dtype=torch.float64, device=timesteps.device)
    frequency = torch.exp((-math.log(10000) * index) / half)
    angles = timesteps.to(torch.float64)[:, None] * frequency[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(torch.float32)


def null_class(cfg):
    return len(cfg["classes"])


def unet_forward(p, cfg, x, timesteps, labels):
    """unet.ts unetForward: the prediction (epsilon or v) for latents x [n, z, s, s]."""
    u = cfg["unet"]
    dim = u["timeEmbedDim"]
    emb = linear(p, "time_mlp.0", timestep_embedding(timesteps, dim), dim)
    emb = linear(p, "time_mlp.1", F.silu(emb), dim)
    # unet.ts multiplies a one-hot matrix by the table (its gradient is a matMul on every tfjs backend);
    # a lookup is the same numbers and the same gradient.
    table = p.get(CLASS_EMBEDDING_NAME, (len(cfg["classes"]) + 1, dim), 1.0)
    emb = emb + F.embedding(labels, table)

    channels = u["channels"]
    levels = len(channels)
    groups = u["groups"]
    h = conv(p, "conv_in", x, channels[0])
    skips = [h]
    for level in range(levels):
        for block in range(u["resBlocksPerLevel"]):
            h = res_block(p, f"down.{level}.res.{block}", h, channels[level], groups, emb)
            skips.append(h)
        if level < levels - 1:
            h = conv(p, f"down.{level}.downsample", h, channels[level], stride=2)
            skips.append(h)
    lowest = channels[-1]
    h = res_block(p, "mid.res.0", h, lowest, groups, emb)
    if u["attention"]:
        h = self_attention(p, "mid.attention", h, u["attentionHeads"], groups)
    h = res_block(p, "mid.res.1", h, lowest, groups, emb)
    for level in range(levels - 1, -1, -1):
        for block in range(u["resBlocksPerLevel"] + 1):
            h = res_block(p, f"up.{level}.res.{block}", torch.cat([h, skips.pop()], dim=1), channels[level], groups, emb)
        if level > 0:
            h = conv(p, f"up.{level}.upsample", upsample2x(h), channels[level - 1])
    h = F.silu(group_norm(p, "norm_out", h, groups))
    return conv(p, "conv_out", h, cfg["autoencoder"]["latentChannels"], zero_init=True)


def encode(p, ae, x):
    """autoencoder.ts encode: image [n, 3, S, S] -> posterior (mean, clamped logvar)."""
    channels = ae["channels"]
    h = conv(p, "encoder.conv_in", x, channels[0])
    for level in range(1, len(channels)):
        h = conv(p, f"encoder.down.{level}", F.silu(h), channels[level], stride=2)
    lowest = channels[-1]
    h = res_block(p, "encoder.mid", h, lowest, ae["groups"])
    moments = conv(p, "encoder.conv_out", F.silu(group_norm(p, "encoder.norm_out", h, ae["groups"])), 2 * ae["latentChannels"])
    z = ae["latentChannels"]
    return moments[:, :z], torch.clamp(moments[:, z:], LOGVAR_MIN, LOGVAR_MAX)


def decode(p, ae, z):
    """autoencoder.ts decode: latents [n, z, s, s] -> image [n, 3, S, S]."""
    channels = ae["channels"]
    h = conv(p, "decoder.conv_in", z, channels[-1])
    h = res_block(p, "decoder.mid", h, channels[-1], ae["groups"])
    for level in range(len(channels) - 1, 0, -1):
        h = conv(p, f"decoder.up.{level}", upsample2x(h), channels[level - 1])
        h = F.silu(group_norm(p, f"decoder.up.{level}.norm", h, ae["groups"]))
    return conv(p, "decoder.conv_out", h, 3)


def latent_rms(p):
    return p.get(LATENT_RMS_NAME, (1,), "ones", buffer=True)


def autoencoder_loss(p, ae, x, noise):
    """autoencoder.ts autoencoderLoss: (MSE + klWeight x KL, the batch RMS of the posterior mean)."""
    mean, logvar = encode(p, ae, x)
    z = mean + torch.exp(logvar * 0.5) * noise
    mse = torch.mean((decode(p, ae, z) - x) ** 2)
    kl = torch.mean(0.5 * ((mean * mean + torch.exp(logvar)) - (1 + logvar)))
    return mse + ae["klWeight"] * kl, torch.sqrt(torch.mean(mean * mean))


def reconstruction_mse(p, ae, x):
    mean, _ = encode(p, ae, x)
    return torch.mean((decode(p, ae, mean) - x) ** 2)


def encode_for_diffusion(p, ae, x):
    return encode(p, ae, x)[0] / latent_rms(p)


def decode_from_diffusion(p, ae, z):
    return decode(p, ae, z * latent_rms(p))


def _column(values):
    return values[:, None, None, None]


def diffusion_loss(p, cfg, x0, noise, timesteps, labels, sqrt_abar, sqrt_one_minus_abar, weights=None):
    """diffusion.ts loss: per-sample MSE to the target; `weights` (Min-SNR etc.) for training, None for eval.

    The per-sample coefficients come from the TypeScript side (schedule.ts and diffusion.ts lossWeights,
    float64 rounded to float32), so the schedule and the weighting have one definition.
    """
    xt = x0 * _column(sqrt_abar) + noise * _column(sqrt_one_minus_abar)
    predicted = unet_forward(p, cfg, xt, timesteps, labels)
    if cfg["diffusion"]["prediction"] == "epsilon":
        target = noise
    else:
        target = noise * _column(sqrt_abar) - x0 * _column(sqrt_one_minus_abar)
    per_sample = torch.mean((predicted - target) ** 2, dim=(1, 2, 3))
    if weights is None:
        return torch.mean(per_sample)
    return torch.mean(per_sample * weights)


def ddim_sample(p, cfg, x, labels, steps, guidance, guided):
    """diffusion.ts sample: deterministic DDIM (eta = 0) with classifier-free guidance.

    `x` is the starting noise [n, z, s, s]; `steps` is [(t, abar, abar_prev)] highest t first.
    """
    n = x.shape[0]
    null_labels = torch.full_like(labels, null_class(cfg))
    prediction = cfg["diffusion"]["prediction"]
    for t, abar, abar_prev in steps:
        if guided:
            both = unet_forward(
                p, cfg, torch.cat([x, x]), torch.full((2 * n,), t, device=x.device), torch.cat([labels, null_labels])
            )
            cond, uncond = both[:n], both[n:]
            output = uncond + (cond - uncond) * guidance
        else:
            output = unet_forward(p, cfg, x, torch.full((n,), t, device=x.device), labels)
        a, b = math.sqrt(abar), math.sqrt(1 - abar)
        if prediction == "epsilon":
            eps, x0 = output, (x - output * b) / a
        else:
            eps, x0 = x * b + output * a, x * a - output * b
        x = x0 * math.sqrt(abar_prev) + eps * math.sqrt(1 - abar_prev)
    return x


def _trace(p, cfg, phase):
    """Runs the forward pass once on the smallest valid input, as createUnet / createAutoencoder do."""
    with torch.no_grad():
        if phase == "unet":
            s = 2 ** (len(cfg["unet"]["channels"]) - 1)
            x = torch.zeros(1, cfg["autoencoder"]["latentChannels"], s, s)
            unet_forward(p, cfg, x, torch.zeros(1, dtype=torch.long), torch.full((1,), null_class(cfg)))
        else:
            ae = cfg["autoencoder"]
            side = 2 ** (len(ae["channels"]) - 1)
            mean, _ = encode(p, ae, torch.zeros(1, 3, side, side))
            decode(p, ae, mean)
            latent_rms(p)


def create_params(cfg, phase, device=None, seed=0):
    """A freshly initialised model (names and shapes as in trainer/, values from torch's RNG), for
    standalone use: the reference benchmark and the Python tests."""
    p = Params(create=True, generator=torch.Generator().manual_seed(seed))
    _trace(p, cfg, phase)
    return Params({name: t.to(device) for name, t in p.tensors.items()}, buffers=p.buffers)
