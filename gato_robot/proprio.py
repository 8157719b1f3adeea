"""Proprioception layout shared by the simulators, the real arm and the tokenizer (22 values).

Order: 7 joint angles (rad), 7 joint velocities (rad/s), gripper width (m), TCP position (m, base
frame) and TCP orientation quaternion (x, y, z, w; base frame).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

PROPRIO_LAYOUT: tuple[tuple[str, int], ...] = (
    ("joint_positions", 7), ("joint_velocities", 7), ("gripper_width", 1), ("tcp_pose", 7),
)
PROPRIO_DIM = sum(size for _, size in PROPRIO_LAYOUT)
PROPRIO_OFFSETS: dict[str, int] = {key: sum(size for _, size in PROPRIO_LAYOUT[:i])
                                   for i, (key, _) in enumerate(PROPRIO_LAYOUT)}
"""Index of each part's first value in the flat vector (``gripper_width``: 14)."""

JOINT_VELOCITIES: tuple[int, ...] = tuple(range(PROPRIO_OFFSETS["joint_velocities"], PROPRIO_OFFSETS["gripper_width"]))
"""Indices of the 7 joint velocities (rad/s)."""
PLANAR_POSITION: tuple[int, ...] = tuple(range(PROPRIO_OFFSETS["joint_positions"], PROPRIO_OFFSETS["joint_velocities"])) + (
    PROPRIO_OFFSETS["tcp_pose"], PROPRIO_OFFSETS["tcp_pose"] + 1)
"""Indices that say where the gripper is in the table's plane: the 7 joint angles (rad; the TCP by
forward kinematics) and the TCP's x and y (m, base frame). Without them a policy has to find the
gripper's horizontal offset from the blocks in the camera images, as BC-IMP does."""


def proprio_keep_without(dropped) -> tuple[int, ...]:
    """The proprio indices left when ``dropped`` indices are left out, in layout order."""
    dropped = set(dropped)
    return check_proprio_keep([i for i in range(PROPRIO_DIM) if i not in dropped])


def proprio_keep_for(joint_velocities: bool = True, planar_position: bool = True) -> tuple[int, ...] | None:
    """The ``proprio_keep`` of a recipe that sees (or leaves out) the joint velocities and the planar
    position; None when it sees all 22 values."""
    dropped = (() if joint_velocities else JOINT_VELOCITIES) + (() if planar_position else PLANAR_POSITION)
    return proprio_keep_without(dropped) if dropped else None


def check_proprio_keep(keep, proprio_dim: int = PROPRIO_DIM) -> tuple[int, ...]:
    """``keep`` (indices of the proprio values a policy sees) as a tuple of ints, or a ValueError
    unless they are distinct, in [0, ``proprio_dim``) and at least one."""
    keep = tuple(int(i) for i in keep)
    if not keep or len(set(keep)) != len(keep) or not all(0 <= i < proprio_dim for i in keep):
        raise ValueError(f"proprio_keep must be distinct indices in [0, {proprio_dim}), got {keep}")
    return keep


def proprio_vector(observation: Mapping[str, np.ndarray]) -> np.ndarray:
    """Observation dict -> the flat (22,) float64 vector, in ``PROPRIO_LAYOUT`` order."""
    parts = []
    for key, size in PROPRIO_LAYOUT:
        value = np.asarray(observation[key], dtype=np.float64).reshape(-1)
        if value.shape != (size,):
            raise ValueError(f"proprio '{key}': expected {size} values, got shape {value.shape}")
        parts.append(value)
    return np.concatenate(parts)


GRASP_SENSOR = "gripper_grasp"
"""Sensor name of the grasp flag (:func:`grasp_detected`) in a sensors dict and ``Observation.extras``."""
GRASP_MIN_WIDTH_M = 0.005
"""Fingers commanded closed but held further apart than this (m) are closed on something."""


def grasp_detected(commanded_width_m, measured_width_m, max_width_m: float):
    """1.0 where the gripper holds something, else 0.0 (floats; numpy arrays broadcast).

    Holding: commanded closed (the finger target, m, below half the opening ``max_width_m``) and the
    fingers measured more than :data:`GRASP_MIN_WIDTH_M` apart, so something stops them. The
    RGB-stacking benchmark's robot reports such a flag (``gripper/grasp``, the Robotiq's object
    detection; Lee et al. 2021), libfranka as ``GripperState::is_grasped``. Unlike the width, it
    reads the same on a block of any size, so a closed grasp on an object wider than any training
    object reads as one (results/ablation-history.md round 28)."""
    closed = np.asarray(commanded_width_m) < 0.5 * max_width_m
    return (closed & (np.asarray(measured_width_m) > GRASP_MIN_WIDTH_M)).astype(np.float64)


def grasp_flags(widths_m: np.ndarray, gripper_actions: np.ndarray, max_width_m: float,
                previous_action: float = -1.0) -> np.ndarray:
    """The grasp flag of each timestep of a recorded stretch: (T,) finger widths (m) and (T,)
    gripper actions in [-1, 1] (+1 closes; the width target is ``max * (1 - a) / 2``, as the action
    path maps it). The command in force at timestep t is the action of t - 1; before the first,
    ``previous_action`` (-1, open, at an episode's start). A store records the expert's labels, not
    the executed actions (DART): where the executed gripper was flipped, the flag reads the label's."""
    before = np.concatenate([[previous_action], np.asarray(gripper_actions, np.float64)[:-1]])
    return grasp_detected(max_width_m * (1.0 - before) / 2.0, np.asarray(widths_m, np.float64), max_width_m)
