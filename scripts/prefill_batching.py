"""Does batching pay for the prefill? The shipped policy's prefill graph exported with a dynamic
batch axis, timed on one thread in ONNX Runtime and eager PyTorch at batch 1 and 8 (issue
"Batched evaluation"). Prints milliseconds per call and the largest logit difference between them.

    .venv/bin/python scripts/prefill_batching.py [--policy gato-cpu-small] [--batch 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gato_robot.model.checkpoint import load_checkpoint
from gato_robot.policies import resolve_policy
from gato_robot.runtime import export
from gato_robot.runtime.graphs import PREFILL_INPUTS, PrefillGraph


def batched_inputs(policy, batch: int) -> list[torch.Tensor]:
    """The export's example prefill inputs with ``batch`` rows (tokens, patches, caches)."""
    inputs = list(export.example_prefill_inputs(policy))
    for i in range(6):
        inputs[i] = inputs[i].repeat(batch, *[1] * (inputs[i].dim() - 1))
    c = policy.config
    inputs[6] = torch.zeros(c.n_layer, batch, c.n_head, c.context_tokens, c.head_dim)
    inputs[7] = torch.zeros_like(inputs[6])
    return inputs


def timed(call, repeats: int = 10) -> tuple[float, object]:
    for _ in range(3):
        call()
    start = time.perf_counter()
    for _ in range(repeats):
        out = call()
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="gato-cpu-small")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_checkpoint(resolve_policy(args.policy)).float().eval()
    inputs = batched_inputs(policy, args.batch)
    batch = torch.export.Dim("batch", min=1, max=64)
    tokens = torch.export.Dim("seq", min=1, max=policy.config.context_tokens)
    patches = torch.export.Dim("patches", min=1, max=policy.config.context_tokens)
    dynamic = {name: {0: batch, 1: tokens} for name in PREFILL_INPUTS[:5]}
    dynamic.update(patches={0: batch, 1: patches}, cache_keys={1: batch}, cache_values={1: batch}, past_length=None)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    graph = PrefillGraph(policy)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "prefill.onnx"
        export._export(graph, tuple(inputs), path, PREFILL_INPUTS, dynamic)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for rows in (1, args.batch):
            feed = [a[:rows] if i < 6 else a[:, :rows] if i < 8 else a for i, a in enumerate(inputs)]
            ort_s, ort_out = timed(lambda: session.run(None, {n: a.numpy() for n, a in zip(PREFILL_INPUTS, feed)}))
            with torch.inference_mode():
                torch_s, torch_out = timed(lambda: graph(*feed))
            difference = float(np.abs(ort_out[0] - torch_out[0].numpy()).max())
            print(f"batch {rows}: onnxruntime {ort_s * 1e3:.1f} ms ({ort_s * 1e3 / rows:.1f} per row), "
                  f"torch {torch_s * 1e3:.1f} ms ({torch_s * 1e3 / rows:.1f} per row), max logit difference {difference:.1e}")


if __name__ == "__main__":
    main()
