"""Pick a :class:`PolicyRunner` backend by name."""

from __future__ import annotations

from pathlib import Path

from .base import PolicyRunner

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def load_runner(backend: str, path: str | Path, device: str = "cpu", threads: int = 0,
                temperature: float = 0.0) -> PolicyRunner:
    """torch: a checkpoint directory (or a shipped policy's name); onnxruntime: an ONNX export
    directory; tensorrt: an engine directory. ``temperature`` 0 decodes greedily, > 0 samples."""
    if backend == "torch":
        from ..policies import resolve_policy

        path = resolve_policy(str(path))
        from .torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device, temperature)
    if backend == "onnxruntime":
        from .onnx_runner import OnnxRunner

        return OnnxRunner(path, threads=threads, temperature=temperature)
    if backend == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        return TensorRTRunner(path, temperature=temperature)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
