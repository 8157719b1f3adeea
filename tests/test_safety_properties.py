"""Property-based tests (hypothesis) of the safety layer against adversarial inputs: whatever the
policy, the previous command or the sensors hand it, no command leaves the position, velocity and
gripper limits, and every refusal is a hold with a reason."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gato_robot.robot.action_path import CartesianActionMapper, JointCommand
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
