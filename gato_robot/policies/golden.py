"""Golden actions of a shipped policy: the action bins it chooses on fixed recorded observations,
through the whole deployment path (tokenizer, runner, decoding). ``scripts/golden_actions.py``
records them; a test replays them, so a change to preprocessing, tokenization, model code or
weights that changes an action fails it."""

from __future__ import annotations

import numpy as np

from ..proprio import PROPRIO_LAYOUT, PROPRIO_OFFSETS

DECODINGS = {"greedy": dict(temperature=0.0, expectation="off"),
             "expectation": dict(temperature=0.0, expectation="companded"),  # the shipped decoding
             "sampled": dict(temperature=1.0, expectation="off")}
"""Decoding name -> load_policy keyword arguments; sampling is seeded with SAMPLING_SEED."""
SAMPLING_SEED = 7


def sensors_at(images: dict[str, np.ndarray], proprio: np.ndarray, index: int) -> dict[str, np.ndarray]:
    """The sensors dict of recorded observation ``index`` (cameras + proprioception parts)."""
    sensors = {name: frames[index] for name, frames in images.items()}
    for key, size in PROPRIO_LAYOUT:
        sensors[key] = proprio[index, PROPRIO_OFFSETS[key]:PROPRIO_OFFSETS[key] + size]
    return sensors


def store_states(store, every: int = 1) -> list[dict[str, np.ndarray]]:
    """The sensors dicts of every ``every``-th recorded observation of every usable episode of the
    episode store at ``store``, in store order."""
    from ..data.episodes import EpisodeReader, EpisodeStore

    states = []
    for meta in EpisodeStore(store).episodes():
        with EpisodeReader(meta.path) as reader:
            images, proprio = reader.images(0, meta.steps), reader.proprio(0, meta.steps)
        states += [sensors_at(images, proprio, t) for t in range(0, meta.steps, every)]
    return states


def golden_bins(policy: str, instruction: str, images: dict[str, np.ndarray], proprio: np.ndarray) -> dict:
    """Action bins (N, action_dim) per decoding, each observation from a fresh context."""
    from ..deploy.policy import load_policy
    from ..observation import Observation

    out = {}
    for name, kwargs in DECODINGS.items():
        deployed = load_policy(policy, instruction=instruction, **kwargs)
        rows = []
        for index in range(len(proprio)):
            deployed.reset()
            deployed.seed(SAMPLING_SEED + index)
            observation = Observation.from_sensors(sensors_at(images, proprio, index), deployed.inputs.camera_names,
                                                   instruction)
            rows.append(deployed.runner.act(deployed.encode(observation)))
        out[name] = np.stack(rows)
    return out
