"""The RGB-stacking task, one spec (Lee et al. 2021; Gato's robotics domain, Reed et al. 2022 Sec.
5.2): the values every layer of the stack must agree on. The tokenizer's timestep layout, the
control loop, the action path, the safety filter, the simulated scene and the node's parameter
defaults take them from here instead of keeping copies. Light: no heavy imports.

Frames and units: actions in the robot base frame (``actions``: m/s, rad/s, gripper in [-1, 1]);
proprioception as :data:`gato_robot.proprio.PROPRIO_LAYOUT`; images uint8 RGB, row 0 at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

from .action_spec import RGB_STACKING_ACTIONS, ActionSpec
from .proprio import PROPRIO_DIM


@dataclass(frozen=True)
class TaskSpec:
    name: str
    rate_hz: float  # control rate (Hz): one observation and one action per period
    instruction: str  # the text tokens' source (Gato conditions on it every timestep)
    camera_names: tuple[str, ...]  # token order of the images
    image_height: int  # pixels
    image_width: int
    actions: ActionSpec
    proprio_dim: int
    episode_steps: int  # control periods per episode (simulation)

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def episode_seconds(self) -> float:
        return self.episode_steps * self.control_period_s


RGB_STACKING = TaskSpec(
    name="rgb_stacking",
    rate_hz=20.0,
    instruction="stack the red object on the blue object",
    camera_names=("front_left", "front_right"),
    image_height=128,
    image_width=128,
    actions=RGB_STACKING_ACTIONS,
    proprio_dim=PROPRIO_DIM,
    episode_steps=400,  # 20 s
)
