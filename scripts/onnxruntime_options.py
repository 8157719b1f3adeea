"""ONNX Runtime session options chosen by measurement (issue "Batched evaluation"): the shipped
policy's exported prefill and decode graphs timed under each graph optimization level and
intra-op thread count, one after the other in one run, so the ratios hold on a noisy machine.

    .venv/bin/python scripts/onnxruntime_options.py [--policy gato-cpu-small] [--repeats 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

from gato_robot.model.checkpoint import load_checkpoint
from gato_robot.policies import resolve_policy
from gato_robot.runtime.export import example_decode_inputs, example_prefill_inputs, export_checkpoint
from gato_robot.runtime.graphs import DECODE_INPUTS, PREFILL_INPUTS

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def milliseconds(path: str, feed: dict[str, np.ndarray], level, threads: int, repeats: int) -> float:
    options = ort.SessionOptions()
    options.graph_optimization_level, options.intra_op_num_threads, options.inter_op_num_threads = level, threads, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, feed)
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, feed)
    return 1e3 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="gato-cpu-small")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    checkpoint = resolve_policy(args.policy)
    policy = load_checkpoint(checkpoint)
    feeds = {"prefill": dict(zip(PREFILL_INPUTS, (a.numpy() for a in example_prefill_inputs(policy)))),
             "decode": dict(zip(DECODE_INPUTS, (a.numpy() for a in example_decode_inputs(policy))))}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        export = export_checkpoint(checkpoint, scratch)
        paths = {"prefill": str(export.prefill), "decode": str(export.decode)}
        print(f"{'graph':>8} {'level':>9} {'threads':>8} {'ms':>7}")
        for graph in ("prefill", "decode"):
            for threads in (1, 2):
                for name, level in LEVELS.items():
                    ms = milliseconds(paths[graph], feeds[graph], level, threads, args.repeats)
                    print(f"{graph:>8} {name:>9} {threads:>8} {ms:7.2f}")


if __name__ == "__main__":
    main()
