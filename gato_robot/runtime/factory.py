"""Pick a :class:`PolicyRunner` backend by name."""

from __future__ import annotations

from pathlib import Path

from .base import PolicyRunner

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def load_runner(backend: str, path: str | Path, device: str = "cpu", threads: int = 0) -> PolicyRunner:
    """torch: a checkpoint directory (or a shipped policy's name); onnxruntime: an ONNX export
    directory; tensorrt: an engine directory."""
    if backend == "torch":
        from ..policies import resolve_policy

        path = resolve_policy(str(path))
        from .torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device)
    if backend == "onnxruntime":
        from .onnx_runner import OnnxRunner

        return OnnxRunner(path, threads=threads)
    if backend == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        return TensorRTRunner(path)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
