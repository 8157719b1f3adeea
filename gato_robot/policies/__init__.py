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
