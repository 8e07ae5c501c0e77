"""The `--backend torch` training worker: one phase of one peer's training, driven over stdin/stdout.

Started by trainer/torch/worker-process.ts as `python3 -B worker.py --device auto --threads N
--max-frame-bytes B`; it answers requests framed as in framing.py, one at a time, in order. It holds
the model, the optimizer state and the (already consented, already decoded) training inputs that the
session sent; it never opens a file, a socket or the store. Everything random (batch order, noise,
timesteps, class dropout) is drawn by the TypeScript session and sent with each step, so a torch run
and a tfjs run of the same seed see the same batches.

On CUDA a step is queued without waiting for it: the loss (and whether the update applied) is copied to
pinned memory behind the step and read when the next step has been queued, so the GPU never waits on
the host between steps. flat_state.py guards the updates so that a non-finite loss still leaves the
weights as they were before that step.

Anything written to stdout other than frames would corrupt the protocol, so stdout is taken for frames
at start-up and file descriptor 1 is pointed at stderr (for stray prints from libraries).
"""

import argparse
import math
import os
import sys
import traceback

import torch

import framing
import nets
from flat_state import FlatState

# Images per forward pass when encoding the dataset or evaluating (trainer/session.ts encodes in 64s).
CHUNK = 64
# Share of free GPU memory the training inputs may take before they are kept in host memory instead.
DATA_ON_DEVICE_SHARE = 0.5


def json_number(value):
    """JSON has no NaN or Infinity: non-finite numbers travel as the strings JavaScript's Number() reads."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class RequestError(Exception):
    """An expected failure, reported to the session with a code from trainer/errors.ts."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def pick_device(requested):
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise RuntimeError("CUDA was asked for but torch.cuda.is_available() is false")
    return torch.device("cpu")


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def check_constants(constants):
    ours = {"groupnormEpsilon": nets.GROUPNORM_EPSILON, "logvarMin": nets.LOGVAR_MIN, "logvarMax": nets.LOGVAR_MAX}
    for key, value in ours.items():
        if constants.get(key) != value:
            raise RequestError("INVALID_ARGUMENT", f"trainer constant {key} is {constants.get(key)} in TypeScript, {value} in nets.py")


class Session:
    """One phase's model, optimizer state and inputs on the device."""

    def __init__(self, device, header, tensors):
        self.device = device
        self.config = header["config"]
        self.phase = header["phase"]
        self.hyper = header["hyper"]
        check_constants(header["constants"])
        layout = [(name, nets.torch_shape(t.shape)) for name, t in self._prefixed(tensors, "param/").items()]
        layout.sort()
        self.state = FlatState(layout, set(header["trainable"]), device)
        self._write_group("param", self._prefixed(tensors, "param/"))
        self.state.ema.copy_(self.state.param)
        self.t = 0
        self.autoencoder = None
        if self.phase == "unet":
            ae = {name: nets.to_torch_layout(t.to(torch.float32)).to(device) for name, t in self._prefixed(tensors, "ae/").items()}
            self.autoencoder = nets.Params(ae)
        self.pixel_chunks = []
        self.inputs = None
        self.pending = None
        self.lut = (torch.arange(256, dtype=torch.float64) / 127.5 - 1).to(torch.float32).to(device)

    @staticmethod
    def _prefixed(tensors, prefix):
        return {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}

    def _write_group(self, which, tensors):
        views = self.state.group(which)
        missing = sorted(set(views) - set(tensors))
        extra = sorted(set(tensors) - set(views))
        if missing or extra:
            raise RequestError("WEIGHTS_MISMATCH", f"{which}: missing {missing[:3]}, unexpected {extra[:3]}")
        for name, view in views.items():
            value = nets.to_torch_layout(tensors[name].to(torch.float32))
            if list(value.shape) != list(view.shape):
                raise RequestError("WEIGHTS_MISMATCH", f"{which} {name} has shape {list(tensors[name].shape)}")
            with torch.no_grad():
                view.copy_(value)

    # --- data -----------------------------------------------------------------------------------

    def add_data(self, tensors):
        pixels = tensors["pixels"]
        # Kept as sent (uint8 bytes or float32) until finish_data; each frame has its own buffer.
        self.pixel_chunks.append(pixels)

    def _to_float(self, pixels):
        """NCHW float32 pixels in [-1, 1]: bytes through the same table as trainer/data.ts (b / 127.5 - 1)."""
        return self.lut[pixels.long()] if pixels.dtype == torch.uint8 else pixels

    def finish_data(self):
        chunks = self.pixel_chunks
        self.pixel_chunks = []
        if len({chunk.dtype for chunk in chunks}) > 1:  # some chunks were not exact bytes: all become floats
            chunks = [self._to_float(chunk.to(self.lut.device)).cpu() for chunk in chunks]
        pixels = torch.cat(chunks).permute(0, 3, 1, 2).contiguous()
        if self.phase == "unet":
            latents = []
            with torch.no_grad():
                for start in range(0, pixels.shape[0], CHUNK):
                    chunk = self._to_float(pixels[start : start + CHUNK].to(self.device))
                    latents.append(nets.encode_for_diffusion(self.autoencoder, self.config["autoencoder"], chunk))
            self.inputs = torch.cat(latents)
            self.autoencoder = None
        else:
            self.inputs = self._place(pixels)
        return {"items": int(self.inputs.shape[0]), "dataDevice": self.inputs.device.type}

    def _place(self, data):
        if self.device.type != "cuda":
            return data
        free, _ = torch.cuda.mem_get_info(self.device)
        if data.numel() * data.element_size() < DATA_ON_DEVICE_SHARE * free:
            return data.to(self.device)
        return data.pin_memory()

    def _batch(self, indices):
        # By type: the inputs live on `cuda:0` while self.device may be plain `cuda`, and those differ as devices.
        if self.inputs.device.type == self.device.type:
            chosen = self.inputs.index_select(0, self._upload(indices).long())
        else:
            chosen = self._upload(self.inputs.index_select(0, indices.long()))
        return self._to_float(chosen)

    def _upload(self, tensor):
        # Pinned and non-blocking: a plain .to(cuda) waits for the whole stream, i.e. for the step still queued.
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _nchw(self, tensor):
        return self._upload(tensor).permute(0, 3, 1, 2).contiguous()

    # --- training -------------------------------------------------------------------------------

    def _loss(self, params, tensors, weighted):
        x = self._batch(tensors["indices"])
        if self.phase == "autoencoder":
            if not weighted:
                return nets.reconstruction_mse(params, self.config["autoencoder"], x), None
            return nets.autoencoder_loss(params, self.config["autoencoder"], x, self._nchw(tensors["noise"]))
        coefficients = self._upload(tensors["coefficients"])
        loss = nets.diffusion_loss(
            params,
            self.config,
            x,
            self._nchw(tensors["noise"]),
            self._upload(tensors["timesteps"]).long(),
            self._upload(tensors["labels"]).long(),
            coefficients[0],
            coefficients[1],
            coefficients[2] if weighted else None,
        )
        return loss, None

    def _grads(self, tensors):
        params = nets.Params(self.state.leaves)
        loss, batch_rms = self._loss(params, tensors, weighted=True)
        trainable = [self.state.leaves[name] for name in self.state.trainable_names]
        grads = torch.autograd.grad(loss, trainable)
        return loss.detach(), batch_rms, grads

    def grads(self, tensors):
        """Loss and gradients without an update (for the parity tests), in tfjs layout."""
        self._no_pending()
        loss, _, grads = self._grads(tensors)
        named = [(f"grad/{name}", nets.to_tfjs_layout(g).cpu()) for name, g in zip(self.state.trainable_names, grads)]
        return {"loss": json_number(loss.item())}, named

    def step(self, tensors):
        loss, batch_rms, grads = self._grads(tensors)
        self.t += 1
        ok, norm = self.state.step(grads, loss, self.t, self.hyper)
        if batch_rms is not None:
            with torch.no_grad():
                running = self.state.leaves[nets.LATENT_RMS_NAME]
                momentum = self.hyper["latentRmsMomentum"]
                updated = momentum * running.double() + (1 - momentum) * torch.clamp(batch_rms.detach().double(), min=1e-6)
                running.copy_(torch.where(ok, updated.to(torch.float32), running))
        decay = min(self.hyper["emaDecay"], (1 + self.t) / (self.hyper["emaWarmupOffset"] + self.t))
        self.state.update_ema(decay, ok)
        report = torch.stack([loss.to(torch.float32), ok.to(torch.float32), norm.to(torch.float32)])
        if self.device.type == "cuda":
            host = torch.empty(3, pin_memory=True)
            host.copy_(report, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = report, None
        queued = (self.t, host, event)
        previous = self._resolve()
        # After a failure the step just queued was a no-op on the device: nothing of it to report.
        self.pending = queued if previous is None or previous["applied"] else None
        return previous

    def _resolve(self):
        """The report of the pending step, waiting for that step only; resets the guard after a failure."""
        if self.pending is None:
            return None
        step, host, event = self.pending
        self.pending = None
        if event is not None:
            event.synchronize()
        loss, ok, norm = host.tolist()
        if ok != 1.0:
            # That update and every one queued after it were no-ops on the device (flat_state.py).
            self.t = step - 1
            self.state.recover()
            return {"step": step, "loss": json_number(loss), "applied": False, "gradNorm": json_number(norm)}
        return {"step": step, "loss": loss, "applied": True, "gradNorm": norm}

    def flush(self):
        return self._resolve()

    def _no_pending(self):
        if self.pending is not None:
            raise RequestError("INVALID_ARGUMENT", "a training step is still pending: flush first")

    def evaluate(self, tensors, ema):
        self._no_pending()
        params = nets.Params(self.state.ema_views if ema else self.state.group("param"))
        with torch.no_grad():
            loss, _ = self._loss(params, tensors, weighted=False)
        return json_number(loss.item())

    def read_group(self, which):
        self._no_pending()
        return [(name, nets.to_tfjs_layout(view.detach()).cpu()) for name, view in sorted(self.state.group(which).items())]

    def write_group(self, which, tensors):
        self._no_pending()
        self._write_group(which, tensors)

    def set_step(self, step):
        self._no_pending()
        self.t = int(step)


def _params(device, tensors, prefix):
    return nets.Params(
        {name[len(prefix) :]: nets.to_torch_layout(t.to(torch.float32)).to(device) for name, t in tensors.items() if name.startswith(prefix)}
    )


_sampling_weights = {}


def sample(device, header, tensors):
    """DDIM samples decoded to RGB bytes [n, S, S, 3] (trainer/sample.ts sampleImages).

    The weights come with a request's first chunk; later chunks without weights reuse them.
    """
    cfg = header["config"]
    check_constants(header["constants"])
    if any(name.startswith("unet/") for name in tensors):
        _sampling_weights["ae"] = _params(device, tensors, "ae/")
        _sampling_weights["unet"] = _params(device, tensors, "unet/")
    if "unet" not in _sampling_weights:
        raise RequestError("INVALID_ARGUMENT", "sample: no weights sent")
    ae, unet = _sampling_weights["ae"], _sampling_weights["unet"]
    x = tensors["noise"].to(device).permute(0, 3, 1, 2).contiguous()
    labels = tensors["labels"].to(device).long()
    steps = [(int(t), float(a), float(b)) for t, a, b in header["steps"]]
    with torch.no_grad():
        latents = nets.ddim_sample(unet, cfg, x, labels, steps, float(header["guidance"]), bool(header["guided"]))
        images = nets.decode_from_diffusion(ae, cfg["autoencoder"], latents)
        pixels = torch.clamp(torch.round((images + 1) * 127.5), 0, 255).to(torch.uint8)
    return [("pixels", pixels.permute(0, 2, 3, 1).contiguous().cpu())]


def reconstruct(device, header, tensors):
    """Images and their reconstructions through the posterior mean, as RGB bytes (sample.ts reconstructionGrid)."""
    cfg = header["config"]
    check_constants(header["constants"])
    ae = _params(device, tensors, "ae/")
    x = tensors["images"].to(device).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        both = torch.cat([x, nets.decode(ae, cfg["autoencoder"], nets.encode(ae, cfg["autoencoder"], x)[0])])
        pixels = torch.clamp(torch.round((both + 1) * 127.5), 0, 255).to(torch.uint8)
    return [("pixels", pixels.permute(0, 2, 3, 1).contiguous().cpu())]


def handle(device, session, header, tensors):
    """Runs one request; returns (session, reply fields, reply tensors)."""
    op = header.get("op")
    if op == "init_session":
        return Session(device, header, tensors), {}, []
    if op == "sample":
        return session, {}, sample(device, header, tensors)
    if op == "reconstruct":
        return session, {}, reconstruct(device, header, tensors)
    if session is None:
        raise RequestError("INVALID_ARGUMENT", f"'{op}' needs init_session first")
    if op == "add_data":
        session.add_data(tensors)
        return session, {}, []
    if op == "finish_data":
        return session, session.finish_data(), []
    if op == "step":
        return session, {"report": session.step(tensors)}, []
    if op == "flush":
        return session, {"report": session.flush()}, []
    if op == "grads":
        fields, named = session.grads(tensors)
        return session, fields, named
    if op == "eval":
        return session, {"loss": session.evaluate(tensors, bool(header.get("ema")))}, []
    if op == "get":
        return session, {"step": session.t}, session.read_group(header["group"])
    if op == "set":
        session.write_group(header["group"], tensors)
        return session, {}, []
    if op == "set_step":
        session.set_step(header["step"])
        return session, {}, []
    raise RequestError("INVALID_ARGUMENT", f"unknown request '{op}'")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-frame-bytes", type=int, required=True)
    parser.add_argument("--probe", action="store_true", help="print what this python offers and exit")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    info = {
        "protocol": framing.PROTOCOL_VERSION,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cuda": cuda,
        "cudaDevice": torch.cuda.get_device_name(0) if cuda else None,
        "threads": torch.get_num_threads(),
    }
    if args.probe:
        import json

        print(json.dumps(info), flush=True)
        return 0
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    frames_in = sys.stdin.buffer
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotuned convolution algorithms pay off from step 2
    frames_out.write(framing.encode_frame({**info, "type": "hello", "device": device.type, "deviceName": device_name(device)}))
    frames_out.flush()
    session = None
    while True:
        frame = framing.read_frame(frames_in, args.max_frame_bytes)
        if frame is None:
            return 0
        header, tensors = frame
        request_id = header.get("id")
        if header.get("op") == "shutdown":
            frames_out.write(framing.encode_frame({"id": request_id, "ok": True}))
            frames_out.flush()
            return 0
        try:
            session, fields, named = handle(device, session, header, tensors)
            reply = framing.encode_frame({"id": request_id, "ok": True, **fields}, named, args.max_frame_bytes)
        except RequestError as error:
            reply = framing.encode_frame({"id": request_id, "ok": False, "code": error.code, "message": str(error)})
        except Exception as error:  # noqa: BLE001 - any failure of one request is reported, not fatal
            traceback.print_exc(file=sys.stderr)
            message = f"{type(error).__name__}: {error}"
            reply = framing.encode_frame({"id": request_id, "ok": False, "code": "WORKER_FAILED", "message": message})
        frames_out.write(reply)
        frames_out.flush()
        del tensors


if __name__ == "__main__":
    sys.exit(main())
