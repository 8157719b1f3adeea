"""The control loop: one tick of the one-way flow, the same in sim, replay and on the real arm.

    latest frames + joint state -> watchdog -> Observation -> policy (Gato: tokenizer ->
    PolicyRunner -> detokenize; or BC-IMP) -> action path (Cartesian velocity -> joint targets) ->
    SafetyLimits -> command

:class:`ControlLoop` owns no clock and no I/O: adapters (simulators, rosbag replay, the rclpy node)
call :meth:`ControlLoop.tick` at the control rate with their latest inputs and send the command
it returns. Nothing moves until :meth:`enable`. An e-stop (asked for, or latched by the loop on an
implausible measurement: joints outside their limits or far from their command) survives
:meth:`disable` and refuses :meth:`enable` until an explicit :meth:`reset_estop`; an e-stop given
a measurement holds the arm where it is, not at a command it may have been knocked away from.
Whenever inputs are unfit or anything fails, the command is the last safe one (hold) and the
result says why; a good tick within ``max_hold_s`` resumes with a fresh policy context, and a hold
that lasts longer latches an e-stop: after a real fault nothing resumes by itself. Every decision
is logged with its reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

import numpy as np

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..robot.action_path import CartesianActionMapper
from ..observation import Frame, JointCommand, JointSample, Observation
from ..proprio import GRASP_SENSOR, grasp_detected
from .policy import DeployedPolicy
from .safety import MotionHistory, SafetyLimits, UnsafeCommand, Watchdog, WatchdogConfig
from ..task import RGB_STACKING
from ..tokenizer.errors import TokenizationError

log = logging.getLogger("gato_robot.deploy.control")
ENABLE_WORKSPACE_TOLERANCE_M = 0.02
"""How far outside the workspace box (m) the TCP may be when the loop is enabled."""


class LoopState(str, Enum):
    DISABLED = "disabled"
    ACTIVE = "active"
    HOLDING = "holding"
    ESTOPPED = "estopped"


@dataclass(frozen=True)
class ControlConfig:
    """``max_step_periods``: the action step integrates over the measured time since the last
    acting tick, bounded to [1/k, k] nominal periods, so a late tick neither stalls the arm's speed
    nor turns a stall into one large step (the safety filter bounds each step as well).
    ``max_hold_s``: a hold on unfit inputs or a failing policy step that lasts longer than this
    (seconds of the loop's clock) latches an e-stop; shorter ones (a late frame) resume by themselves."""

    rate_hz: float = RGB_STACKING.rate_hz
    instruction: str = RGB_STACKING.instruction
    watchdog: WatchdogConfig = WatchdogConfig()
    max_step_periods: float = 1.5
    max_hold_s: float = 1.0

    def __post_init__(self):
        if not self.max_step_periods >= 1.0:
            raise ValueError(f"max_step_periods must be >= 1, got {self.max_step_periods}")
        if not (np.isfinite(self.max_hold_s) and 0 < self.max_hold_s <= 10.0):
            raise ValueError(f"max_hold_s must be in (0, 10] s, got {self.max_hold_s}")

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz


@dataclass(frozen=True)
class TickResult:
    command: JointCommand | None  # None only before the loop was ever seeded (nothing to hold)
    state: LoopState
    reason: str
    action: np.ndarray | None = None  # physical action the policy chose (m/s, rad/s, gripper)
    limits_hit: tuple[str, ...] = ()
    stage_seconds: dict[str, float] = field(default_factory=dict)
    deadline_missed: bool = False


@dataclass
class PendingTick:
    """A tick past the watchdog and the policy's encoder, waiting for the policy's action."""
    now_s: float
    started: float  # perf_counter at the tick's start
    stages: dict[str, float]
    positions: np.ndarray  # measured arm joints (rad)
    encoded: object | None  # the observation as the policy takes it (Gato: its tokens)
    fresh_context: bool  # the policy must forget past timesteps before acting on ``encoded``


@dataclass
class LoopStatistics:
    ticks: int = 0
    active_ticks: int = 0
    held_ticks: int = 0
    deadline_misses: int = 0
    last_reason: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)


class ControlLoop:
    def __init__(self, policy: DeployedPolicy, mapper: CartesianActionMapper, config: ControlConfig = ControlConfig(),
                 limits: SafetyLimits | None = None, spec: ActionSpec = RGB_STACKING_ACTIONS):
        """``policy``: any :class:`~gato_robot.deploy.policy.DeployedPolicy` (Gato on any backend,
        BC-IMP), e.g. from :func:`~gato_robot.deploy.policy.load_policy`."""
        self.policy, self.mapper, self.config, self.spec = policy, mapper, config, spec
        self.limits = limits or SafetyLimits.from_kinematics(mapper.kinematics, config.period_s,
                                                             max_gripper_width_m=mapper.arm.max_gripper_width_m)
        self.watchdog = Watchdog(config.watchdog, policy.inputs.camera_names)
        self.state = LoopState.DISABLED
        self.last_command: JointCommand | None = None
        self.last_step = np.zeros_like(self.limits.lower)  # rad per tick that led to last_command (zeros: stopped)
        self.stats = LoopStatistics()
        self.estop_reason = ""
        self._needs_fresh_context = True
        self._last_active_s: float | None = None  # time of the last tick that acted
        self._holding_since_s: float | None = None  # time of the first tick of the current hold
        self.history = MotionHistory()  # measured and commanded joints of recent ticks (frozen drivers)

    def warm_up(self, iterations: int = 3) -> float:
        """Run the policy ``iterations`` times on a blank observation and forget it
        (:meth:`DeployedPolicy.warm_up`): a backend's first calls allocate, compile or autotune, and
        must not be the first tick on the arm. Moves nothing; the actions that follow are those of a
        loop that never warmed up. Returns the last call's wall time (s)."""
        elapsed = self.policy.warm_up(iterations)
        self._needs_fresh_context = True
        return elapsed

    # -- modes ---------------------------------------------------------------------------------------
    def enable(self, measured: JointSample) -> None:
        """Start acting, seeded from the measured position (the first command holds it)."""
        if self.state is LoopState.ESTOPPED:
            raise RuntimeError(f"e-stop is latched ({self.estop_reason}): reset it explicitly, then enable")
        positions = np.asarray(measured.positions, dtype=np.float64)
        if positions.shape != self.limits.lower.shape or not np.all(np.isfinite(positions)):
            raise ValueError(f"cannot enable from an invalid joint state {positions}")
        implausible = self.watchdog.plausibility(positions, None, self.limits)
        if implausible:
            raise ValueError(f"cannot enable: {implausible}")
        tcp, box = self.mapper.tcp_pose(positions)[:3], self.mapper.config.workspace
        if not box.contains(tcp, tolerance=ENABLE_WORKSPACE_TOLERANCE_M):  # the first ticks would drag it in
            raise ValueError(f"cannot enable: the TCP at {np.round(tcp, 3).tolist()} m is outside the workspace box "
                             f"{list(box.low)} - {list(box.high)} m; move the arm into it first")
        self.last_command = JointCommand(np.clip(positions, self.limits.lower, self.limits.upper),
                                         float(np.clip(measured.gripper_width, 0, self.limits.max_gripper_width_m)))
        self.state, self._needs_fresh_context, self._last_active_s = LoopState.ACTIVE, True, None
        self._holding_since_s, self.last_step = None, np.zeros_like(self.limits.lower)
        self.history.clear()
        log.info("enabled at %s", np.round(positions, 4).tolist())

    def disable(self) -> None:
        """Hold (a new enable is needed to move); a latched e-stop stays latched."""
        if self.state is not LoopState.ESTOPPED:
            self.state = LoopState.DISABLED
        log.info("disabled: holding")

    def estop(self, reason: str = "e-stop requested", measured: JointSample | None = None) -> None:
        """Latch an e-stop. With ``measured`` joints the hold target becomes where the arm is
        (clipped into the limits; the gripper keeps its command): after a collision the arm stops
        there instead of being pushed back toward the command it was knocked away from."""
        self.state, self.estop_reason = LoopState.ESTOPPED, reason
        if measured is not None and self.last_command is not None:
            positions = np.asarray(measured.positions, dtype=np.float64)
            if positions.shape == self.limits.lower.shape and np.all(np.isfinite(positions)):
                self.last_command = JointCommand(np.clip(positions, self.limits.lower, self.limits.upper),
                                                 self.last_command.gripper_width)
        log.warning("E-STOP latched: %s", reason)

    def reset_estop(self) -> bool:
        """Clear a latched e-stop (an operator's explicit act); the loop stays disabled until
        :meth:`enable`. Returns whether an e-stop was latched."""
        latched = self.state is LoopState.ESTOPPED
        if latched:
            self.state, self.estop_reason = LoopState.DISABLED, ""
            log.warning("e-stop reset by the operator: disabled until enabled")
        return latched

    def step_period(self, now_s: float) -> float:
        """Seconds this tick's action is integrated over: the time since the last acting tick,
        bounded to [1/k, k] nominal periods (``max_step_periods`` = k); nominal after a hold."""
        nominal, k = self.config.period_s, self.config.max_step_periods
        if self._last_active_s is None:
            return nominal
        return float(np.clip(now_s - self._last_active_s, nominal / k, nominal * k))

    # -- one tick ------------------------------------------------------------------------------------
    def _hold(self, state: LoopState, reason: str, started: float, stages: dict,
              now_s: float | None = None) -> TickResult:
        if state is LoopState.HOLDING:  # a fault hold: resumes by itself only within max_hold_s
            if self._holding_since_s is None:
                self._holding_since_s = now_s
            elif now_s - self._holding_since_s > self.config.max_hold_s:
                reason = (f"held {now_s - self._holding_since_s:.2f} s (max_hold_s {self.config.max_hold_s:g}): "
                          f"{reason}")
                self.estop(reason)
                state, reason = LoopState.ESTOPPED, f"e-stop latched: {reason}"
        self.stats.held_ticks += 1
        if reason != self.stats.last_reason:
            log.warning("holding (%s): %s", state.value, reason)
        self.stats.last_reason = reason
        self._needs_fresh_context, self._last_active_s = True, None
        self.last_step = np.zeros_like(self.limits.lower)  # a hold stops: motion resumes from rest
        return self._finish(TickResult(self.last_command, state, reason, stage_seconds=stages), started)

    def _finish(self, result: TickResult, started: float) -> TickResult:
        elapsed = time.perf_counter() - started
        missed = elapsed > self.config.period_s
        self.stats.ticks += 1
        self.stats.deadline_misses += int(missed)
        result.stage_seconds["total"] = elapsed
        self.stats.stage_seconds = dict(result.stage_seconds)
        return TickResult(result.command, result.state, result.reason, result.action, result.limits_hit,
                          result.stage_seconds, missed)

    def tick(self, now_s: float, frames: Mapping[str, Frame], joints: JointSample | None) -> TickResult:
        """One control tick: :meth:`begin_tick`, the policy, :meth:`end_tick`."""
        pending = self.begin_tick(now_s, frames, joints)
        if isinstance(pending, TickResult):
            return pending
        try:
            if pending.fresh_context:
                self.policy.reset()
            action = self.policy.act_batch([pending.encoded])[0]
        except Exception as error:
            return self.fail_tick(pending, error)
        pending.stages.update(self.policy.stage_seconds)
        return self.end_tick(pending, action)

    def begin_tick(self, now_s: float, frames: Mapping[str, Frame],
                   joints: JointSample | None) -> PendingTick | TickResult:
        """The tick up to the policy: mode, watchdog, plausibility, Observation, the policy's encoding
        of it (Gato: tokens). A hold comes back as its :class:`TickResult`; otherwise what the policy
        must act on. Batched simulation calls this on B loops, runs one batched policy call, then
        :meth:`end_tick`."""
        started, stages = time.perf_counter(), {}
        if self.state in (LoopState.DISABLED, LoopState.ESTOPPED):
            return self._hold(self.state, f"e-stop latched: {self.estop_reason}" if self.state is LoopState.ESTOPPED
                              else "not enabled", started, stages)
        frames = dict(frames)
        problem = self.watchdog.joint_problem(joints, now_s) or self.watchdog.image_problem(frames, now_s)
        if problem:
            return self._hold(LoopState.HOLDING, problem, started, stages, now_s)
        implausible = self.watchdog.plausibility(joints.positions, self.last_command.arm_positions, self.limits)
        if implausible:
            self.estop(implausible, measured=joints)
            return self._hold(LoopState.ESTOPPED, f"e-stop latched: {implausible}", started, stages)
        q = np.asarray(joints.positions, dtype=np.float64)
        self.history.record(now_s, q, self.last_command.arm_positions)
        frozen = self.watchdog.frozen_problem(frames, joints, now_s, self.history)
        if frozen:
            return self._hold(LoopState.HOLDING, frozen, started, stages, now_s)
        try:
            sensors = {**{name: frame.image for name, frame in frames.items()},
                       "joint_positions": q, "joint_velocities": joints.velocities,
                       "gripper_width": joints.gripper_width, "tcp_pose": self.mapper.tcp_pose(q),
                       GRASP_SENSOR: grasp_detected(self.last_command.gripper_width, joints.gripper_width,
                                                    self.limits.max_gripper_width_m)}
            observation = Observation.from_sensors(sensors, self.policy.inputs.camera_names, self.config.instruction)
            encoded = self.policy.encode(observation)
        except Exception as error:
            return self.fail_tick(PendingTick(now_s, started, stages, q, None, False), error)
        stages["encode"] = time.perf_counter() - started
        fresh, self._needs_fresh_context = self._needs_fresh_context, False
        return PendingTick(now_s, started, stages, q, encoded, fresh)

    def end_tick(self, pending: PendingTick, action: np.ndarray) -> TickResult:
        """The tick after the policy: physical action (m/s, rad/s, gripper) -> action path ->
        SafetyLimits. An e-stop or disable that arrived while the policy ran wins: the tick holds."""
        if self.state is not LoopState.ACTIVE:
            reason = f"e-stop latched: {self.estop_reason}" if self.state is LoopState.ESTOPPED else "not enabled"
            return self._hold(self.state, reason, pending.started, pending.stages, pending.now_s)
        mark = time.perf_counter()
        try:
            action = np.asarray(action, dtype=np.float64)
            if action.shape != (self.spec.dim,):
                raise ValueError(f"policy returned an action of shape {action.shape}, expected ({self.spec.dim},)")
            anchor = self.mapper.anchor(pending.positions, self.last_command.arm_positions)
            proposed = self.mapper(anchor, action, self.step_period(pending.now_s))
            command, hits = self.limits.filter(proposed, self.last_command, self.last_step)
        except Exception as error:
            return self.fail_tick(pending, error)
        pending.stages["action_path"] = time.perf_counter() - mark
        if hits:
            log.info("limits applied: %s", ", ".join(hits))
        if self.stats.last_reason:
            log.info("resuming: inputs are fit again")
        self.stats.last_reason = ""
        self.stats.active_ticks += 1
        self.last_step = command.arm_positions - self.last_command.arm_positions
        self.last_command, self._last_active_s, self._holding_since_s = command, pending.now_s, None
        return self._finish(TickResult(command, LoopState.ACTIVE, "ok", action, tuple(hits), pending.stages),
                            pending.started)

    def fail_tick(self, pending: PendingTick, error: Exception) -> TickResult:
        """Hold on an error anywhere in the policy step: bad inputs, the policy, the action path."""
        if isinstance(error, (TokenizationError, UnsafeCommand, ValueError, FloatingPointError)):
            reason = f"{type(error).__name__}: {error}"
        else:  # a crashing runtime must hold the arm, not kill the loop
            log.error("policy step failed", exc_info=error)
            reason = f"policy step failed: {type(error).__name__}: {error}"
        return self._hold(LoopState.HOLDING, reason, pending.started, pending.stages, pending.now_s)
