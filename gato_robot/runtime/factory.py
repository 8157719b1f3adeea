"""Pick a :class:`PolicyRunner` backend by name."""

from __future__ import annotations

from pathlib import Path

from .base import PolicyRunner

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def load_runner(backend: str, path: str | Path, device: str = "cpu", threads: int = 0,
                temperature: float = 0.0, expectation: str = "off", batch_size: int = 1) -> PolicyRunner:
    """torch: a checkpoint directory (or a shipped policy's name); onnxruntime: an ONNX export
    directory, or a checkpoint (exported once, :func:`~gato_robot.runtime.export.cached_export`);
    tensorrt: an engine directory. ``temperature`` 0 decodes greedily, > 0 samples;
    ``expectation`` ("companded", "physical" or "median", :func:`~gato_robot.runtime.base.choose_bin`)
    decodes the motion dimensions by that statistic of their bins (the gripper by temperature).
    ``batch_size`` > 1: episodes in lockstep, one batched call per tick (torch and onnxruntime; the
    TensorRT engines are built for the arm's batch of 1)."""
    if batch_size != 1 and backend == "tensorrt":
        raise ValueError(f"batched acting (batch_size {batch_size}) needs the torch or onnxruntime backend, "
                         "not 'tensorrt' (engines are built for batch 1)")
    from ..policies import resolve_policy

    path = Path(resolve_policy(str(path)))
    if backend == "torch":
        from .torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device, temperature, expectation, batch_size)
    if backend == "onnxruntime":
        from ..model.checkpoint import WEIGHTS_FILE
        from .export import PREFILL_FILE, cached_export
        from .onnx_runner import OnnxRunner

        if not (path / PREFILL_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
            path = cached_export(path)  # a checkpoint: its export, made once and kept beside it

        return OnnxRunner(path, threads=threads, temperature=temperature, expectation=expectation,
                          batch_size=batch_size)
    if backend == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        return TensorRTRunner(path, temperature=temperature, expectation=expectation)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
