"""`gato-robot export onnx`: a checkpoint -> ``prefill.onnx`` + ``decode.onnx`` + ``config.json``.

Exported with the dynamo-based ``torch.onnx.export`` at opset ``OPSET`` (18: the first with
LayerNormalization-friendly Reduce ops taking axes as inputs and the one onnxscript's torchlib
targets). Graph contracts are in :mod:`gato_robot.runtime.graphs`; both graphs have a dynamic batch
``batch`` (episodes in lockstep, sharing one past length: `sim eval`; the arm runs batch 1), the
prefill graph also a dynamic token count ``seq`` and patch count ``patches``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from ..model.policy import GatoPolicy
from .graphs import DECODE_INPUTS, OUTPUTS, PREFILL_INPUTS, DecodeGraph, PrefillGraph

OPSET = 18
PREFILL_FILE = "prefill.onnx"
DECODE_FILE = "decode.onnx"
MAX_BATCH = 64
EXAMPLE_BATCH = 2  # traced at batch 2: torch.export would specialize a size-1 axis to the constant 1
EXPORT_FORMAT = 2  # 2: graphs with a dynamic batch axis (2026-12-04); 1: batch 1 only
EXPORT_MANIFEST = "export.json"
CACHED_EXPORT_DIR = "onnx"


@dataclass(frozen=True)
class OnnxExport:
    directory: Path
    prefill: Path
    decode: Path


def cache_shape(policy: GatoPolicy, batch: int = 1) -> tuple[int, ...]:
    c = policy.config
    return (c.n_layer, batch, c.n_head, c.context_tokens, c.head_dim)


def example_prefill_inputs(policy: GatoPolicy, batch: int = EXAMPLE_BATCH) -> tuple[torch.Tensor, ...]:
    spec = policy.config.timestep
    length = spec.observation_tokens
    num_patches = len(spec.camera_names) * spec.patches_per_image
    image_index = torch.full((batch, length), -1, dtype=torch.long)
    image_index[:, spec.text_tokens:spec.text_tokens + num_patches] = torch.arange(num_patches)
    # Distinct tensors per input: the exporter folds inputs that alias one tensor into one.
    zeros = lambda: torch.zeros(batch, length, dtype=torch.long)  # noqa: E731
    return (zeros(), torch.arange(length).repeat(batch, 1), zeros(), zeros(), image_index,
            torch.zeros(batch, num_patches, 3, 16, 16), torch.zeros(cache_shape(policy, batch)),
            torch.zeros(cache_shape(policy, batch)), torch.zeros(1, dtype=torch.long))


def example_decode_inputs(policy: GatoPolicy, batch: int = EXAMPLE_BATCH) -> tuple[torch.Tensor, ...]:
    return (torch.full((batch, 1), 32512, dtype=torch.long), torch.zeros(cache_shape(policy, batch)),
            torch.zeros(cache_shape(policy, batch)), torch.ones(1, dtype=torch.long))


def _export(module: torch.nn.Module, args, path: Path, input_names, dynamic_shapes) -> None:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=list(input_names), output_names=list(OUTPUTS),
                          dynamic_shapes=dynamic_shapes, opset_version=OPSET, dynamo=True, external_data=False,
                          verbose=False)


def export_onnx(policy: GatoPolicy, directory: str | Path, checkpoint: str | Path | None = None) -> OnnxExport:
    """Write both graphs (weights embedded) and the config beside them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy = policy.eval().float()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    sequence = torch.export.Dim("seq", min=1, max=policy.config.context_tokens)
    patches = torch.export.Dim("patches", min=1, max=policy.config.context_tokens)
    per_token, cache = {0: batch, 1: sequence}, {1: batch}
    prefill_dynamic = {"token_ids": per_token, "obs_positions": per_token, "patch_rows": per_token,
                       "patch_cols": per_token, "image_index": per_token, "patches": {0: batch, 1: patches},
                       "cache_keys": cache, "cache_values": cache, "past_length": None}
    decode_dynamic = {"action_token": {0: batch}, "cache_keys": cache, "cache_values": cache, "past_length": None}
    _export(PrefillGraph(policy), example_prefill_inputs(policy), directory / PREFILL_FILE, PREFILL_INPUTS,
            prefill_dynamic)
    _export(DecodeGraph(policy), example_decode_inputs(policy), directory / DECODE_FILE, DECODE_INPUTS,
            decode_dynamic)
    if checkpoint is not None:
        shutil.copy(Path(checkpoint) / CONFIG_FILE, directory / CONFIG_FILE)
    else:
        (directory / CONFIG_FILE).write_text(policy.config.to_json())
    return OnnxExport(directory, directory / PREFILL_FILE, directory / DECODE_FILE)


def export_checkpoint(checkpoint: str | Path, directory: str | Path) -> OnnxExport:
    return export_onnx(load_checkpoint(checkpoint), directory, checkpoint)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_fingerprint(checkpoint: str | Path) -> dict:
    """What an export is valid for: the checkpoint's weights and config, the export format, the
    opset and the torch that traced it."""
    checkpoint = Path(checkpoint)
    return {"weights": file_digest(checkpoint / WEIGHTS_FILE), "config": file_digest(checkpoint / CONFIG_FILE),
            "format": EXPORT_FORMAT, "opset": OPSET, "torch": torch.__version__}


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gato_robot" / "onnx"


def cached_export(checkpoint: str | Path) -> Path:
    """The ONNX export of a checkpoint, made on first use and kept beside it (``<checkpoint>/onnx``;
    under ``$XDG_CACHE_HOME/gato_robot/onnx`` when the checkpoint's directory is read-only), made
    again whenever the weights, config, export format or torch change. Written to a scratch
    directory and renamed into place, so a reader never sees half an export; processes that ask for
    the same export at once take turns on a lock file beside it, and all but the first reuse its
    export."""
    checkpoint = Path(checkpoint)
    wanted = export_fingerprint(checkpoint)
    target = checkpoint / CACHED_EXPORT_DIR
    if not os.access(checkpoint, os.W_OK):
        target = _cache_root() / wanted["weights"][:16]
    if _is_current(target, wanted):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f"{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        if _is_current(target, wanted):  # another process exported it while this one waited
            return target
        scratch = target.with_name(f"{target.name}.partial-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        logging.getLogger(__name__).info("exporting %s to ONNX (%s)", checkpoint, target)
        export_checkpoint(checkpoint, scratch)
        (scratch / EXPORT_MANIFEST).write_text(json.dumps(wanted, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    return target


def _is_current(target: Path, wanted: dict) -> bool:
    """Whether ``target`` holds a complete export whose manifest matches ``wanted``."""
    try:
        return (json.loads((target / EXPORT_MANIFEST).read_text()) == wanted
                and all((target / name).is_file() for name in (PREFILL_FILE, DECODE_FILE)))
    except (OSError, ValueError):
        return False  # no export yet, or an unreadable manifest: export again
