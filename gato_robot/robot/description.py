"""The arm gato_robot drives: a 7-DoF Franka Panda with a parallel gripper.

The URDF is the one that ships in ``pybullet_data`` (both simulators load it; Pinocchio computes
kinematics from it). A real cell passes its own URDF path; joint and frame names are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def default_panda_urdf() -> Path:
    """Path of ``franka_panda/panda.urdf`` inside ``pybullet_data`` (installed with the sim extra)."""
    try:
        import pybullet_data
    except ImportError as error:
        raise FileNotFoundError("the default Panda URDF ships with pybullet: pip install 'gato-robot[sim]' "
                                "or pass the robot's own URDF path") from error
    path = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    if not path.is_file():
        raise FileNotFoundError(f"Panda URDF not found at {path}")
    return path


@dataclass(frozen=True)
class DatasheetLimits:
    """The manufacturer's joint limits (rad, rad/s, rad/s^2; arm joints 1-7), from Franka's "Robot and
    interface specifications" (control_parameters, libfranka docs; accelerations: libfranka's
    ``kMaxJointAcceleration``, rate_limiting.h, the same for Panda and FR3). A URDF may be looser (the
    pybullet_data Panda allows +-2.9671 rad on joint 1) and has no acceleration limits; the controller
    takes the tighter of both."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    velocity: tuple[float, ...]
    acceleration: tuple[float, ...] = (15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0)


DATASHEETS: dict[str, DatasheetLimits] = {
    "panda": DatasheetLimits((-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
                             (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
                             (2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100)),
    "fr3": DatasheetLimits((-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
                           (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
                           (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)),
}


@dataclass(frozen=True)
class ArmDescription:
    """Names in the URDF and the gripper's geometry.

    tcp_frame: the tool centre point between the fingertips (``panda_grasptarget``: 0.105 m below
    the hand flange). Gripper width is the distance between the fingers, in metres. datasheet: a
    key of :data:`DATASHEETS` whose limits tighten the URDF's ("": the URDF's alone, as the
    simulators made the training data).
    """

    urdf_path: str = ""
    arm_joints: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
    finger_joints: tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")
    tcp_frame: str = "panda_grasptarget"
    base_frame: str = "panda_link0"
    max_gripper_width_m: float = 0.08
    datasheet: str = ""
    # Gripper pointing down, TCP at (0.5, 0, 0.19) m in the base frame: every episode starts here.
    home_joint_positions: tuple[float, ...] = (0.0, 0.0624, 0.0, -2.3814, 0.0, 2.4438, 0.7854)

    def __post_init__(self) -> None:
        if self.datasheet and self.datasheet not in DATASHEETS:
            raise ValueError(f"unknown arm datasheet {self.datasheet!r}; choose one of {sorted(DATASHEETS)} or ''")

    def resolved_urdf(self) -> Path:
        path = Path(self.urdf_path) if self.urdf_path else default_panda_urdf()
        if not path.is_file():
            raise FileNotFoundError(f"robot URDF not found: {path}")
        return path


PANDA = ArmDescription()
