"""framing.py: frames round-trip every dtype, keep tensors 8-aligned, and refuse what breaks the bounds."""

import io
import struct
import unittest

import torch

import framing


class FramingTest(unittest.TestCase):
    def roundtrip(self, header, tensors, max_bytes=1 << 20):
        frame = framing.encode_frame(header, tensors, max_bytes)
        return framing.read_frame(io.BufferedReader(io.BytesIO(bytes(frame))), max_bytes)

    def test_every_dtype_round_trips_with_aligned_offsets(self):
        tensors = [
            ("a", torch.arange(5, dtype=torch.float32) / 3),
            ("b", torch.arange(3, dtype=torch.uint8)),
            ("c", torch.tensor([[1, -2], [3, -4]], dtype=torch.int32)),
            ("d", torch.tensor([0.1, 1e300], dtype=torch.float64)),
            ("empty", torch.zeros(0, 4)),
        ]
        header, decoded = self.roundtrip({"op": "x", "id": 7}, tensors)
        self.assertEqual(header, {"op": "x", "id": 7})
        for name, tensor in tensors:
            self.assertEqual(decoded[name].dtype, tensor.dtype)
            self.assertTrue(torch.equal(decoded[name], tensor), name)
        frame = framing.encode_frame({}, tensors)
        (header_length,) = struct.unpack_from("<I", frame, 4)
        self.assertEqual((4 + header_length) % 8, 0)

    def test_clean_end_of_input_is_none_and_a_cut_frame_is_an_error(self):
        self.assertIsNone(framing.read_frame(io.BufferedReader(io.BytesIO(b"")), 100))
        frame = framing.encode_frame({"op": "x"}, [("a", torch.ones(4))])
        with self.assertRaises(framing.ProtocolError):
            framing.read_frame(io.BufferedReader(io.BytesIO(bytes(frame[:-3]))), 1 << 20)

    def test_oversized_and_malformed_frames_are_refused(self):
        cases = {
            "over the limit": struct.pack("<I", 1000) + b"\0" * 1000,
            "shorter than a header length": struct.pack("<I", 2) + b"\0\0",
            "header overruns": struct.pack("<II", 8, 100) + b"{}  ",
            "header not JSON": struct.pack("<II", 8, 4) + b"{{{{",
            "header not an object": struct.pack("<II", 8, 4) + b"[1] ",
        }
        for name, data in cases.items():
            with self.subTest(name), self.assertRaises(framing.ProtocolError):
                framing.read_frame(io.BufferedReader(io.BytesIO(data)), 500)
        with self.assertRaises(framing.ProtocolError):
            framing.encode_frame({}, [("big", torch.zeros(1000))], max_bytes=100)

    def test_tensor_entries_outside_the_payload_or_of_unknown_dtype_are_refused(self):
        def frame_with(entry):
            head = ('{"tensors":[%s]}' % entry).encode()
            head += b" " * ((-(4 + len(head))) % 8)
            body = struct.pack("<I", len(head)) + head + b"\0" * 16
            return struct.pack("<I", len(body)) + body

        for entry in [
            '{"name":"a","dtype":"f32","shape":[5],"offset":0}',
            '{"name":"a","dtype":"f32","shape":[1],"offset":4}',
            '{"name":"a","dtype":"f16","shape":[1],"offset":0}',
            '{"name":"a","dtype":"f32","shape":[-1],"offset":0}',
        ]:
            with self.subTest(entry), self.assertRaises(framing.ProtocolError):
                framing.read_frame(io.BufferedReader(io.BytesIO(frame_with(entry))), 1000)


if __name__ == "__main__":
    unittest.main()
