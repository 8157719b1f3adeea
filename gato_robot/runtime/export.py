"""`gato-robot export onnx`: a checkpoint -> ``prefill.onnx`` + ``decode.onnx`` + ``config.json``.

Exported with the dynamo-based ``torch.onnx.export`` at opset ``OPSET`` (18: the first with
LayerNormalization-friendly Reduce ops taking axes as inputs and the one onnxscript's torchlib
targets). Graph contracts are in :mod:`gato_robot.runtime.graphs`; the prefill graph has a dynamic
token count ``seq`` and patch count ``patches``; the decode graph is fully static.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..model.checkpoint import CONFIG_FILE, load_checkpoint
from ..model.policy import GatoPolicy
from .graphs import DECODE_INPUTS, OUTPUTS, PREFILL_INPUTS, DecodeGraph, PrefillGraph

OPSET = 18
PREFILL_FILE = "prefill.onnx"
DECODE_FILE = "decode.onnx"


@dataclass(frozen=True)
class OnnxExport:
    directory: Path
    prefill: Path
    decode: Path


def cache_shape(policy: GatoPolicy) -> tuple[int, ...]:
    c = policy.config
    return (c.n_layer, 1, c.n_head, c.context_tokens, c.head_dim)


def example_prefill_inputs(policy: GatoPolicy) -> tuple[torch.Tensor, ...]:
    spec = policy.config.timestep
    length = spec.observation_tokens
    num_patches = len(spec.camera_names) * spec.patches_per_image
    image_index = torch.full((1, length), -1, dtype=torch.long)
    image_index[0, spec.text_tokens:spec.text_tokens + num_patches] = torch.arange(num_patches)
    # Distinct tensors per input: the exporter folds inputs that alias one tensor into one.
    zeros = lambda: torch.zeros(1, length, dtype=torch.long)  # noqa: E731
    return (zeros(), torch.arange(length).unsqueeze(0), zeros(), zeros(), image_index,
            torch.zeros(1, num_patches, 3, 16, 16), torch.zeros(cache_shape(policy)),
            torch.zeros(cache_shape(policy)), torch.zeros(1, dtype=torch.long))


def example_decode_inputs(policy: GatoPolicy) -> tuple[torch.Tensor, ...]:
    return (torch.full((1, 1), 32512, dtype=torch.long), torch.zeros(cache_shape(policy)),
            torch.zeros(cache_shape(policy)), torch.ones(1, dtype=torch.long))


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
    sequence = torch.export.Dim("seq", min=1, max=policy.config.context_tokens)
    patches = torch.export.Dim("patches", min=1, max=policy.config.context_tokens)
    per_token = {1: sequence}
    prefill_dynamic = {"token_ids": per_token, "obs_positions": per_token, "patch_rows": per_token,
                       "patch_cols": per_token, "image_index": per_token, "patches": {1: patches},
                       "cache_keys": None, "cache_values": None, "past_length": None}
    _export(PrefillGraph(policy), example_prefill_inputs(policy), directory / PREFILL_FILE, PREFILL_INPUTS,
            prefill_dynamic)
    _export(DecodeGraph(policy), example_decode_inputs(policy), directory / DECODE_FILE, DECODE_INPUTS, None)
    if checkpoint is not None:
        shutil.copy(Path(checkpoint) / CONFIG_FILE, directory / CONFIG_FILE)
    else:
        (directory / CONFIG_FILE).write_text(policy.config.to_json())
    return OnnxExport(directory, directory / PREFILL_FILE, directory / DECODE_FILE)


def export_checkpoint(checkpoint: str | Path, directory: str | Path) -> OnnxExport:
    return export_onnx(load_checkpoint(checkpoint), directory, checkpoint)
