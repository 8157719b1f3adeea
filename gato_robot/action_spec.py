"""The RGB-stacking action and its scaling to the policy's token range.

Action (Lee et al. 2021, RGB stacking, 20 Hz): Cartesian TCP velocity in the robot base frame
(x, y, z in m/s, bounded to +-0.07), wrist yaw rate (rad/s, +-1.0) and a gripper command in
[-1, 1] (-1 open, +1 closed). The policy sees each dimension divided by its bound, so every
action value it tokenizes lies in [-1, 1], where mu-law bins are finest (Gato Sec. 2.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionSpec:
    names: tuple[str, ...] = ("tcp_vx", "tcp_vy", "tcp_vz", "wrist_yaw_rate", "gripper")
    units: tuple[str, ...] = ("m/s", "m/s", "m/s", "rad/s", "1")
    bounds: tuple[float, ...] = (0.07, 0.07, 0.07, 1.0, 1.0)

    @property
    def dim(self) -> int:
        return len(self.names)

    def _check(self, values: np.ndarray, what: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1:] != (self.dim,):
            raise ValueError(f"{what}: expected trailing dimension {self.dim} ({', '.join(self.names)}), "
                             f"got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what}: expected finite values, got {values}")
        return values

    def normalize(self, action: np.ndarray) -> np.ndarray:
        """Physical action -> [-1, 1] per dimension (clipped at the bounds)."""
        return np.clip(self._check(action, "action") / np.asarray(self.bounds), -1.0, 1.0)

    def denormalize(self, normalized: np.ndarray) -> np.ndarray:
        """Policy output -> physical action; anything outside [-1, 1] is clipped to the bounds."""
        return np.clip(self._check(normalized, "normalized action"), -1.0, 1.0) * np.asarray(self.bounds)


RGB_STACKING_ACTIONS = ActionSpec()

GRIPPER_FIRST = (RGB_STACKING_ACTIONS.names.index("gripper"),
                 *(i for i, name in enumerate(RGB_STACKING_ACTIONS.names) if name != "gripper"))
"""Token order that decodes the gripper before the motion (``TimestepSpec.action_order``)."""
