"""Policies shipped inside the package: small safetensors checkpoints (``model.safetensors`` +
``config.json`` + a model card), addressed by name anywhere a checkpoint directory is accepted."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).parent
DEFAULT_POLICY = "gato-cpu-small"


def shipped_policies() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_policy(name_or_path: str) -> str:
    """"expert", a shipped policy's name (-> its directory), or a path, returned unchanged."""
    if name_or_path != "expert" and not Path(name_or_path).exists() and (SHIPPED_DIR / name_or_path).is_dir():
        return str(SHIPPED_DIR / name_or_path)
    return name_or_path


def ship(checkpoint: str | Path, name: str, card: str, dtype: str = "float16") -> Path:
    """Copy a checkpoint's weights (cast to ``dtype``: float16 halves the file, and loading casts
    back to float32) and config into the package as policy ``name``, with ``card`` as README.md."""
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = Path(checkpoint)
    target = SHIPPED_DIR / name
    target.mkdir(parents=True, exist_ok=True)
    with safe_open(str(source / "model.safetensors"), "pt") as weights:
        metadata = dict(weights.metadata() or {})
        tensors = {key: weights.get_tensor(key).to(getattr(torch, dtype)).contiguous() for key in weights.keys()}
    save_file(tensors, str(target / "model.safetensors"), metadata={**metadata, "shipped_dtype": dtype})
    shutil.copyfile(source / "config.json", target / "config.json")
    (target / "README.md").write_text(card)
    return target
