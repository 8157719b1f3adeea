"""Parametric object shapes for RGB stacking (after Lee et al. 2021, "Beyond Pick-and-Place").

Every object is a deformed cube. Deformation axes:

- ``size``: scaling along x, y, z (metres, full extents),
- ``bevel``: chamfered edges (fraction of the smallest half-extent cut off each edge),
- ``hole``: a square hole through the object along z (fraction of the smaller horizontal half-extent),
- ``slant``: the top shifted along x relative to the bottom (shear, metres of x per metre of height),
- ``prism``: a triangular cross-section in the x-z plane, extruded along y.

A shape is a list of convex parts (a holed cube is four boxes, exactly), so collision in both engines
uses exactly these convex pieces: no decomposition heuristics, identical geometry in MuJoCo and
PyBullet. Meshes are written once as OBJ files into a content-addressed cache directory.

Object frame: origin at the bounding-box centre, z up; the gripper closes along the object's y axis,
whose extent always fits the gripper (<= 0.065 m).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

MAX_GRASP_WIDTH_M = 0.065


@dataclass(frozen=True)
class ShapeParams:
    name: str
    size: tuple[float, float, float] = (0.05, 0.05, 0.05)
    bevel: float = 0.0
    hole: float = 0.0
    slant: float = 0.0
    prism: bool = False

    def __post_init__(self) -> None:
        if self.size[1] > MAX_GRASP_WIDTH_M:
            raise ValueError(f"shape {self.name}: y extent {self.size[1]} m exceeds the grasp width {MAX_GRASP_WIDTH_M} m")
        if self.hole and (self.prism or self.bevel):
            raise ValueError(f"shape {self.name}: a hole combines with size and slant only")
        if not 0 <= self.bevel < 0.8 or not 0 <= self.hole < 0.8:
            raise ValueError(f"shape {self.name}: bevel and hole are fractions in [0, 0.8)")

    @property
    def flat_top(self) -> bool:
        """Whether another object can rest on top (prisms end in a ridge)."""
        return not self.prism

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _box(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def convex_parts(params: ShapeParams) -> list[np.ndarray]:
    """Vertices (N, 3) of each convex part, object frame, metres."""
    half = np.asarray(params.size, dtype=np.float64) / 2
    if params.prism:
        parts = [np.array([[sx * half[0], y, -half[2]] for sx in (-1, 1) for y in (-half[1], half[1])]
                          + [[0.0, y, half[2]] for y in (-half[1], half[1])])]
    elif params.hole:
        w = params.hole * min(half[0], half[1])
        h = half
        parts = [_box(np.array([-h[0], -h[1], -h[2]]), np.array([-w, h[1], h[2]])),
                 _box(np.array([w, -h[1], -h[2]]), np.array([h[0], h[1], h[2]])),
                 _box(np.array([-w, -h[1], -h[2]]), np.array([w, -w, h[2]])),
                 _box(np.array([-w, w, -h[2]]), np.array([w, h[1], h[2]]))]
    elif params.bevel:
        c = params.bevel * half.min()
        points = []
        for sx in (-1, 1):
            for sy in (-1, 1):
                for sz in (-1, 1):
                    corner = np.array([sx, sy, sz]) * half
                    for axis in range(3):
                        p = corner.copy()
                        p[axis] -= np.sign(p[axis]) * c
                        points.append(p)
        parts = [np.array(points)]
    else:
        parts = [_box(-half, half)]
    if params.slant:
        parts = [p + np.outer(p[:, 2], [params.slant, 0.0, 0.0]) for p in parts]
    return parts


def part_meshes(params: ShapeParams) -> list[trimesh.Trimesh]:
    return [trimesh.Trimesh(vertices=p).convex_hull for p in convex_parts(params)]


def volume(params: ShapeParams) -> float:
    return float(sum(m.volume for m in part_meshes(params)))


def shape_cache_dir() -> Path:
    root = Path(os.environ.get("GATO_ROBOT_CACHE", Path.home() / ".cache" / "gato_robot"))
    return root / "shapes"


def mesh_files(params: ShapeParams) -> list[Path]:
    """OBJ file of each convex part, written once per distinct shape (atomic, content-addressed)."""
    directory = shape_cache_dir() / params.digest()
    paths = [directory / f"part{i}.obj" for i in range(len(convex_parts(params)))]
    if all(p.is_file() for p in paths):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    for path, mesh in zip(paths, part_meshes(params)):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(trimesh.exchange.obj.export_obj(mesh, include_normals=False, include_texture=False))
        os.replace(tmp, path)
    return paths
