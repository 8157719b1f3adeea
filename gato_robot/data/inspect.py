"""What a store holds, and what one episode looks like, before anything is trained on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from .episodes import EpisodeReader, EpisodeStore


@dataclass(frozen=True)
class StoreSummary:
    episodes: int
    kept_by_return_filter: int  # what training uses (Gato's 80% rule, EpisodeStore.episodes)
    successes: int
    relabelled: int
    timesteps: int
    by_source: dict[tuple[str, str], int]  # (engine, triplet) -> episodes
    cameras: tuple[str, ...]
    steps_range: tuple[int, int]


def summarize_store(store: EpisodeStore, min_return_fraction: float = 0.8) -> StoreSummary:
    metas = store.episodes()
    if not metas:
        raise ValueError(f"episode store {store.root} holds no episodes")
    kept = store.episodes(min_return_fraction)
    steps = [m.steps for m in metas]
    return StoreSummary(len(metas), len(kept), sum(m.success for m in metas), sum(m.relabelled for m in metas),
                        int(sum(steps)), dict(Counter((m.engine, m.triplet) for m in metas)),
                        tuple(sorted({c for m in metas for c in m.cameras})), (min(steps), max(steps)))


def contact_sheet(path: str | Path, rows: int = 8, spec: ActionSpec = RGB_STACKING_ACTIONS) -> np.ndarray:
    """One episode as an RGB image: ``rows`` evenly spaced timesteps, one column per camera,
    each row captioned with its step, the action (normalized to the bounds) and the gripper width."""
    import cv2

    from ..proprio import PROPRIO_OFFSETS

    with EpisodeReader(path) as reader:
        picks = np.unique(np.linspace(0, reader.steps - 1, min(rows, reader.steps)).round().astype(int))
        lines = []
        for t in picks:
            images = reader.images(int(t), int(t) + 1)
            strip = np.concatenate([images[name][0] for name in reader.cameras], axis=1)
            action = spec.normalize(reader.actions(int(t), int(t) + 1)[0])
            width = float(reader.proprio(int(t), int(t) + 1)[0, PROPRIO_OFFSETS["gripper_width"]])
            caption = np.full((18, strip.shape[1], 3), 255, np.uint8)
            text = f"t={t} a=" + " ".join(f"{v:+.2f}" for v in action) + f" w={100 * width:.1f}cm"
            cv2.putText(caption, text, (3, 13), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
            lines.append(np.concatenate([caption, strip], axis=0))
    return np.concatenate(lines, axis=0)


def episode_frames(path: str | Path) -> list[np.ndarray]:
    """Every timestep's cameras side by side (for a video)."""
    with EpisodeReader(path) as reader:
        images = reader.images(0, reader.steps)
        return [np.concatenate([images[name][t] for name in reader.cameras], axis=1) for t in range(reader.steps)]
