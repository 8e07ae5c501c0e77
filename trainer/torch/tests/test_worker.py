"""worker.py as a process: the hello handshake, a short training session over the protocol, error replies
that keep the worker alive, and an exit (not a hang) on a broken frame."""

import os
import subprocess
import sys
import unittest

import torch

import framing
import nets
from tests.helpers import CONSTANTS, HYPER, TINY

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX = 64 << 20


class Worker:
    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-B", os.path.join(HERE, "worker.py"), "--device", "cpu", "--threads", "1", "--max-frame-bytes", str(MAX)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.hello, _ = framing.read_frame(self.process.stdout, MAX)
        self.next_id = 1

    def request(self, op, fields=None, tensors=()):
        self.next_id += 1
        self.process.stdin.write(framing.encode_frame({"op": op, "id": self.next_id, **(fields or {})}, list(tensors)))
        self.process.stdin.flush()
        header, reply = framing.read_frame(self.process.stdout, MAX)
        if header["id"] != self.next_id:
            raise AssertionError(f"reply to request {header['id']}, expected {self.next_id}")
        return header, reply

    def close(self):
        self.process.stdin.close()
        code = self.process.wait(timeout=60)
        self.process.stdout.close()
        stderr = self.process.stderr.read().decode()
        self.process.stderr.close()
        return code, stderr


class WorkerTest(unittest.TestCase):
    def test_a_session_trains_over_the_protocol_and_errors_are_replies(self):
        worker = Worker()
        try:
            self.assertEqual(worker.hello["type"], "hello")
            self.assertEqual(worker.hello["protocol"], framing.PROTOCOL_VERSION)
            self.assertEqual(worker.hello["device"], "cpu")
            header, _ = worker.request("step")
            self.assertFalse(header["ok"])
            self.assertEqual(header["code"], "INVALID_ARGUMENT")
            params = nets.create_params(TINY, "autoencoder")
            tensors = [(f"param/{n}", nets.to_tfjs_layout(params.tensors[n])) for n in params.names()]
            init = {"config": TINY, "phase": "autoencoder", "hyper": HYPER, "constants": CONSTANTS, "trainable": params.trainable_names()}
            self.assertTrue(worker.request("init_session", init, tensors)[0]["ok"])
            pixels = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
            self.assertTrue(worker.request("add_data", {}, [("pixels", pixels)])[0]["ok"])
            self.assertEqual(worker.request("finish_data")[0]["items"], 6)
            draws = [("indices", torch.tensor([0, 1, 2, 3], dtype=torch.int32)), ("noise", torch.randn(4, 4, 4, 4))]
            first, _ = worker.request("step", {}, draws)
            self.assertIsNone(first["report"])  # a step's report comes with the next request
            second, _ = worker.request("step", {}, draws)
            self.assertEqual(second["report"]["step"], 1)
            self.assertTrue(second["report"]["applied"])
            refused, _ = worker.request("get", {"group": "param"})
            self.assertEqual(refused["code"], "INVALID_ARGUMENT")  # a step is pending
            flushed, _ = worker.request("flush")
            self.assertEqual(flushed["report"]["step"], 2)
            header, weights = worker.request("get", {"group": "param"})
            self.assertEqual(header["step"], 2)
            self.assertEqual(sorted(weights), params.names())
            self.assertEqual(list(weights["encoder.conv_in.weight"].shape), [3, 3, 3, 8])  # tfjs HWIO
            mismatch, _ = worker.request("set", {"group": "param"}, [("encoder.conv_in.weight", torch.zeros(3, 3, 3, 8))])
            self.assertEqual(mismatch["code"], "WEIGHTS_MISMATCH")
            evaluated, _ = worker.request("eval", {"ema": True}, [("indices", torch.tensor([4, 5], dtype=torch.int32))])
            self.assertGreater(evaluated["loss"], 0)
        finally:
            code, stderr = worker.close()
        self.assertEqual(code, 0, stderr)

    def test_a_broken_frame_ends_the_worker_with_a_reason_on_stderr(self):
        worker = Worker()
        worker.process.stdin.write((2**31).to_bytes(4, "little"))
        worker.process.stdin.flush()
        code, stderr = worker.close()
        self.assertNotEqual(code, 0)
        self.assertIn("ProtocolError", stderr)


if __name__ == "__main__":
    unittest.main()
