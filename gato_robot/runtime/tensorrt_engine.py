"""`gato-robot export tensorrt`: ONNX graphs -> TensorRT engines (needs an NVIDIA GPU and `tensorrt`).

Optimization profiles come from the config: the prefill graph's token axis spans 1 .. context
tokens with the observation length as the optimum; the decode graph is static. fp16 is the
default; ``int8``/``fp8`` turn on explicit quantization and need an ONNX that carries Q/DQ nodes
(e.g. from NVIDIA ModelOpt) and a GPU that has the format (fp8: compute capability >= 8.9).
A timing cache file beside the engines makes rebuilds fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..model.checkpoint import CONFIG_FILE, load_config
from ..model.config import GatoConfig
from .export import DECODE_FILE, PREFILL_FILE

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
TIMING_CACHE_FILE = "timing.cache"


def engine_name(onnx_name: str) -> str:
    return onnx_name.replace(".onnx", ".engine")


def require_tensorrt():
    """Import tensorrt, or explain exactly what is missing."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover
        raise RuntimeError("TensorRT support needs torch with CUDA") from error
    if not torch.cuda.is_available():
        raise RuntimeError("TensorRT needs an NVIDIA GPU with a working CUDA driver; torch.cuda.is_available() "
                           "is False on this machine. Use --backend onnxruntime or torch here.")
    try:
        import tensorrt
    except ImportError as error:
        raise RuntimeError("the `tensorrt` package is not installed: pip install 'gato-robot[tensorrt]' "
                           "on the GPU machine") from error
    return tensorrt


@dataclass(frozen=True)
class ShapeProfile:
    """min / opt / max shape of one dynamic input."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def prefill_profiles(config: GatoConfig) -> list[ShapeProfile]:
    """Profiles of the prefill graph's dynamic inputs, sized from the config."""
    spec = config.timestep
    length, context = spec.observation_tokens, config.context_tokens
    num_patches = len(spec.camera_names) * spec.patches_per_image
    patch = (3, config.patch_size, config.patch_size)
    profiles = [ShapeProfile(name, (1, 1), (1, length), (1, context))
                for name in ("token_ids", "obs_positions", "patch_rows", "patch_cols", "image_index")]
    profiles.append(ShapeProfile("patches", (1, 1, *patch), (1, num_patches, *patch), (1, context, *patch)))
    return profiles


def build_engine(onnx_path: Path, engine_path: Path, profiles: list[ShapeProfile], precision: str,
                 timing_cache: Path, workspace_gib: float = 8.0) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        if not builder.platform_has_fast_int8:
            raise RuntimeError("this GPU has no fast int8; build with --precision fp16")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp8":
        import torch

        if torch.cuda.get_device_capability() < (8, 9):
            raise RuntimeError(f"fp8 needs compute capability >= 8.9, this GPU has {torch.cuda.get_device_capability()}")
        config.set_flag(trt.BuilderFlag.FP8)
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if profiles:
        profile = builder.create_optimization_profile()
        for p in profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path


def build_engines(onnx_dir: str | Path, out_dir: str | Path | None = None, precision: str = "fp16") -> list[Path]:
    """Build ``prefill.engine`` and ``decode.engine`` from an ONNX export directory."""
    onnx_dir = Path(onnx_dir)
    out_dir = Path(out_dir) if out_dir else onnx_dir
    config = load_config(onnx_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir != onnx_dir:
        (out_dir / CONFIG_FILE).write_text((onnx_dir / CONFIG_FILE).read_text())
    timing_cache = out_dir / TIMING_CACHE_FILE
    return [build_engine(onnx_dir / PREFILL_FILE, out_dir / engine_name(PREFILL_FILE), prefill_profiles(config),
                         precision, timing_cache),
            build_engine(onnx_dir / DECODE_FILE, out_dir / engine_name(DECODE_FILE), [], precision, timing_cache)]
