"""Object triplets: red (to stack), green (distractor), blue (the base).

Training objects combine two deformation axes with values from the training grids; the five test
triplets use values that never occur in training (a test checks it), as the benchmark's held-out
test triplets do (Lee et al. 2021). Blue objects always have a flat top so stacking is possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import ShapeParams

TRAIN_SIZES = (0.04, 0.045, 0.05, 0.055)
TRAIN_BEVELS = (0.2, 0.3)
TRAIN_HOLES = (0.25, 0.35)
TRAIN_SLANTS = (0.1, 0.2, 0.3)
AXES = ("size", "bevel", "hole", "slant", "prism")


@dataclass(frozen=True)
class Triplet:
    name: str
    red: ShapeParams
    green: ShapeParams
    blue: ShapeParams

    def objects(self) -> dict[str, ShapeParams]:
        return {"red": self.red, "green": self.green, "blue": self.blue}


def _training_object(rng: np.random.Generator, name: str, flat_top: bool) -> ShapeParams:
    axes = [a for a in AXES if not (flat_top and a == "prism")]
    first, second = rng.choice(len(axes), size=2, replace=False)
    chosen = {axes[first], axes[second]}
    if "hole" in chosen:
        chosen -= {"bevel", "prism"}
    if "bevel" in chosen and "prism" in chosen:
        chosen.discard("bevel")
    size = (0.05, 0.05, 0.05)
    if "size" in chosen:
        size = tuple(float(rng.choice(TRAIN_SIZES)) for _ in range(3))
    return ShapeParams(
        name=name,
        size=size,
        bevel=float(rng.choice(TRAIN_BEVELS)) if "bevel" in chosen else 0.0,
        hole=float(rng.choice(TRAIN_HOLES)) if "hole" in chosen else 0.0,
        slant=float(rng.choice(TRAIN_SLANTS)) if "slant" in chosen else 0.0,
        prism="prism" in chosen,
    )


def training_triplet(seed: int) -> Triplet:
    """The training triplet for an episode seed (deterministic)."""
    rng = np.random.default_rng([seed, 7])
    return Triplet(f"train-{seed}", _training_object(rng, "red", False), _training_object(rng, "green", False),
                   _training_object(rng, "blue", True))


TEST_TRIPLETS: tuple[Triplet, ...] = (
    Triplet("test-1-slanted",
            ShapeParams("red", size=(0.045, 0.05, 0.06), slant=0.5),
            ShapeParams("green", size=(0.06, 0.05, 0.05), prism=True),
            ShapeParams("blue", size=(0.065, 0.06, 0.035))),
    Triplet("test-2-holes",
            ShapeParams("red", size=(0.06, 0.06, 0.045), hole=0.5),
            ShapeParams("green", size=(0.05, 0.05, 0.05), bevel=0.5),
            ShapeParams("blue", size=(0.065, 0.06, 0.04), hole=0.45)),
    Triplet("test-3-prism",
            ShapeParams("red", size=(0.065, 0.05, 0.045), prism=True),
            ShapeParams("green", size=(0.05, 0.05, 0.06), slant=0.4),
            ShapeParams("blue", size=(0.06, 0.06, 0.05), bevel=0.5)),
    Triplet("test-4-flat",
            ShapeParams("red", size=(0.07, 0.06, 0.025), bevel=0.4),
            ShapeParams("green", size=(0.06, 0.06, 0.06), hole=0.45),
            ShapeParams("blue", size=(0.035, 0.06, 0.065))),
    Triplet("test-5-bevels",
            ShapeParams("red", size=(0.06, 0.035, 0.06), bevel=0.6),
            ShapeParams("green", size=(0.07, 0.06, 0.03), slant=0.5),
            ShapeParams("blue", size=(0.06, 0.065, 0.045), slant=0.4)),
)


def test_triplet(name_or_index: str | int) -> Triplet:
    if isinstance(name_or_index, int):
        return TEST_TRIPLETS[name_or_index]
    for triplet in TEST_TRIPLETS:
        if triplet.name == name_or_index or triplet.name.startswith(f"{name_or_index}-") or triplet.name.startswith(name_or_index):
            return triplet
    raise KeyError(f"unknown test triplet {name_or_index!r}; choose one of {[t.name for t in TEST_TRIPLETS]}")
