"""Property-based tests (hypothesis) of the safety layer against adversarial inputs: whatever the
policy, the previous command or the sensors hand it, no command leaves the position, velocity and
gripper limits, and every refusal is a hold with a reason."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gato_robot.robot.action_path import CartesianActionMapper, JointCommand
from gato_robot.robot.description import ArmDescription
from gato_robot.deploy.control import ControlLoop, LoopState
from gato_robot.deploy.policy import GatoDeployment
from gato_robot.task import RGB_STACKING
from gato_robot.model.config import preset
from gato_robot.runtime.base import PolicyRunner
from gato_robot.deploy.safety import Frame, JointSample, SafetyLimits, UnsafeCommand

MAPPER = CartesianActionMapper()
LIMITS = SafetyLimits.from_kinematics(MAPPER.kinematics)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)
EPS = 1e-12


def within_limits(positions: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> joint positions inside the URDF limits."""
    return LIMITS.lower + np.asarray(positions) * (LIMITS.upper - LIMITS.lower)


def assert_safe(command: JointCommand, previous: np.ndarray) -> None:
    q = command.arm_positions
    assert np.all(np.isfinite(q)) and np.all(q >= LIMITS.lower) and np.all(q <= LIMITS.upper)
    assert np.all(np.abs(q - previous) <= LIMITS.max_step + EPS)
    assert 0.0 <= command.gripper_width <= LIMITS.max_gripper_width_m


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_FLOAT, min_size=7, max_size=7), ANY_FLOAT,
       st.lists(st.floats(0, 1), min_size=7, max_size=7), st.floats(0, 0.08))
def test_filter_never_passes_an_unbounded_command(targets, width, previous_fraction, previous_width):
    previous = JointCommand(within_limits(previous_fraction), previous_width)
    command = JointCommand(np.asarray(targets), width)
    finite = np.all(np.isfinite(targets)) and np.isfinite(width)
    if not finite:
        with pytest.raises(UnsafeCommand, match="non-finite command"):
            LIMITS.filter(command, previous)
        return
    safe, hits = LIMITS.filter(command, previous)
    assert_safe(safe, previous.arm_positions)
    moved_fully = np.allclose(safe.arm_positions, targets) and safe.gripper_width == width
    assert moved_fully or hits  # anything short of the request says which limit bound it


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY_FLOAT, min_size=0, max_size=9), st.lists(ANY_FLOAT, min_size=0, max_size=9))
def test_filter_refuses_wrong_sizes_and_non_finite_previous_commands(targets, previous):
    command, last = JointCommand(np.asarray(targets), 0.04), JointCommand(np.asarray(previous), 0.04)
    ok_target = len(targets) == 7 and np.all(np.isfinite(targets))
    ok_previous = len(previous) == 7 and np.all(np.isfinite(previous))
    if ok_target and ok_previous:
        safe, _ = LIMITS.filter(command, last)
        assert np.all(safe.arm_positions >= LIMITS.lower) and np.all(safe.arm_positions <= LIMITS.upper)
    else:
        with pytest.raises(UnsafeCommand):
            LIMITS.filter(command, last)


class AdversarialRunner(PolicyRunner):
    """Returns whatever it is given: any shape, any integers (bins out of range, negative), floats."""

    backend = "adversarial"

    def __init__(self, outputs):
        super().__init__(preset("tiny"))
        self.outputs = list(outputs)

    def reset(self) -> None:
        pass

    def act(self, observation):
        output = self.outputs.pop(0)
        if isinstance(output, Exception):
            raise output
        return output


BIN_ARRAYS = st.one_of(
    st.lists(st.integers(-5000, 5000), min_size=5, max_size=5).map(lambda v: np.asarray(v, dtype=np.int64)),
    st.lists(st.integers(0, 1023), min_size=0, max_size=8).map(lambda v: np.asarray(v, dtype=np.int64)),
    st.lists(ANY_FLOAT, min_size=5, max_size=5).map(np.asarray),
    st.sampled_from([RuntimeError("CUDA error: an illegal memory access"), FloatingPointError("overflow")]),
)


@pytest.fixture(scope="module")
def sensors():
    from gato_robot.sim.rollout import make_env

    env = make_env("mujoco", "test-2-holes")
    observation, _ = env.reset(seed=2)
    env.close()
    return observation


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(BIN_ARRAYS, min_size=1, max_size=12))
def test_tick_with_any_runner_output_acts_within_limits_or_holds_with_a_reason(sensors, outputs):
    loop = ControlLoop(GatoDeployment(AdversarialRunner(outputs), RGB_STACKING.instruction), MAPPER, limits=LIMITS)
    loop.enable(JointSample(sensors["joint_positions"], sensors["joint_velocities"], 0.04, 0.0))
    for tick in range(len(outputs)):
        now = 0.05 * (tick + 1)
        previous = loop.last_command
        frames = {name: Frame(sensors[name], now) for name in ("front_left", "front_right")}
        result = loop.tick(now, frames, JointSample(sensors["joint_positions"], sensors["joint_velocities"], 0.04, now))
        assert_safe(result.command, previous.arm_positions)
        if result.state is LoopState.ACTIVE:
            assert result.reason == "ok" and np.all(np.isfinite(result.action))
        else:
            assert result.state is LoopState.HOLDING and result.reason
            assert result.command is previous  # a hold is the last safe command, unchanged


DATASHEET_MAPPER = CartesianActionMapper(ArmDescription(datasheet="panda"))  # as the node builds it on a Panda
DATASHEET_LIMITS = SafetyLimits.from_kinematics(DATASHEET_MAPPER.kinematics)


def test_only_a_datasheet_brings_an_acceleration_limit():
    assert LIMITS.acceleration is None and LIMITS.max_step_change is None  # the URDF's, as the simulators ran
    np.testing.assert_array_equal(DATASHEET_LIMITS.acceleration, [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0])
    # 20 Hz at 0.9 of the limits: joint 2 may change its step by 0.9 * 7.5 * 0.05^2 = 0.0169 rad per tick
    assert DATASHEET_LIMITS.max_step_change[1] == pytest.approx(0.016875)


def assert_acceleration_bounded(command: np.ndarray, previous: np.ndarray, last_step: np.ndarray) -> None:
    limits = DATASHEET_LIMITS
    step = command - previous
    at_position_limit = (command == limits.lower) | (command == limits.upper)
    assert np.all((np.abs(step - last_step) <= limits.max_step_change + EPS) | at_position_limit)
    assert np.all(np.abs(step) <= limits.max_step + EPS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=7, max_size=7), st.lists(st.floats(0, 1), min_size=7, max_size=7),
       st.lists(st.floats(-1, 1), min_size=7, max_size=7))
def test_filter_bounds_each_change_of_step_by_the_datasheet_acceleration(targets, previous_fraction, last_fraction):
    limits = DATASHEET_LIMITS
    previous = JointCommand(limits.lower + np.asarray(previous_fraction) * (limits.upper - limits.lower), 0.04)
    last_step = np.asarray(last_fraction) * limits.max_step
    safe, hits = limits.filter(JointCommand(np.asarray(targets), 0.04), previous, last_step)
    assert_acceleration_bounded(safe.arm_positions, previous.arm_positions, last_step)
    assert np.allclose(safe.arm_positions, targets) or hits
    if "joint acceleration limit" in hits:  # it bound: without the previous step the command goes further
        unbounded, _ = limits.filter(JointCommand(np.asarray(targets), 0.04), previous)
        assert np.abs(unbounded.arm_positions - np.asarray(targets)).sum() < \
            np.abs(safe.arm_positions - np.asarray(targets)).sum()
    with pytest.raises(UnsafeCommand, match="previous step"):
        limits.filter(JointCommand(np.asarray(targets), 0.04), previous, np.full(7, np.nan))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(BIN_ARRAYS, min_size=2, max_size=12))
def test_the_loop_accelerates_within_the_datasheet_and_resumes_from_rest_after_a_hold(sensors, outputs):
    loop = ControlLoop(GatoDeployment(AdversarialRunner(outputs), RGB_STACKING.instruction), DATASHEET_MAPPER,
                       limits=DATASHEET_LIMITS)
    loop.enable(JointSample(sensors["joint_positions"], sensors["joint_velocities"], 0.04, 0.0))
    last_step = np.zeros(7)  # enabled at rest
    for tick in range(len(outputs)):
        now = 0.05 * (tick + 1)
        previous = loop.last_command
        frames = {name: Frame(sensors[name], now) for name in ("front_left", "front_right")}
        result = loop.tick(now, frames, JointSample(sensors["joint_positions"], sensors["joint_velocities"], 0.04, now))
        assert_acceleration_bounded(result.command.arm_positions, previous.arm_positions, last_step)
        last_step = result.command.arm_positions - previous.arm_positions  # a hold: zeros
        np.testing.assert_array_equal(loop.last_step, last_step)


def test_a_full_wrist_reversal_is_spread_over_ticks_by_the_acceleration_limit(sensors):
    """Full yaw rate one way, then the other (bins 1023 then 0: +-1 rad/s, joint 7 steps of ~0.05 rad):
    the reversal would change joint 7's step by ~0.1 rad in one tick, above 0.9 * 20 * 0.05^2 = 0.045."""
    outputs = [np.full(5, 1023), np.full(5, 1023), np.full(5, 0), np.full(5, 0)]
    loop = ControlLoop(GatoDeployment(AdversarialRunner(outputs), RGB_STACKING.instruction), DATASHEET_MAPPER,
                       limits=DATASHEET_LIMITS)
    loop.enable(JointSample(sensors["joint_positions"], sensors["joint_velocities"], 0.04, 0.0))
    steps, hits = [np.zeros(7)], []
    for tick in range(len(outputs)):
        now = 0.05 * (tick + 1)
        previous = loop.last_command.arm_positions
        frames = {name: Frame(sensors[name], now) for name in ("front_left", "front_right")}
        result = loop.tick(now, frames, JointSample(previous, sensors["joint_velocities"], 0.04, now))
        assert result.state is LoopState.ACTIVE
        steps.append(result.command.arm_positions - previous)
        hits.append(result.limits_hit)
    changes = np.abs(np.diff(np.asarray(steps), axis=0))
    assert np.all(changes <= DATASHEET_LIMITS.max_step_change + EPS)
    assert "joint acceleration limit" in hits[2]  # the reversal tick
    assert np.sign(steps[2][6]) == np.sign(steps[1][6]) != np.sign(steps[4][6])  # it slows, then turns
