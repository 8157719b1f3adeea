"""ControlLoop driving the real simulators as the arm, with fault injection."""

import numpy as np
import pytest
import torch

from gato_robot.robot.action_path import CartesianActionMapper, JointCommand
from gato_robot.deploy.control import ControlLoop, LoopState
from gato_robot.deploy.policy import GatoDeployment
from gato_robot.model.config import preset
from gato_robot.model.policy import GatoPolicy
from gato_robot.runtime.base import PolicyRunner
from gato_robot.runtime.torch_runner import TorchRunner
from gato_robot.observation import Frame, JointSample
from gato_robot.sim.closed_loop import run_closed_loop
from gato_robot.sim.rollout import make_env
from gato_robot.task import RGB_STACKING

MAPPER = CartesianActionMapper()


def deployed(runner: PolicyRunner) -> GatoDeployment:
    return GatoDeployment(runner, RGB_STACKING.instruction)


def tiny_policy(seed: int = 0) -> GatoDeployment:
    torch.manual_seed(seed)
    return deployed(TorchRunner(GatoPolicy(preset("tiny"))))


class ExtremePolicy(PolicyRunner):
    """Fault injection: a policy that always asks for the most extreme action it can express."""

    backend = "extreme"

    def __init__(self, config):
        super().__init__(config)
        self.count = 0

    def reset(self) -> None:
        pass

    def act(self, observation):
        self.count += 1
        return np.full(5, 1023 if self.count % 40 < 20 else 0, dtype=np.int64)


@pytest.fixture(scope="module")
def mujoco_env():
    env = make_env("mujoco", "test-2-holes")
    yield env
    env.close()


def assert_commands_are_safe(loop: ControlLoop, trace):
    limits = loop.limits
    previous = None
    for result in trace.results:
        q = result.command.arm_positions
        assert np.all(q >= limits.lower) and np.all(q <= limits.upper)
        assert 0.0 <= result.command.gripper_width <= limits.max_gripper_width_m
        if previous is not None:
            assert np.all(np.abs(q - previous) <= limits.max_step + 1e-12)
        previous = q


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_policy_runs_a_full_episode_through_the_loop(engine):
    env = make_env(engine, "train")
    loop = ControlLoop(tiny_policy(), MAPPER)
    trace = run_closed_loop(env, loop, steps=env.scene.episode_steps, seed=2)
    env.close()
    assert len(trace.results) == 400
    assert all(r.state is LoopState.ACTIVE and r.reason == "ok" for r in trace.results)
    assert loop.stats.active_ticks == 400 and loop.stats.ticks == 400
    assert_commands_are_safe(loop, trace)
    assert all({"encode", "prefill", "decode", "detokenize", "action_path", "total"} <= set(r.stage_seconds) for r in trace.results)
    # The policy's commands really drove the arm: the random tiny policy's near-constant action moves
    # the TCP ~1.6 cm in 400 ticks, steadily (not a settling millimetre at the start).
    path = np.array([MAPPER.tcp_pose(q)[:3] for q in trace.measured])
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert steps.sum() > 0.01 and steps[-100:].sum() > 0.2 * steps.sum() / 4


def _run_with_fault(env, fault, runner=None, steps=50):
    loop = ControlLoop(deployed(runner) if runner else tiny_policy(), MAPPER)
    return loop, run_closed_loop(env, loop, steps, seed=1, fault=fault)


def _held_ticks(trace, text):
    return [i for i, r in enumerate(trace.results) if r.state is LoopState.HOLDING and text in r.reason]


def assert_hold_then_recover(trace, text, first, last):
    held = _held_ticks(trace, text)
    assert held and held[0] >= first and held[-1] <= last, (held, [r.reason for r in trace.results])
    for i in held:  # holding means repeating the last safe command exactly
        np.testing.assert_array_equal(trace.results[i].command.arm_positions, trace.results[held[0] - 1].command.arm_positions)
    assert all(r.state is LoopState.ACTIVE for r in trace.results[last + 1:]), "loop did not recover"


def test_frozen_camera_holds_then_recovers(mujoco_env):
    frozen = {}

    def fault(tick, frames, joints):
        if 10 <= tick <= 30:
            frozen.setdefault("front_left", frames["front_left"])
            return {**frames, "front_left": frozen["front_left"]}, joints
        return frames, joints

    _, trace = _run_with_fault(mujoco_env, fault)
    assert_hold_then_recover(trace, "camera 'front_left' is stale", 14, 30)


def test_dropped_joint_states_hold_then_recover(mujoco_env):
    last = {}

    def fault(tick, frames, joints):
        if 10 <= tick <= 20:
            last.setdefault("joints", joints)
            return frames, last["joints"]
        return frames, joints

    _, trace = _run_with_fault(mujoco_env, fault)
    assert_hold_then_recover(trace, "joint state is stale", 12, 20)


def test_nan_joint_state_and_bad_image_hold_then_recover(mujoco_env):
    def fault(tick, frames, joints):
        if 10 <= tick <= 12:
            return frames, JointSample(np.r_[joints.positions[:6], np.nan], joints.velocities, joints.gripper_width,
                                       joints.stamp_s)
        if 20 <= tick <= 22:
            return {**frames, "front_right": Frame(np.zeros((480, 640, 3), np.uint8), frames["front_right"].stamp_s)}, joints
        return frames, joints

    _, trace = _run_with_fault(mujoco_env, fault, steps=40)
    assert _held_ticks(trace, "NaN/Inf") == [10, 11, 12]
    assert _held_ticks(trace, "expected 128x128x3 uint8, got (480, 640, 3)") == [20, 21, 22]
    assert all(trace.results[i].state is LoopState.ACTIVE for i in (13, 19, 23, 39))


def test_extreme_policy_stays_inside_every_limit(mujoco_env):
    runner = ExtremePolicy(preset("tiny"))
    loop, trace = _run_with_fault(mujoco_env, None, runner=runner, steps=120)
    assert_commands_are_safe(loop, trace)
    assert all(r.state is LoopState.ACTIVE for r in trace.results)
    bounds = np.asarray(MAPPER.spec.bounds)
    assert all(np.allclose(np.abs(r.action), bounds) for r in trace.results)  # every tick asks for the extreme
    workspace = MAPPER.config.workspace
    for q in trace.measured:
        assert workspace.contains(MAPPER.tcp_pose(q)[:3], tolerance=0.02)


def test_nothing_moves_until_enabled_and_estop_latches(mujoco_env):
    observation, _ = mujoco_env.reset(seed=0)
    frames = {c.name: Frame(observation[c.name], 0.0) for c in mujoco_env.scene.cameras}
    joints = JointSample(observation["joint_positions"], observation["joint_velocities"], 0.08, 0.0)
    loop = ControlLoop(tiny_policy(), MAPPER)
    result = loop.tick(0.0, frames, joints)
    assert result.state is LoopState.DISABLED and result.command is None and result.reason == "not enabled"
    loop.enable(joints)
    assert loop.tick(0.0, frames, joints).state is LoopState.ACTIVE
    held = loop.last_command
    loop.estop("operator")
    result = loop.tick(0.0, frames, joints)
    assert result.state is LoopState.ESTOPPED and result.command is held
    with pytest.raises(RuntimeError, match="e-stop is latched"):
        loop.enable(joints)
    loop.disable()  # deactivating does not clear the latch
    with pytest.raises(RuntimeError, match="e-stop is latched"):
        loop.enable(joints)
    assert loop.reset_estop() and loop.state is LoopState.DISABLED  # only the explicit reset does
    assert loop.tick(0.0, frames, joints).state is LoopState.DISABLED  # and it does not move by itself
    loop.enable(joints)
    assert loop.tick(0.0, frames, joints).state is LoopState.ACTIVE
    with pytest.raises(ValueError, match="invalid joint state"):
        loop.enable(JointSample(np.full(7, np.nan), np.zeros(7), 0.0, 0.0))
    turned = np.array(joints.positions, dtype=np.float64)
    turned[0] += 0.5  # base turned: the TCP 0.24 m to the side, outside the box
    with pytest.raises(ValueError, match="outside the workspace box"):
        loop.enable(JointSample(turned, np.zeros(7), 0.08, 0.0))
    # An e-stop that arrives while the policy runs (between begin_tick and end_tick) wins.
    held = loop.last_command
    pending = loop.begin_tick(0.0, frames, joints)
    action = loop.policy.act_batch([pending.encoded])[0]
    loop.estop("pressed mid-tick")
    result = loop.end_tick(pending, action)
    assert result.state is LoopState.ESTOPPED and result.command is held and "mid-tick" in result.reason


def test_safety_filter_refuses_nan_and_clamps(mujoco_env):
    loop = ControlLoop(tiny_policy(), MAPPER)
    previous = JointCommand(np.array(MAPPER.arm.home_joint_positions), 0.04)
    command, hits = loop.limits.filter(JointCommand(previous.arm_positions + 1.0, 0.5), previous)
    assert "joint velocity limit" in hits and "gripper width limit" in hits
    np.testing.assert_allclose(command.arm_positions - previous.arm_positions,
                               np.minimum(loop.limits.max_step, loop.limits.upper - previous.arm_positions))
    from gato_robot.deploy.safety import UnsafeCommand

    with pytest.raises(UnsafeCommand, match="non-finite"):
        loop.limits.filter(JointCommand(np.full(7, np.nan), 0.0), previous)


class CrashingPolicy(ExtremePolicy):
    """Fault injection: a runtime that fails mid-episode (e.g. a lost GPU) and then comes back."""

    def act(self, observation):
        self.count += 1
        if 10 <= self.count <= 12:
            raise RuntimeError("CUDA error: device lost")
        return np.full(5, 512, dtype=np.int64)


def test_runtime_failure_holds_and_recovers(mujoco_env):
    loop, trace = _run_with_fault(mujoco_env, None, runner=CrashingPolicy(preset("tiny")), steps=20)
    held = _held_ticks(trace, "policy step failed: RuntimeError: CUDA error: device lost")
    assert held == [9, 10, 11]
    assert all(trace.results[i].state is LoopState.ACTIVE for i in (8, 12, 19))


def test_watchdog_is_not_fooled_by_future_stamps_or_frozen_senders(mujoco_env):
    observation, _ = mujoco_env.reset(seed=0)
    loop = ControlLoop(tiny_policy(), MAPPER)
    cameras = [c.name for c in mujoco_env.scene.cameras]
    joints = JointSample(observation["joint_positions"], observation["joint_velocities"], 0.08, 0.0)
    loop.enable(joints)

    def tick(now, stamp, received):
        frames = {name: Frame(observation[name], stamp, received) for name in cameras}
        return loop.tick(now, frames, JointSample(joints.positions, joints.velocities, 0.08, stamp, received))

    assert tick(1.0, 1.0, 1.0).state is LoopState.ACTIVE
    result = tick(1.0, 6.0, 1.0)  # stamped 5 s ahead: refused, not "fresh"
    assert result.state is LoopState.HOLDING and "in the future" in result.reason
    result = tick(1.5, 1.5, 1.0)  # a sender re-stamping an old sample: stale by receive time
    assert result.state is LoopState.HOLDING and "stale (by receive time)" in result.reason
    assert tick(1.6, 1.6, 1.6).state is LoopState.ACTIVE  # recovers when inputs are fresh again (within max_hold_s)


def test_implausible_joint_measurements_latch_an_estop(mujoco_env):
    observation, _ = mujoco_env.reset(seed=0)
    frames = {c.name: Frame(observation[c.name], 0.0) for c in mujoco_env.scene.cameras}
    q = np.asarray(observation["joint_positions"], dtype=np.float64)
    loop = ControlLoop(tiny_policy(), MAPPER)
    loop.enable(JointSample(q, np.zeros(7), 0.08, 0.0))
    assert loop.tick(0.0, frames, JointSample(q, np.zeros(7), 0.08, 0.0)).state is LoopState.ACTIVE
    ahead = q.copy()
    ahead[1] += 0.5  # the arm is 0.5 rad away from where it was commanded (a collision pushed it)
    gripper = loop.last_command.gripper_width
    result = loop.tick(0.0, frames, JointSample(ahead, np.zeros(7), 0.08, 0.0))
    assert result.state is LoopState.ESTOPPED and "from its command" in result.reason
    held = result.command  # it stops where it is, not pushed back toward the old command
    np.testing.assert_array_equal(held.arm_positions, np.clip(ahead, loop.limits.lower, loop.limits.upper))
    assert held.gripper_width == gripper  # the gripper keeps its command (a grasp is not released)
    for _ in range(3):  # latched: no ratcheting toward the measurement, whatever comes next
        result = loop.tick(0.0, frames, JointSample(ahead + 0.1, np.zeros(7), 0.08, 0.0))
        assert result.state is LoopState.ESTOPPED and result.command is held
    assert loop.tick(0.0, frames, JointSample(q, np.zeros(7), 0.08, 0.0)).state is LoopState.ESTOPPED
    assert loop.reset_estop()
    outside = q.copy()
    outside[3] = loop.limits.upper[3] + 0.2
    with pytest.raises(ValueError, match="outside its limits"):
        loop.enable(JointSample(outside, np.zeros(7), 0.08, 0.0))
    loop.enable(JointSample(q, np.zeros(7), 0.08, 0.0))
    result = loop.tick(0.0, frames, JointSample(outside, np.zeros(7), 0.08, 0.0))
    assert result.state is LoopState.ESTOPPED and "outside its limits" in result.reason


def test_action_step_integrates_over_the_measured_period_within_bounds(mujoco_env):
    q = np.array(MAPPER.arm.home_joint_positions)
    slow = np.array([0.02, 0.0, 0.0, 0.0, -1.0])  # 2 cm/s: far below every velocity limit
    nominal, late = MAPPER(q, slow), MAPPER(q, slow, dt=0.075)
    moved = [np.linalg.norm(MAPPER.tcp_pose(c.arm_positions)[:3] - MAPPER.tcp_pose(q)[:3]) for c in (nominal, late)]
    assert moved[0] == pytest.approx(0.02 * 0.05, rel=0.05) and moved[1] == pytest.approx(0.02 * 0.075, rel=0.05)
    with pytest.raises(ValueError, match="positive number of seconds"):
        MAPPER(q, slow, dt=-0.05)

    observation, _ = mujoco_env.reset(seed=0)
    joints = JointSample(observation["joint_positions"], observation["joint_velocities"], 0.08, 0.0)
    loop = ControlLoop(tiny_policy(), MAPPER)
    loop.enable(joints)
    assert loop.step_period(10.0) == 0.05  # nothing acted yet: the nominal period

    def tick(now):
        frames = {c.name: Frame(observation[c.name], now) for c in mujoco_env.scene.cameras}
        return loop.tick(now, frames, JointSample(joints.positions, joints.velocities, 0.08, now))

    assert tick(1.0).state is LoopState.ACTIVE
    assert loop.step_period(1.06) == pytest.approx(0.06)  # measured
    assert loop.step_period(1.01) == pytest.approx(0.05 / 1.5)  # bounded below
    assert loop.step_period(3.0) == pytest.approx(0.05 * 1.5)  # a stall never becomes one large step
    loop.disable()
    tick(2.0)
    loop.enable(joints)
    assert loop.step_period(2.5) == 0.05  # after a hold: nominal again


def test_warm_up_runs_the_policy_but_leaves_no_trace(mujoco_env):
    """After warm_up the loop acts exactly as one that never warmed up: fresh context, same samples."""
    observation, _ = mujoco_env.reset(seed=4)
    results = []
    for warm in (False, True):
        torch.manual_seed(0)
        runner = TorchRunner(GatoPolicy(preset("tiny")), temperature=1.0)
        runner.seed(11)
        loop = ControlLoop(deployed(runner), MAPPER)
        calls = []
        act = runner.act
        runner.act = lambda tokens: calls.append(1) or act(tokens)
        if warm:
            assert loop.warm_up(iterations=2) > 0 and len(calls) == 2
        def joints(now):
            return JointSample(observation["joint_positions"], observation["joint_velocities"], 0.08, now)

        loop.enable(joints(0.0))
        frames = {name: Frame(observation[name], 0.0) for name in ("front_left", "front_right")}
        results.append([loop.tick(0.05 * i, frames, joints(0.05 * i)).action for i in range(4)])
        assert loop.state is LoopState.ACTIVE
    for cold, warm in zip(*results):
        np.testing.assert_array_equal(cold, warm)


def test_a_long_fault_hold_latches_an_estop_and_nothing_resumes_by_itself(mujoco_env):
    last = {}

    def fault(tick, frames, joints):  # joint states stop for 1.75 s (35 ticks), then come back
        if 10 <= tick < 45:
            last.setdefault("joints", joints)
            return frames, last["joints"]
        return frames, joints

    loop, trace = _run_with_fault(mujoco_env, fault, steps=60)
    states = [r.state for r in trace.results]
    held = _held_ticks(trace, "joint state is stale")
    latched = states.index(LoopState.ESTOPPED)
    assert held and held[0] == 12 and latched == held[0] + 21  # the first tick more than max_hold_s (1 s) in
    assert "held 1.05 s (max_hold_s 1): joint state is stale" in trace.results[latched].reason
    assert all(state is LoopState.ESTOPPED for state in states[latched:])  # fresh joints from tick 45: still latched
    assert all(np.array_equal(r.command.arm_positions, trace.results[held[0]].command.arm_positions)
               for r in trace.results[held[0]:])
    assert loop.reset_estop() and loop.state is LoopState.DISABLED  # only the operator's reset, then enable


class StillPolicy(ExtremePolicy):
    """The middle bin of every action dimension: the arm (nearly) stands still."""

    def act(self, observation):
        return np.full(5, 512, dtype=np.int64)


def test_watchdog_finds_drivers_that_restamp_frozen_data(mujoco_env):
    """Fresh stamps on unchanging data: pixels that stay identical while the arm moves, joint values
    that stay identical while the commands move. A still arm in front of a still camera is not one."""
    def freeze(what):
        kept = {}

        def fault(tick, frames, joints):
            if tick < 10:
                return frames, joints
            kept.setdefault("frame", frames["front_left"])
            kept.setdefault("joints", joints)
            since = kept["joints"].stamp_s
            if what == "camera":
                frozen = Frame(kept["frame"].image, frames["front_left"].stamp_s, None, since)
                return {**frames, "front_left": frozen}, joints
            old = kept["joints"]
            return frames, JointSample(old.positions, old.velocities, old.gripper_width, joints.stamp_s, None, since)
        return fault

    for what, reason in (("camera", "camera 'front_left' sends the same image"), ("joints", "joint state has not changed")):
        _, trace = _run_with_fault(mujoco_env, freeze(what), runner=ExtremePolicy(preset("tiny")), steps=40)
        held = [i for i, r in enumerate(trace.results) if reason in r.reason]
        assert held and 21 <= held[0] <= 30, (what, held, [r.reason for r in trace.results])
        assert all(trace.results[i].state is not LoopState.ACTIVE for i in range(held[0], 40))
        assert "frozen driver?" in trace.results[held[0]].reason

    def still_scene(tick, frames, joints):  # identical data from the first tick on, and nothing moves
        return ({name: Frame(f.image, f.stamp_s, None, 0.0) for name, f in frames.items()},
                JointSample(joints.positions, joints.velocities, joints.gripper_width, joints.stamp_s, None, 0.0))

    _, trace = _run_with_fault(mujoco_env, still_scene, runner=StillPolicy(preset("tiny")), steps=40)
    assert all(r.state is LoopState.ACTIVE for r in trace.results), [r.reason for r in trace.results]
