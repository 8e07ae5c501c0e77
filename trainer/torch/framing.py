"""Frames of the worker protocol (the TypeScript side is trainer/torch/frames.ts).

A frame is  u32le length | body,  where `length` counts the body, and the body is
u32le header length | header (UTF-8 JSON, space-padded so that the payload starts at a multiple of 8
in the body) | payload. The header's "tensors" list describes the payload: for each tensor its name,
dtype ("f32", "f64", "i32" or "u8"), shape, and byte offset (a multiple of 8) from the payload's start.
Frames larger than the limit the TypeScript side announces are refused, in both directions.
"""

import json
import struct

import torch

PROTOCOL_VERSION = 1

DTYPES = {"f32": torch.float32, "f64": torch.float64, "i32": torch.int32, "u8": torch.uint8}
NAMES = {v: k for k, v in DTYPES.items()}
ALIGN = 8


class ProtocolError(Exception):
    pass


def _read_into(stream, view):
    """Fills `view` from `stream`; False if the stream ends first."""
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])
        if not count:
            return False
        filled += count
    return True


def _element_size(dtype):
    return torch.tensor([], dtype=dtype).element_size()


def read_frame(stream, max_bytes):
    """The next (header, tensors) from `stream` (a binary reader), or None at a clean end of input.

    Tensors are views over the frame's buffer (no copy); they stay valid as long as they are referenced.
    """
    prefix = bytearray(4)
    if not _read_into(stream, memoryview(prefix)):
        return None
    (length,) = struct.unpack("<I", prefix)
    if length < 4 or length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes is outside [4, {max_bytes}]")
    body = bytearray(length)
    if not _read_into(stream, memoryview(body)):
        raise ProtocolError("input ended inside a frame")
    (header_length,) = struct.unpack_from("<I", body, 0)
    if header_length > length - 4:
        raise ProtocolError("frame header overruns the frame")
    try:
        header = json.loads(bytes(body[4 : 4 + header_length]).decode("utf-8"))
    except ValueError as error:
        raise ProtocolError(f"frame header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not an object")
    start = 4 + header_length
    tensors = {}
    for entry in header.pop("tensors", []):
        dtype = DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise ProtocolError(f"unknown dtype {entry.get('dtype')!r}")
        shape = [int(d) for d in entry["shape"]]
        count = 1
        for d in shape:
            if d < 0:
                raise ProtocolError("negative dimension")
            count *= d
        offset = int(entry["offset"])
        if offset < 0 or offset % ALIGN != 0 or start + offset + _element_size(dtype) * count > length:
            raise ProtocolError(f"tensor {entry.get('name')!r} lies outside the payload")
        if count == 0:
            flat = torch.empty(0, dtype=dtype)
        else:
            flat = torch.frombuffer(body, dtype=dtype, count=count, offset=start + offset)
        tensors[str(entry["name"])] = flat.reshape(shape)
    return header, tensors


def encode_frame(header, tensors=(), max_bytes=None):
    """A frame as one bytearray; `tensors` is a list of (name, tensor), copied to the CPU."""
    entries = []
    sources = []
    offset = 0
    for name, tensor in tensors:
        dtype = NAMES.get(tensor.dtype)
        if dtype is None:
            raise ProtocolError(f"cannot send dtype {tensor.dtype}")
        offset += (-offset) % ALIGN
        entries.append({"name": name, "dtype": dtype, "shape": list(tensor.shape), "offset": offset})
        sources.append((offset, tensor))
        offset += _element_size(tensor.dtype) * tensor.numel()
    # allow_nan=False: NaN is not JSON, and the other side's parser would refuse the whole frame.
    head = json.dumps({**header, "tensors": entries}, separators=(",", ":"), allow_nan=False).encode("utf-8")
    head += b" " * ((-(4 + len(head))) % ALIGN)
    length = 4 + len(head) + offset
    if max_bytes is not None and length > max_bytes:
        raise ProtocolError(f"reply of {length} bytes exceeds the frame limit of {max_bytes}")
    frame = bytearray(4 + length)
    struct.pack_into("<II", frame, 0, length, len(head))
    frame[8 : 8 + len(head)] = head
    start = 8 + len(head)
    for tensor_offset, tensor in sources:
        if tensor.numel() == 0:
            continue
        view = torch.frombuffer(frame, dtype=tensor.dtype, count=tensor.numel(), offset=start + tensor_offset)
        view.copy_(tensor.detach().reshape(-1))
    return frame
