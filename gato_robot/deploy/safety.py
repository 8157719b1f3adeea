"""The safety layer between the policy and the arm: limits, watchdog and hold.

Every joint command passes :meth:`SafetyLimits.filter` before it reaches an arm: joint positions
are clamped to the URDF limits, the change per control tick to the URDF velocity limits (scaled),
with the manufacturer's datasheet the change of that change to its acceleration limits (scaled
alike), and the gripper width to [0, max]; a non-finite command is refused (the caller holds).
:class:`Watchdog` decides whether sensor inputs are fit to act on (present, fresh by their stamp
*and* by when they arrived, not stamped in the future, finite, the right shape and encoding);
anything else means hold the last safe command and report why. :meth:`Watchdog.frozen_problem`
finds a driver that keeps re-stamping the same data: a camera whose pixels stay identical while
the arm moves, joint states whose values stay identical while the commands move.
:meth:`Watchdog.plausibility` finds measurements that no healthy arm produces (joints outside their
limits, or far from where they were commanded): the control loop latches an e-stop on those.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..observation import Frame, JointCommand, JointSample
from ..task import RGB_STACKING


class UnsafeCommand(ValueError):
    """A command that cannot be made safe by clamping (NaN/Inf, wrong size)."""


@dataclass(frozen=True)
class SafetyLimits:
    """Joint limits in radians (arm joints, URDF order), rad/s, rad/s^2, metres. ``acceleration``:
    None where no datasheet states one (a URDF has none; the simulators, which made the training
    data, ran without); ``velocity_scale`` scales it as it scales the velocities."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    control_period_s: float = RGB_STACKING.control_period_s
    velocity_scale: float = 0.9
    max_gripper_width_m: float = 0.08
    acceleration: np.ndarray | None = None

    @classmethod
    def from_kinematics(cls, kinematics, control_period_s: float = RGB_STACKING.control_period_s, velocity_scale: float = 0.9,
                        max_gripper_width_m: float = 0.08) -> "SafetyLimits":
        acceleration = kinematics.acceleration_limit
        return cls(kinematics.lower.copy(), kinematics.upper.copy(), kinematics.velocity_limit.copy(),
                   control_period_s, velocity_scale, max_gripper_width_m,
                   None if acceleration is None else acceleration.copy())

    @property
    def max_step(self) -> np.ndarray:
        """Largest change of each joint target per tick (rad)."""
        return self.velocity * self.velocity_scale * self.control_period_s

    @property
    def max_step_change(self) -> np.ndarray | None:
        """Largest change of each joint's per-tick step from one tick to the next (rad), or None."""
        if self.acceleration is None:
            return None
        return self.acceleration * self.velocity_scale * self.control_period_s ** 2

    def filter(self, command: JointCommand, previous: JointCommand,
               previous_step: np.ndarray | None = None) -> tuple[JointCommand, list[str]]:
        """Clamp ``command`` against the limits and the ``previous`` command (and, with an
        acceleration limit, the step that led to ``previous``: zeros after a stop or hold); returns
        the safe command and the list of limits that were hit (empty if none)."""
        positions = np.asarray(command.arm_positions, dtype=np.float64)
        if positions.shape != self.lower.shape:
            raise UnsafeCommand(f"command has {positions.size} joint targets, the arm has {self.lower.size}")
        if not np.all(np.isfinite(positions)) or not np.isfinite(command.gripper_width):
            raise UnsafeCommand(f"non-finite command: joints {positions}, gripper {command.gripper_width}")
        anchor = np.asarray(previous.arm_positions, dtype=np.float64)
        if anchor.shape != self.lower.shape or not np.all(np.isfinite(anchor)):
            raise UnsafeCommand(f"previous command {anchor} is not {self.lower.size} finite joint targets: "
                                "no bounded step can be taken from it")
        hits = []
        clamped = np.clip(positions, self.lower, self.upper)
        if np.any(clamped != positions):
            hits.append("joint position limit")
        step = np.clip(clamped - anchor, -self.max_step, self.max_step)
        if np.any(anchor + step != clamped):
            hits.append("joint velocity limit")
        if previous_step is not None and self.max_step_change is not None:
            last = np.asarray(previous_step, dtype=np.float64)
            if last.shape != self.lower.shape or not np.all(np.isfinite(last)):
                raise UnsafeCommand(f"previous step {last} is not {self.lower.size} finite joint steps: "
                                    "no acceleration-bounded step can be taken from it")
            low = np.maximum(-self.max_step, last - self.max_step_change)
            high = np.minimum(self.max_step, last + self.max_step_change)
            smooth = np.clip(step, np.minimum(low, high), high)
            if np.any(smooth != step):
                hits.append("joint acceleration limit")
            step = smooth
        width = float(np.clip(command.gripper_width, 0.0, self.max_gripper_width_m))
        if width != command.gripper_width:
            hits.append("gripper width limit")
        return JointCommand(np.clip(anchor + step, self.lower, self.upper), width), hits


@dataclass(frozen=True)
class WatchdogConfig:
    """Ages in seconds, angles in radians.

    max_future_s: a stamp this far ahead of the loop's clock is refused (a driver with a wrong clock
        would otherwise look fresh forever); receive times are checked against the same ages.
    joint_limit_margin_rad: measured joints beyond the URDF limits by more than this are implausible.
    max_tracking_error_rad: measured joints this far from the last command are implausible (a
        collision, a slipping encoder, someone else commanding the arm).
    max_frozen_s, frozen_motion_rad: a camera image (joint state) whose exact values have not changed
        for longer than ``max_frozen_s`` while the measured joints (the commands) moved by more
        than ``frozen_motion_rad`` comes from a frozen driver, however fresh its stamps; 0 s: off
        (for test rigs whose fake sensors publish one still scene).
    """

    max_image_age_s: float = 0.25
    max_joint_state_age_s: float = 0.1
    image_shape: tuple[int, int, int] = (128, 128, 3)
    joint_count: int = 7
    max_future_s: float = 0.05
    joint_limit_margin_rad: float = 0.05
    max_tracking_error_rad: float = 0.3
    max_frozen_s: float = 0.5
    frozen_motion_rad: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_image_age_s", "max_joint_state_age_s", "max_future_s", "joint_limit_margin_rad",
                     "max_tracking_error_rad", "frozen_motion_rad"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"watchdog {name} must be a positive number, got {value}")
        if not (np.isfinite(self.max_frozen_s) and 0 <= self.max_frozen_s <= 5.0):
            raise ValueError(f"watchdog max_frozen_s must be in [0, 5] s (0: off), got {self.max_frozen_s}")
        if self.max_image_age_s > 2.0 or self.max_joint_state_age_s > 1.0:
            raise ValueError(f"watchdog ages {self.max_image_age_s} s (images) / {self.max_joint_state_age_s} s "
                             "(joints) would let the policy act on stale data: at most 2 s / 1 s")


class MotionHistory:
    """Measured and commanded arm joints (rad) of the recent acting ticks, to ask how far the arm
    moved, or was told to move, since a time (s, the loop's clock)."""

    def __init__(self, horizon_s: float = 10.0):
        self.horizon_s = horizon_s
        self._samples: deque[tuple[float, np.ndarray, np.ndarray]] = deque()

    def clear(self) -> None:
        self._samples.clear()

    def record(self, now_s: float, measured: np.ndarray, commanded: np.ndarray) -> None:
        self._samples.append((now_s, np.asarray(measured, dtype=np.float64), np.asarray(commanded, dtype=np.float64)))
        while self._samples and now_s - self._samples[0][0] > self.horizon_s:
            self._samples.popleft()

    def moved_since(self, since_s: float) -> tuple[float, float]:
        """Largest joint displacement (rad) of the measurement and of the command from the last
        sample at or before ``since_s`` (the oldest kept, if none) to the newest; (0, 0) if empty."""
        if not self._samples:
            return 0.0, 0.0
        then = self._samples[0]
        for sample in self._samples:
            if sample[0] > since_s:
                break
            then = sample
        now = self._samples[-1]
        return float(np.max(np.abs(now[1] - then[1]))), float(np.max(np.abs(now[2] - then[2])))


class Watchdog:
    """Checks sensor inputs; returns the reason to hold, or None when they are fit to act on."""

    def __init__(self, config: WatchdogConfig, camera_names: tuple[str, ...]):
        self.config, self.camera_names = config, camera_names

    def _age_problem(self, what: str, stamp_s: float, received_s: float | None, now_s: float,
                     max_age_s: float) -> str | None:
        if stamp_s - now_s > self.config.max_future_s:
            return f"{what} is stamped {(stamp_s - now_s) * 1e3:.0f} ms in the future (clock skew?)"
        for kind, time_s in (("", stamp_s), (" (by receive time)", received_s)):
            if time_s is not None and now_s - time_s > max_age_s:
                return f"{what} is stale{kind}: {(now_s - time_s) * 1e3:.0f} ms old (max {max_age_s * 1e3:.0f} ms)"
        return None

    def joint_problem(self, joints: JointSample | None, now_s: float) -> str | None:
        cfg = self.config
        if joints is None:
            return "no joint state received"
        stale = self._age_problem("joint state", joints.stamp_s, joints.received_s, now_s, cfg.max_joint_state_age_s)
        if stale:
            return stale
        positions, velocities = np.asarray(joints.positions), np.asarray(joints.velocities)
        if positions.shape != (cfg.joint_count,) or velocities.shape != (cfg.joint_count,):
            return (f"joint state: expected {cfg.joint_count} positions and velocities, "
                    f"got {positions.shape} and {velocities.shape}")
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(velocities)) and np.isfinite(joints.gripper_width)):
            return "joint state contains NaN/Inf"
        return None

    def image_problem(self, frames: dict[str, Frame], now_s: float) -> str | None:
        cfg = self.config
        for name in self.camera_names:
            frame = frames.get(name)
            if frame is None:
                return f"camera '{name}': no image received"
            stale = self._age_problem(f"camera '{name}'", frame.stamp_s, frame.received_s, now_s, cfg.max_image_age_s)
            if stale:
                return stale
            image = frame.image
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != cfg.image_shape:
                shape = getattr(image, "shape", None)
                dtype = getattr(image, "dtype", type(image).__name__)
                expected = "x".join(map(str, cfg.image_shape))
                return f"camera '{name}': expected {expected} uint8, got {shape} {dtype}"
        return None

    def frozen_problem(self, frames: dict[str, Frame], joints: JointSample, now_s: float,
                       history: MotionHistory) -> str | None:
        """A driver re-stamping frozen data: pixels identical for longer than ``max_frozen_s`` while
        the measured joints moved, or joint values identical while the commands moved, by more than
        ``frozen_motion_rad``. Inputs without ``unchanged_since_s`` (simulators) are not checked."""
        cfg = self.config
        if cfg.max_frozen_s == 0:
            return None
        sources = [(f"camera '{name}' sends the same image", frames[name].unchanged_since_s, 0, "the arm moved")
                   for name in self.camera_names]
        sources.append(("joint state has not changed", joints.unchanged_since_s, 1, "the commands moved"))
        for what, since_s, which, motion in sources:
            if since_s is None or now_s - since_s <= cfg.max_frozen_s:
                continue
            moved = history.moved_since(since_s)[which]
            if moved > cfg.frozen_motion_rad:
                return (f"{what} for {now_s - since_s:.2f} s while {motion} {moved:.3f} rad "
                        f"(max {cfg.max_frozen_s} s): frozen driver?")
        return None

    def plausibility(self, measured: np.ndarray, commanded: np.ndarray | None, limits: SafetyLimits) -> str | None:
        """Why measured joint positions (rad) cannot be trusted, or None: outside the joint limits
        by more than the margin, or farther than the tracking bound from the last ``commanded``."""
        cfg, measured = self.config, np.asarray(measured, dtype=np.float64)
        outside = (measured < limits.lower - cfg.joint_limit_margin_rad) | (measured > limits.upper + cfg.joint_limit_margin_rad)
        if np.any(outside):
            joint = int(np.flatnonzero(outside)[0])
            return (f"joint {joint + 1} measured at {measured[joint]:.3f} rad, outside its limits "
                    f"[{limits.lower[joint]:.3f}, {limits.upper[joint]:.3f}]")
        if commanded is not None:
            error = np.abs(measured - np.asarray(commanded))
            if np.max(error) > cfg.max_tracking_error_rad:
                joint = int(np.argmax(error))
                return (f"joint {joint + 1} is {error[joint]:.3f} rad from its command "
                        f"(max {cfg.max_tracking_error_rad} rad): collision, encoder fault or another commander")
        return None
