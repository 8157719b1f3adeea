"""Pick a :class:`PolicyRunner` backend by name."""

from __future__ import annotations

from pathlib import Path

from .base import PolicyRunner

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def load_runner(backend: str, path: str | Path, device: str = "cpu", threads: int = 0,
                temperature: float = 0.0, expectation: str = "off", batch_size: int = 1) -> PolicyRunner:
    """torch: a checkpoint directory (or a shipped policy's name); onnxruntime: an ONNX export
    directory; tensorrt: an engine directory. ``temperature`` 0 decodes greedily, > 0 samples;
    ``expectation`` ("companded", "physical" or "median", :func:`~gato_robot.runtime.base.choose_bin`)
    decodes the motion dimensions by that statistic of their bins (the gripper by temperature). ``batch_size`` > 1: episodes in
    lockstep, one batched call per tick (torch only; the exported graphs are batch 1)."""
    if batch_size != 1 and backend != "torch":
        raise ValueError(f"batched acting (batch_size {batch_size}) needs the torch backend, not {backend!r}")
    if backend == "torch":
        from ..policies import resolve_policy

        path = resolve_policy(str(path))
        from .torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device, temperature, expectation, batch_size)
    if backend == "onnxruntime":
        from .onnx_runner import OnnxRunner

        return OnnxRunner(path, threads=threads, temperature=temperature, expectation=expectation)
    if backend == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        return TensorRTRunner(path, temperature=temperature, expectation=expectation)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
