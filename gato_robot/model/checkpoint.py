"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (:class:`GatoConfig`) in one directory."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..errors import DamagedFileError, reading

from .config import GatoConfig
from .policy import GatoPolicy

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_checkpoint(policy: GatoPolicy, directory: str | Path, metadata: dict | None = None) -> Path:
    """Write weights and config; ``metadata`` (strings) goes into the safetensors header."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(policy.config.to_json())
    save_model(policy, str(directory / WEIGHTS_FILE), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return directory


def load_config(directory: str | Path) -> GatoConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: expected {path}")
    try:
        return GatoConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, AttributeError, KeyError) as error:  # JSON syntax, or not a GatoConfig
        raise DamagedFileError(path, f"not a policy config ({type(error).__name__}: {error})") from error


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> GatoPolicy:
    """Load a checkpoint directory written by :func:`save_checkpoint`; strict about missing keys."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: expected {weights}")
    config = directory / CONFIG_FILE
    with reading(config, "policy config", ValueError, RuntimeError):  # widths that build no network
        policy = GatoPolicy(load_config(directory))
    try:
        load_model(policy, str(weights), strict=True, device=str(device))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise DamagedFileError(weights, f"cannot load the policy's weights into the network {config} describes "
                                        f"({type(error).__name__}: {error})") from error
    return policy.eval()
