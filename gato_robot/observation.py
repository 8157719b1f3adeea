"""What a robot (real or simulated) hands the policy at one control tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Observation:
    """One timestep of sensor input.

    images: camera name -> uint8 HxWx3 RGB image.
    proprio: 1-D float vector in SI units (radians, rad/s, metres; poses in the robot base frame),
        laid out as the environment's ``proprio_layout`` says (joint angles, joint velocities,
        gripper width, TCP position and quaternion for RGB stacking).
    instruction: task text, e.g. "stack the red object on the blue object".
    """

    images: Mapping[str, np.ndarray]
    proprio: np.ndarray
    instruction: str = ""
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
