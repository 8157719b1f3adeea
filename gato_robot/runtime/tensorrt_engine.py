"""`gato-robot export tensorrt`: ONNX graphs -> TensorRT engines (needs an NVIDIA GPU and `tensorrt`).

Optimization profiles come from the config: the prefill graph's token axis spans 1 .. context
tokens with the observation length as the optimum; the decode graph is static. fp16 is the
default; ``int8``/``fp8`` turn on explicit quantization and need an ONNX that carries Q/DQ nodes
(e.g. from NVIDIA ModelOpt) and a GPU that has the format (fp8: compute capability >= 8.9).
A timing cache file beside the engines makes rebuilds fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..model.checkpoint import CONFIG_FILE, load_config
from ..model.config import GatoConfig
from .export import DECODE_FILE, PREFILL_FILE, file_digest

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


def _cache_profiles(config: GatoConfig) -> list[ShapeProfile]:
    """The KV cache inputs at batch 1: the ONNX graphs take any batch, the engines the arm's one."""
    shape = (config.n_layer, 1, config.n_head, config.context_tokens, config.head_dim)
    return [ShapeProfile(name, shape, shape, shape) for name in ("cache_keys", "cache_values")]


def prefill_profiles(config: GatoConfig) -> list[ShapeProfile]:
    """Profiles of the prefill graph's dynamic inputs, sized from the config (batch 1)."""
    spec = config.timestep
    length, context = spec.observation_tokens, config.context_tokens
    num_patches = len(spec.camera_names) * spec.patches_per_image
    patch = (3, config.patch_size, config.patch_size)
    profiles = [ShapeProfile(name, (1, 1), (1, length), (1, context))
                for name in ("token_ids", "obs_positions", "patch_rows", "patch_cols", "image_index")]
    profiles.append(ShapeProfile("patches", (1, 1, *patch), (1, num_patches, *patch), (1, context, *patch)))
    return profiles + _cache_profiles(config)


def decode_profiles(config: GatoConfig) -> list[ShapeProfile]:
    """The decode graph at batch 1: every shape fixed, so its enqueue can be captured in a CUDA graph."""
    return [ShapeProfile("action_token", (1, 1), (1, 1), (1, 1))] + _cache_profiles(config)


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
            build_engine(onnx_dir / DECODE_FILE, out_dir / engine_name(DECODE_FILE), decode_profiles(config), precision,
                         timing_cache)]


ENGINE_MANIFEST = "engines.json"
"""Written beside the engines: what they were built from and for (:func:`engine_fingerprint`)."""


def engine_fingerprint(onnx_dir: Path, precision: str, tensorrt_version: str, gpu: str) -> dict:
    """What makes a built engine valid: the ONNX graphs' digests, the precision, the TensorRT
    version and the GPU (name and compute capability). An engine is only portable across none of them."""
    return {"onnx": {name: file_digest(Path(onnx_dir) / name) for name in (PREFILL_FILE, DECODE_FILE)},
            "precision": precision, "tensorrt": tensorrt_version, "gpu": gpu}


def stale_reason(engine_dir: Path, wanted: dict) -> str | None:
    """Why the engines in ``engine_dir`` cannot be used for ``wanted`` (a fingerprint); None if they can."""
    engine_dir = Path(engine_dir)
    missing = [name for name in (engine_name(PREFILL_FILE), engine_name(DECODE_FILE), ENGINE_MANIFEST)
               if not (engine_dir / name).is_file()]
    if missing:
        return f"no {', '.join(missing)} in {engine_dir}"
    try:
        built = json.loads((engine_dir / ENGINE_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        return f"unreadable {engine_dir / ENGINE_MANIFEST} ({error})"
    changed = ["the ONNX graphs changed" if key == "onnx" else f"{key} {built.get(key)!r} -> {wanted[key]!r}"
               for key in ("onnx", "precision", "tensorrt", "gpu") if built.get(key) != wanted[key]]
    if changed:
        return "engines are stale: " + "; ".join(changed)
    return None


def current_platform() -> tuple[str, str]:
    """(TensorRT version, GPU "name (sm_XY)") of this machine; raises as :func:`require_tensorrt`."""
    trt = require_tensorrt()
    import torch

    major, minor = torch.cuda.get_device_capability()
    return trt.__version__, f"{torch.cuda.get_device_name()} (sm_{major}{minor})"


def ensure_engines(onnx_dir: str | Path, engine_dir: str | Path | None = None, precision: str = "fp16",
                   force: bool = False, platform: tuple[str, str] | None = None,
                   build=build_engines) -> tuple[Path, str | None]:
    """Engines for ``onnx_dir`` in ``engine_dir`` (default ``onnx_dir/tensorrt-<precision>``), built
    when missing, stale (other graphs, precision, TensorRT or GPU) or ``force``d, as Isaac ROS's
    TensorRT node does on start. Returns the engine directory and why it was rebuilt (None: reused)."""
    onnx_dir = Path(onnx_dir)
    engine_dir = Path(engine_dir) if engine_dir else onnx_dir / f"tensorrt-{precision}"
    for name in (PREFILL_FILE, DECODE_FILE):
        if not (onnx_dir / name).is_file():
            raise FileNotFoundError(f"no {name} in {onnx_dir}: expected the output of `gato-robot export onnx`")
    tensorrt_version, gpu = platform or current_platform()
    wanted = engine_fingerprint(onnx_dir, precision, tensorrt_version, gpu)
    reason = "force rebuild requested" if force else stale_reason(engine_dir, wanted)
    if reason is None:
        return engine_dir, None
    manifest = engine_dir / ENGINE_MANIFEST
    manifest.unlink(missing_ok=True)  # a build that dies half-way must not leave engines that look valid
    build(onnx_dir, engine_dir, precision)
    manifest.write_text(json.dumps(wanted, indent=2))
    return engine_dir, reason
