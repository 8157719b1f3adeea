"""Object triplets: red (to stack), green (distractor), blue (the base).

Training objects combine two deformation axes with values from a training grid. Every test object
has at least one value off the grid, so no test object is ever a training object (a test checks it),
as the benchmark's held-out test triplets are (Lee et al. 2021). Blue objects always have a flat top
so stacking is possible.

Two grids, two training distributions:

- ``train`` (:data:`NARROW_GRID`): sizes 4-5.5 cm, bevels to 0.3, holes to 0.35, slants to 0.3.
  Every test object lies outside it on some axis (sizes 2.5-7 cm, bevels 0.4-0.6, ...), so the
  held-out test measures extrapolation.
- ``train-wide`` (:data:`WIDE_GRID`): the same axes over the range the test objects span (sizes
  2.25-7.25 cm, bevels to 0.65, holes to 0.55, slants to 0.55), with grid values interleaved
  between the test objects' values. As in the benchmark, whose training objects cover the
  parametric space the held-out triplets come from, the test then measures interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import MAX_GRASP_WIDTH_M, ShapeParams

AXES = ("size", "bevel", "hole", "slant", "prism")


@dataclass(frozen=True)
class TrainingGrid:
    """The values a training object's deformations take (sizes in metres per axis; bevel, hole and
    slant as fractions of the object, see :class:`ShapeParams`)."""

    name: str  # the triplet choice that selects it ("train", "train-wide"); episode triplets are NAME-SEED
    sizes: tuple[float, ...]
    bevels: tuple[float, ...]
    holes: tuple[float, ...]
    slants: tuple[float, ...]


NARROW_GRID = TrainingGrid("train", sizes=(0.04, 0.045, 0.05, 0.055), bevels=(0.2, 0.3), holes=(0.25, 0.35),
                           slants=(0.1, 0.2, 0.3))
WIDE_GRID = TrainingGrid("train-wide", sizes=(0.0225, 0.0275, 0.0325, 0.04, 0.045, 0.05, 0.055, 0.0625, 0.0675, 0.0725),
                         bevels=(0.2, 0.3, 0.45, 0.55, 0.65), holes=(0.25, 0.35, 0.4, 0.55),
                         slants=(0.1, 0.2, 0.3, 0.45, 0.55))
TRAINING_GRIDS = {grid.name: grid for grid in (NARROW_GRID, WIDE_GRID)}


@dataclass(frozen=True)
class Triplet:
    name: str
    red: ShapeParams
    green: ShapeParams
    blue: ShapeParams

    def objects(self) -> dict[str, ShapeParams]:
        return {"red": self.red, "green": self.green, "blue": self.blue}


def _training_object(rng: np.random.Generator, name: str, flat_top: bool, grid: TrainingGrid) -> ShapeParams:
    axes = [a for a in AXES if not (flat_top and a == "prism")]
    first, second = rng.choice(len(axes), size=2, replace=False)
    chosen = {axes[first], axes[second]}
    if "hole" in chosen:
        chosen -= {"bevel", "prism"}
    if "bevel" in chosen and "prism" in chosen:
        chosen.discard("bevel")
    size = (0.05, 0.05, 0.05)
    if "size" in chosen:  # the y extent (across the fingers) stays within the grasp width
        widths = [v for v in grid.sizes if v <= MAX_GRASP_WIDTH_M]
        size = (float(rng.choice(grid.sizes)), float(rng.choice(widths)), float(rng.choice(grid.sizes)))
    return ShapeParams(
        name=name,
        size=size,
        bevel=float(rng.choice(grid.bevels)) if "bevel" in chosen else 0.0,
        hole=float(rng.choice(grid.holes)) if "hole" in chosen else 0.0,
        slant=float(rng.choice(grid.slants)) if "slant" in chosen else 0.0,
        prism="prism" in chosen,
    )


def training_triplet(seed: int, grid: TrainingGrid = NARROW_GRID) -> Triplet:
    """The training triplet of ``grid`` for an episode seed (deterministic), named GRID-SEED."""
    rng = np.random.default_rng([seed, 7])
    return Triplet(f"{grid.name}-{seed}", _training_object(rng, "red", False, grid),
                   _training_object(rng, "green", False, grid), _training_object(rng, "blue", True, grid))


def training_distribution(triplet_name: str) -> str | None:
    """The training grid a triplet name was drawn from ("train-wide-17" -> "train-wide"), or None."""
    prefix, _, seed = triplet_name.rpartition("-")
    return prefix if prefix in TRAINING_GRIDS and seed.isdigit() else None


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
