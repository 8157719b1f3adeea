"""The rclpy node for real (ROS 2 Jazzy wheels, Fast DDS): lifecycle, topics, e-stop, watchdog,
parameters from --params-file, and the package/launch/params consistency."""

import ast
import contextlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import State as StateMsg  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from builtin_interfaces.msg import Time as TimeMsg  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from gato_robot.robot.action_path import CartesianActionMapper  # noqa: E402
from gato_robot.deploy.control import ControlLoop, LoopState  # noqa: E402
from gato_robot.deploy.policy import GatoDeployment  # noqa: E402
from gato_robot.model.checkpoint import save_checkpoint  # noqa: E402
from gato_robot.model.config import preset  # noqa: E402
from gato_robot.model.policy import GatoPolicy  # noqa: E402
from gato_robot.ros.convert import rgb_to_image_fields  # noqa: E402
from gato_robot.ros.node import NODE_NAME, PARAMETERS, GatoStackNode, check_parameter  # noqa: E402
from gato_robot.runtime.torch_runner import TorchRunner  # noqa: E402
from gato_robot.observation import Frame, JointSample  # noqa: E402
from gato_robot.sim.rollout import make_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ros_ws" / "src" / "gato_robot"
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]
PARAMS_KEY = f"/**/{NODE_NAME}"  # the config files' key: the node in any namespace
STILL_SCENE = [Parameter("max_frozen_input_s", value=0.0)]
"""The fake sensors publish one still scene while the policy commands motion: a real driver doing that
would be frozen (tested in test_control.py and below), so these tests turn that check off."""
LONG_HOLDS = [Parameter("max_hold_s", value=5.0)]
"""For tests whose fault holds last up to 2 s of node time and must recover; the latch after
max_hold_s has its own test."""


@pytest.fixture(scope="module")
def context():
    # Each run on its own DDS domain, so parallel CI jobs on one host never hear each other.
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(autouse=True)
def ros_home(tmp_path, monkeypatch):
    """Each test's own ROS_HOME: a node's e-stop latch file (default $ROS_HOME/gato_robot/) never
    reaches the next test, nor the user's ~/.ros."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))
    return tmp_path / "ros_home"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(GatoPolicy(preset("tiny")), tmp_path_factory.mktemp("ros") / "tiny")


@pytest.fixture(scope="module")
def sim_inputs():
    env = make_env("mujoco", "test-2-holes")
    observation, _ = env.reset(seed=3)
    env.close()
    return observation


class SimSensors:
    """A second node: publishes the sim's camera frames and joint states, records the commands."""

    def __init__(self, context, observation, clocked_period_s: float | None = None):
        self.node = rclpy.create_node("sim_sensors", context=context)
        group = ReentrantCallbackGroup()
        self.observation = observation
        self.images = {name: self.node.create_publisher(Image, f"/{name}/image_raw", 10)
                       for name in ("front_left", "front_right")}
        self.joints = self.node.create_publisher(JointState, "/joint_states", 10)
        self.commands: list[tuple[float, np.ndarray]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(Float64MultiArray, "/forward_position_controller/commands",
                                      lambda m: self.commands.append((time.monotonic(), np.array(m.data))), 10,
                                      callback_group=group)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10, callback_group=group)
        self.publish_joints = self.publish_images = True
        self.encoding = "rgb8"  # fault injection: what the image messages claim to be
        self.arm_names = list(ARM)  # fault injection: drop one to send a JointState missing a joint
        if clocked_period_s is None:
            self.node.create_timer(0.02, self.publish, callback_group=group)

    def publish(self, stamp=None):
        stamp = self.node.get_clock().now().to_msg() if stamp is None else stamp
        for name, publisher in self.images.items():
            if not self.publish_images:
                break
            message = Image(**{**rgb_to_image_fields(self.observation[name]), "encoding": self.encoding})
            message.header.stamp = stamp
            publisher.publish(message)
        if self.publish_joints:
            joints = dict(zip(ARM, self.observation["joint_positions"]))
            velocities = dict(zip(ARM, self.observation["joint_velocities"]))
            names = list(reversed(self.arm_names))  # by name, not index
            message = JointState(name=[*names, *FINGERS], position=[*(joints[n] for n in names), 0.04, 0.04],
                                 velocity=[*(velocities[n] for n in names), 0.0, 0.0])
            message.header.stamp = stamp
            self.joints.publish(message)


class ClockedSensors(SimSensors):
    """SimSensors on simulated time (the node runs with use_sim_time): the test advances /clock one
    control period at a time, waits for the node's tick, then publishes sensors stamped with the new
    time and waits until the node has them. Every tick therefore sees inputs exactly one period old,
    however loaded the cores are, and the node's timer fires once per step."""

    PERIOD_NS = 50_000_000  # 20 Hz

    def __init__(self, context, observation, node: GatoStackNode):
        super().__init__(context, observation, clocked_period_s=self.PERIOD_NS * 1e-9)
        self.stack = node
        self.clock = self.node.create_publisher(Clock, "/clock", 10)
        self.now_ns = 1_000_000_000  # a zero stamp would mean "no stamp" (receive time) to the node

    def _time(self):
        return TimeMsg(sec=self.now_ns // 10**9, nanosec=self.now_ns % 10**9)

    def publish_sensors(self) -> None:
        """Sensors stamped now; returns once the node holds the ones it was sent."""
        joints_before, frames_before = self.stack._joints, dict(self.stack._frames)
        self.publish(self._time())
        joints_valid = self.publish_joints and self.arm_names == ARM  # else the node rejects or never gets them
        images_valid = self.publish_images and self.encoding == "rgb8"
        assert wait_for(lambda: (not joints_valid or self.stack._joints is not joints_before)
                        and (not images_valid or len(self.stack._frames) == 2
                             and all(self.stack._frames[n] is not frames_before.get(n) for n in self.images)),
                        timeout=10), "the node did not receive the sensors"
        if not (joints_valid and images_valid):
            time.sleep(0.05)  # a rejected message has no stamp to wait for

    def step(self, ticks: int = 1, active: bool = True) -> None:
        """Advance /clock ``ticks`` periods; while active, each waits for the node's command."""
        for _ in range(ticks):
            count = len(self.commands)
            self.now_ns += self.PERIOD_NS
            self.clock.publish(Clock(clock=self._time()))
            if active:
                assert wait_for(lambda: len(self.commands) > count, timeout=10), "the node did not tick"
            else:
                time.sleep(0.05)  # nothing to wait for: an inactive node must stay silent
            self.publish_sensors()


@contextlib.contextmanager
def spinning(context, *nodes):
    """``nodes`` spun by one single-threaded executor (as main() runs the node) in a thread, then destroyed."""
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield executor
    finally:
        executor.shutdown()
        spinner.join(timeout=5)
        for node in nodes:
            node.destroy_node()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def reference_commands(checkpoint, observation, times, node_loop):
    """ControlLoop's commands for the same inputs, ticked at ``times`` (s): each action is
    integrated over the measured period, so the reference ticks when the node ticked; the action
    path, safety limits and action decoding are the node's (its parameters)."""
    node_runner = node_loop.policy.runner
    runner = TorchRunner.from_checkpoint(checkpoint, temperature=node_runner.temperature,
                                         expectation=node_runner.expectation)  # the node's decoding
    loop = ControlLoop(GatoDeployment(runner, node_loop.config.instruction), CartesianActionMapper(config=node_loop.mapper.config), limits=node_loop.limits)
    joints = JointSample(observation["joint_positions"], observation["joint_velocities"], 0.08, times[0])
    loop.enable(joints)
    commands = []
    for now in times:
        frames = {name: Frame(observation[name], now) for name in ("front_left", "front_right")}
        joints = JointSample(observation["joint_positions"], observation["joint_velocities"], 0.08, now)
        commands.append(loop.tick(now, frames, joints).command.arm_positions)
    return commands


def record_ticks(loop: ControlLoop) -> list[tuple[float, LoopState]]:
    """(time s, state) of every tick of ``loop`` (the node's own loop object), appended as it ticks."""
    ticks, tick = [], loop.tick

    def recording_tick(now_s, frames, joints):
        result = tick(now_s, frames, joints)
        ticks.append((now_s, result.state))
        return result

    loop.tick = recording_tick
    return ticks


def test_node_lifecycle_topics_watchdog_and_estop(context, checkpoint, sim_inputs):
    """On simulated time (the test steps /clock): one command per 50 ms tick, equal to ControlLoop's
    for the same inputs; a hold with its reason when joint states stop; the e-stop latch; the hold
    on shutdown. Deterministic on loaded cores: no wall-clock rate or age enters an assertion."""
    node = GatoStackNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch"),
        Parameter("use_sim_time", value=True), *STILL_SCENE, *LONG_HOLDS])
    executor = SingleThreadedExecutor(context=context)  # as main() runs it (see gato_robot.ros.node.main)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    sim = None
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE  # no joint state yet
        ticks = record_ticks(node.loop)
        sim = ClockedSensors(context, sim_inputs, node)
        executor.add_node(sim.node)
        sim.clock.publish(Clock(clock=sim._time()))
        assert wait_for(lambda: abs(node._now() - sim.now_ns * 1e-9) < 1e-9), "the node is not on /clock"
        sim.publish_sensors()
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        sim.step(30)

        # One command per 50 ms tick (20 Hz in the node's time), each ControlLoop's for the same inputs.
        assert len(sim.commands) == 30 and [state for _, state in ticks] == [LoopState.ACTIVE] * 30
        np.testing.assert_allclose(np.diff([t for t, _ in ticks]), 0.05, atol=1e-9)
        expected = reference_commands(checkpoint, sim_inputs, [t for t, _ in ticks], node.loop)
        for (_, got), want in zip(sim.commands, expected):
            np.testing.assert_allclose(got, want, atol=1e-9)

        # Joint states stop: stale after max_joint_state_age_s (0.1 s = 2 ticks); the node holds the
        # last command and says why on /diagnostics (published every second of node time).
        sim.publish_joints = False
        sim.step(3)
        count = len(sim.commands)
        sim.step(21)
        held = [c for _, c in sim.commands[count:]]
        assert len(held) == 21 and all(np.array_equal(c, held[0]) for c in held)
        assert all(state is LoopState.HOLDING for _, state in ticks[-21:])
        assert wait_for(lambda: any("joint state is stale" in kv.value for d in sim.diagnostics
                                    for s in d.status for kv in s.values), timeout=5)
        sim.publish_joints = True
        sim.publish_sensors()
        count = len(sim.commands)
        sim.step(8)
        resumed = [c for _, c in sim.commands[count:]]
        assert not all(np.array_equal(c, resumed[0]) for c in resumed)
        assert all(state is LoopState.ACTIVE for _, state in ticks[-8:])

        # E-stop latches until deactivate -> activate.
        client = sim.node.create_client(Trigger, f"/{NODE_NAME}/estop")
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done) and future.result().success
        count = len(sim.commands)
        sim.step(6)
        stopped = [c for _, c in sim.commands[count:]]
        assert len(stopped) == 6 and all(np.array_equal(c, stopped[0]) for c in stopped)
        assert node.loop.state.value == "estopped"
        reset = sim.node.create_client(Trigger, f"/{NODE_NAME}/reset_estop")
        assert reset.wait_for_service(timeout_sec=5)
        future = reset.call_async(Trigger.Request())
        assert wait_for(future.done) and not future.result().success  # refused while active
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE  # deactivate does not clear it
        assert node.loop.state.value == "estopped"
        future = reset.call_async(Trigger.Request())
        assert wait_for(future.done) and future.result().success
        assert node.loop.state.value == "disabled" and not node._active  # reset alone moves nothing
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node.loop.state.value == "active"
        sim.step(3)

        # Shutdown (what SIGINT/SIGTERM run in main()): one hold command, then inactive and silent.
        count = len(sim.commands)
        node.hold_and_deactivate()
        assert not node._active and node.loop.state.value == "disabled"
        assert wait_for(lambda: len(sim.commands) == count + 1)  # the hold
        np.testing.assert_array_equal(sim.commands[-1][1], node.loop.last_command.arm_positions)
        sim.step(10, active=False)
        assert len(sim.commands) == count + 1  # the loop no longer publishes
    finally:
        executor.shutdown()
        spinner.join(timeout=5)
        node.destroy_node()
        if sim is not None:
            sim.node.destroy_node()


def test_node_sensor_faults_and_lifecycle_edges_on_the_onnxruntime_backend(context, checkpoint, sim_inputs, tmp_path):
    """The default backend in the node, on simulated time; each sensor fault holds with its reason
    on /diagnostics and recovers; deactivate stops publishing; re-activation after the arm was moved
    by hand starts from the new measurement; cleanup -> configure -> activate works again."""
    from gato_robot.runtime.export import export_checkpoint

    export = export_checkpoint(checkpoint, tmp_path / "onnx")
    node = GatoStackNode(context=context, parameter_overrides=[Parameter("model_path", value=str(export.directory)),
                                                               Parameter("use_sim_time", value=True),
                                                               *STILL_SCENE, *LONG_HOLDS])
    sim = ClockedSensors(context, {**sim_inputs, "joint_positions": sim_inputs["joint_positions"].copy()}, node)

    def reported(text):  # diagnostics go out every second of node time: step until they say it
        for _ in range(30):
            if any(text in kv.value for d in sim.diagnostics[-3:] for st in d.status for kv in st.values):
                return True
            sim.step()
        return False

    def holding():
        count = len(sim.commands)
        sim.step(4)
        recent = [c for _, c in sim.commands[count:]]
        return all(np.array_equal(c, recent[0]) for c in recent)

    with spinning(context, node, sim.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.loop.policy.backend == "onnxruntime"
        sim.clock.publish(Clock(clock=sim._time()))
        assert wait_for(lambda: abs(node._now() - sim.now_ns * 1e-9) < 1e-9), "the node is not on /clock"
        sim.publish_sensors()
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        sim.step(2)
        assert not holding()

        for fault, reason, undo in (
                (lambda: setattr(sim, "encoding", "yuv422"), "image encoding 'yuv422' is not supported",
                 lambda: setattr(sim, "encoding", "rgb8")),
                (lambda: setattr(sim, "arm_names", ARM[:-1]), "lacks joint(s) ['panda_joint7']",
                 lambda: setattr(sim, "arm_names", list(ARM))),
                (lambda: setattr(sim, "publish_images", False), "is stale",
                 lambda: setattr(sim, "publish_images", True))):
            fault()
            sim.step(6)  # past max_image_age_s (0.25 s) and max_joint_state_age_s (0.1 s)
            assert holding(), reason
            assert reported(reason), reason
            undo()
            sim.publish_sensors()
            sim.step(2)
            assert not holding(), f"no recovery after: {reason}"
            assert reported("none"), f"input_problem not cleared after: {reason}"

        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        count = len(sim.commands)
        sim.step(8, active=False)
        assert len(sim.commands) - count <= 1  # the hold, then silence
        sim.observation["joint_positions"][0] += 0.2  # moved by hand while inactive
        sim.publish_sensors()
        count = len(sim.commands)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        sim.step(3)
        first = sim.commands[count][1]  # the first tick after activate: one bounded step from the new pose
        assert abs(first[0] - sim.observation["joint_positions"][0]) <= node.loop.limits.max_step[0] + 1e-9

        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and node.loop is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        sim.publish_sensors()
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        count = len(sim.commands)
        sim.step(5)
        assert len(sim.commands) == count + 5


def test_trajectory_mode_sends_arm_joints_starting_now_with_velocities_and_fits_other_camera_sizes(
        context, checkpoint, sim_inputs):
    """The real-arm output (franka_ros2 / MoveIt Servo conventions) and a 4:3 camera of another size."""
    import cv2

    node = GatoStackNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch"),
        Parameter("command_interface", value="trajectory"), Parameter("controller", value="fr3_arm_controller"),
        *STILL_SCENE])
    wide = {name: cv2.resize(sim_inputs[name], (256, 192)) for name in ("front_left", "front_right")}  # 4:3
    sim = SimSensors(context, {**sim_inputs, **wide})
    # camera_info beside each image topic: front_left's 192 rows span 45 deg as the training
    # cameras' do; front_right has a wide-angle lens (fy halved: 79 deg), which must be reported
    fy = 96 / np.tan(np.radians(22.5))
    infos = {name: CameraInfo(height=192, width=256, k=[f, 0.0, 127.5, 0.0, f, 95.5, 0.0, 0.0, 1.0])
             for name, f in (("front_left", fy), ("front_right", fy / 2))}
    info_publishers = {name: sim.node.create_publisher(CameraInfo, f"/{name}/camera_info", 10) for name in infos}
    sim.node.create_timer(0.1, lambda: [info_publishers[n].publish(m) for n, m in infos.items()])
    trajectories, fingers = [], []
    sim.node.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", trajectories.append, 10)
    sim.node.create_subscription(Float64MultiArray, "/gripper_forward_controller/commands",
                                 lambda m: fingers.append(list(m.data)), 10)
    with spinning(context, node, sim.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: node._joints is not None and len(node._frames) == 2)
        assert node._frames["front_left"].image.shape == (128, 128, 3)
        expected = cv2.resize(sim_inputs["front_left"][:, 16:112], (128, 128))  # the centre 3:4 of the 4:3 view
        assert np.abs(node._frames["front_left"].image.astype(int) - expected.astype(int)).mean() < 12
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: len(trajectories) >= 6 and len(fingers) >= 6)
        for message in trajectories[:6]:
            assert list(message.joint_names) == ARM  # no finger joints: the arm controller owns 7 joints
            assert message.header.stamp.sec == 0 and message.header.stamp.nanosec == 0  # start now
            (point,) = message.points
            assert len(point.positions) == 7 and len(point.velocities) == 7
            assert point.time_from_start.sec == 0 and point.time_from_start.nanosec == 50_000_000
        for before, after in zip(trajectories[1:5], trajectories[2:6]):
            step = np.subtract(after.points[0].positions, before.points[0].positions) / 0.05
            np.testing.assert_allclose(after.points[0].velocities, step, atol=1e-9)
        assert all(len(f) == 2 for f in fingers)
        assert wait_for(lambda: any("front_right" in value.value for d in sim.diagnostics for value in d.status[0].values
                                    if value.key == "camera_fovy_deg"))
        fovy = next(v.value for v in sim.diagnostics[-1].status[0].values if v.key == "camera_fovy_deg")
        assert fovy == "front_left 45.0; front_right 79.3 (training 45.0: differs)"


def test_node_estop_holds_where_the_arm_is_survives_cleanup_and_long_faults_latch(context, checkpoint, sim_inputs):
    """On simulated time: an e-stop while inactive publishes nothing and survives cleanup ->
    configure; while active it holds at the measured joints; a fault hold longer than max_hold_s
    latches, and fresh inputs do not resume; samples stamped before the newest are dropped;
    identical samples keep the time their values first arrived (the frozen-driver check's input)."""
    node = GatoStackNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch"),
        Parameter("use_sim_time", value=True), Parameter("max_hold_s", value=0.5), *STILL_SCENE])
    sim = ClockedSensors(context, {**sim_inputs, "joint_positions": sim_inputs["joint_positions"].copy()}, node)

    def call(service):
        client = sim.node.create_client(Trigger, f"/{NODE_NAME}/{service}")
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done)
        return future.result()

    with spinning(context, node, sim.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        sim.clock.publish(Clock(clock=sim._time()))
        assert wait_for(lambda: abs(node._now() - sim.now_ns * 1e-9) < 1e-9), "the node is not on /clock"
        sim.publish_sensors()
        first = node._joints
        sim.step(1, active=False)
        assert node._joints is not first and node._joints.unchanged_since_s == first.received_s < node._joints.received_s
        assert node._frames["front_left"].unchanged_since_s == first.received_s

        # An e-stop while inactive: latched, nothing published, and it survives cleanup -> configure.
        count = len(sim.commands)
        assert call("estop").success
        time.sleep(0.2)
        assert len(sim.commands) == count and node.loop.state is LoopState.ESTOPPED
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        sim.publish_sensors()
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE
        assert node.loop.state is LoopState.ESTOPPED and "e-stop service called" in node.loop.estop_reason
        assert call("reset_estop").success and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        sim.step(3)

        # Samples stamped before the newest are dropped, with the reason.
        joints = node._joints
        sim.publish(TimeMsg(sec=0, nanosec=500_000_000))
        assert wait_for(lambda: "joints" in node._input_problems and "front_left" in node._input_problems)
        assert node._joints is joints and "stamped before the previous one" in node._input_problems["joints"]
        sim.step(2)
        assert not node._input_problems

        # A fault hold past max_hold_s (0.5 s) latches; fresh joints again do not resume.
        sim.publish_joints = False
        sim.step(14)
        assert node.loop.state is LoopState.ESTOPPED and "held" in node.loop.estop_reason
        sim.publish_joints = True
        sim.publish_sensors()
        count = len(sim.commands)
        sim.step(4)
        assert node.loop.state is LoopState.ESTOPPED
        assert all(np.array_equal(c, sim.commands[count][1]) for _, c in sim.commands[count:])
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert call("reset_estop").success and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        sim.step(2)

        # An e-stop while active holds where the arm is measured, not at its last command.
        sim.observation["joint_positions"][0] += 0.1  # pushed, within the tracking bound
        sim.publish_sensors()
        count = len(sim.commands)
        assert call("estop").success
        assert wait_for(lambda: len(sim.commands) > count)
        np.testing.assert_allclose(sim.commands[count][1], sim.observation["joint_positions"], atol=1e-12)
        sim.step(3)
        assert all(np.array_equal(c, sim.commands[count][1]) for _, c in sim.commands[count:])


def test_a_latched_estop_survives_a_restart_of_the_process_until_reset(context, checkpoint, sim_inputs, ros_home):
    """Latched, then the process ends without cleanup (a crash, SIGKILL, a respawn): the next node
    comes up latched with the reason and refuses to activate; ~/reset_estop deletes the record. A
    latch the loop sets itself (a fault hold past max_hold_s) is recorded as well."""
    parameters = [Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch"),
                  Parameter("use_sim_time", value=True), Parameter("max_hold_s", value=0.5), *STILL_SCENE]
    record = ros_home / "gato_robot" / f"{NODE_NAME}.estop"

    def configured_node():
        node = GatoStackNode(context=context, parameter_overrides=parameters)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        return node

    first = configured_node()
    assert not record.exists() and first.loop.state is LoopState.DISABLED
    assert first._on_estop(Trigger.Request(), Trigger.Response()).success
    assert record.read_text().strip() == "e-stop service called"
    first.destroy_node()  # no deactivate, no cleanup: the process is gone

    second = configured_node()
    sim = ClockedSensors(context, {**sim_inputs, "joint_positions": sim_inputs["joint_positions"].copy()}, second)
    with spinning(context, second, sim.node):  # destroys both
        assert second.loop.state is LoopState.ESTOPPED
        assert "e-stop service called" in second.loop.estop_reason
        assert "before the node restarted" in second.loop.estop_reason
        sim.clock.publish(Clock(clock=sim._time()))
        assert wait_for(lambda: abs(second._now() - sim.now_ns * 1e-9) < 1e-9), "the node is not on /clock"
        sim.publish_sensors()
        assert second.trigger_activate() == TransitionCallbackReturn.FAILURE  # fresh joints, still latched
        assert second._on_reset_estop(Trigger.Request(), Trigger.Response()).success and not record.exists()
        assert second.trigger_activate() == TransitionCallbackReturn.SUCCESS
        sim.step(2)
        sim.publish_joints = False  # a fault hold past max_hold_s: the loop latches, the node records it
        sim.step(14)
        assert second.loop.state is LoopState.ESTOPPED and "held" in record.read_text()
    third = configured_node()
    try:
        assert third.loop.state is LoopState.ESTOPPED and "held" in third.loop.estop_reason
    finally:
        third.destroy_node()


def test_an_unreadable_or_undeletable_latch_record_keeps_the_estop_latched(tmp_path):
    from gato_robot.ros.estop_latch import UNREADABLE, EstopLatchFile, default_latch_path

    assert default_latch_path("/arm1/gato_robot_stack").name == "arm1__gato_robot_stack.estop"
    latch = EstopLatchFile(tmp_path / "latch" / "node.estop")
    assert latch.read() is None and not latch.latched
    latch.write("e-stop service called")
    assert EstopLatchFile(latch.path).read() == "e-stop service called"
    assert [p.name for p in latch.path.parent.iterdir()] == ["node.estop"]  # no temporary left behind
    latch.path.write_bytes(b"\xff\xfe\x00")  # damaged: not text
    damaged = EstopLatchFile(latch.path)
    assert UNREADABLE in damaged.read() and damaged.latched
    latch.path.unlink()
    latch.path.mkdir()  # neither a file nor deletable as one
    assert UNREADABLE in EstopLatchFile(latch.path).read()
    with pytest.raises(OSError):
        latch.clear()
    assert latch.latched


@pytest.mark.skipif(importlib.util.find_spec("control_msgs") is not None,
                    reason="checks the error where control_msgs is missing; a ROS machine has it")
def test_gripper_action_interface_without_control_msgs_fails_configure_with_a_clear_error(context, checkpoint):
    node = GatoStackNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch"),
        Parameter("gripper_interface", value="action")])
    messages = []
    node.get_logger().error = lambda message, **kw: messages.append(message)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.loop is None and "needs control_msgs" in messages[0]
    finally:
        node.destroy_node()


def test_parameters_are_described_checked_at_set_and_configure_and_frozen_while_configured(context, checkpoint):
    """Every parameter carries a description and its constraints; an invalid value is refused by
    `ros2 param set` and by configure with the parameter's name; once configured, a change is
    refused instead of being silently ignored until the next configure."""
    node = GatoStackNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch"),
        Parameter("rate_hz", value=0.0)])  # a launch file or params file can still pass a bad value
    try:
        descriptors = node.describe_parameters(list(PARAMETERS))
        assert all(d.description for d in descriptors)
        assert dict(zip(PARAMETERS, descriptors))["rate_hz"].additional_constraints == "in [1, 1000]"
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE  # rate 0: no division by zero
        with pytest.raises(ValueError, match="parameter rate_hz: expected a number in"):
            check_parameter("rate_hz", 0.0)
        for name, value in (("rate_hz", 0.0), ("max_image_age_s", 1e9), ("action_expectation", "mode"),
                            ("backend", "tensorflow"), ("rate_hz", "fast")):
            result = node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and f"parameter {name}" in result.reason, (name, result.reason)
        assert node.set_parameters([Parameter("rate_hz", value=20)])[0].successful  # an int for a double
        assert not node.set_parameters([Parameter("workspace_low", value=[0.3, 0.0])])[0].successful  # 2 of 3
        assert node.set_parameters([Parameter("workspace_high", value=[0.7, 0.2, 0.3])])[0].successful
        assert node.set_parameters([Parameter("speed_scale", value=0.5)])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        result = node.set_parameters([Parameter("rate_hz", value=10.0)])[0]
        assert not result.successful and "takes effect at configure" in result.reason
        assert node.loop.limits.velocity_scale == 0.5 and node.loop.mapper.config.workspace.high == (0.7, 0.2, 0.3)
        assert node.get_parameter("rate_hz").value == 20
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.set_parameters([Parameter("rate_hz", value=10.0)])[0].successful  # unconfigured again
    finally:
        node.destroy_node()


def test_urdf_from_the_robot_description_topic_with_datasheet_limits(context, checkpoint):
    """The URDF read once at configure from a transient-local robot_description topic (as
    robot_state_publisher publishes it), its limits tightened to the Franka datasheet; no URDF on
    the topic fails configure with the topic's name."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from gato_robot.robot.description import DATASHEETS, default_panda_urdf

    publisher_node = rclpy.create_node("robot_state_publisher_stand_in", context=context)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher_node.create_publisher(String, "/robot_description", latched).publish(
        String(data=default_panda_urdf().read_text()))  # published once, before the node exists
    common = [Parameter("model_path", value=str(checkpoint)), Parameter("backend", value="torch")]
    node = GatoStackNode(context=context, parameter_overrides=[
        *common, Parameter("robot_description_topic", value="robot_description")])
    silent = GatoStackNode(context=context, namespace="nobody", parameter_overrides=[
        *common, Parameter("robot_description_topic", value="robot_description")])
    messages = []
    silent.get_logger().error = lambda message, **kw: messages.append(message)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        kinematics, sheet = node.loop.mapper.kinematics, DATASHEETS["panda"]
        assert Path(node.arm.urdf_path).read_text() == default_panda_urdf().read_text()
        assert kinematics.upper[0] == sheet.upper[0] < 2.9671  # the URDF allows 2.9671 rad
        assert kinematics.upper[3] == sheet.upper[3] == -0.0698  # the URDF allows 0
        np.testing.assert_array_equal(node.loop.limits.lower, np.maximum(kinematics.model.lowerPositionLimit, sheet.lower))
        np.testing.assert_array_equal(node.loop.limits.acceleration, sheet.acceleration)  # the URDF states none
        assert node.loop.limits.velocity_scale == 0.25  # speed_scale scales the acceleration bound too
        started = time.monotonic()
        assert silent.trigger_configure() == TransitionCallbackReturn.FAILURE  # /nobody/robot_description
        assert time.monotonic() - started < 10 and silent.loop is None
        assert "no URDF on 'robot_description'" in messages[0]
    finally:
        node.destroy_node()
        silent.destroy_node()
        publisher_node.destroy_node()


def test_node_started_with_params_file_as_the_launch_file_does(context, checkpoint, tmp_path):
    """As `ros2 launch gato_robot stack.launch.py namespace:=arm1` starts it: in a namespace, with
    the package's params file and the robot file on top (their key matches any namespace)."""
    params = yaml.safe_load((PACKAGE / "config" / "params.yaml").read_text())
    # rate_hz as an integer, as `rate_hz:=10` on a command line gives it: accepted for the double
    params[PARAMS_KEY]["ros__parameters"].update(model_path=str(checkpoint), backend="torch", rate_hz=10)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    process = subprocess.Popen([sys.executable, "-m", "gato_robot.ros.node", "--ros-args", "-r", "__ns:=/arm1",
                                "--params-file", str(params_file), "--params-file",
                                str(PACKAGE / "config" / "robot_sim.yaml")],
                               env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client_node = rclpy.create_node("params_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client_node)

    def send(client, request, timeout):
        """The answer, or None: a busy machine can drop it (Fast DDS sends a response only once the
        server has matched the client's response reader, waiting 100 ms for it; ros2/rmw_fastrtps#467)."""
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            client.remove_pending_request(future)
            return None
        return future.result()

    def call(client, request, timeout, attempts=3):
        """For queries, which can be asked again."""
        for _ in range(attempts):
            if (answer := send(client, request, timeout)) is not None:
                return answer
        raise AssertionError(f"no answer from {client.srv_name} in {attempts} tries")

    try:
        get = client_node.create_client(GetParameters, f"/arm1/{NODE_NAME}/get_parameters")
        assert get.wait_for_service(timeout_sec=20), "node did not come up"
        values = call(get, GetParameters.Request(names=["model_path", "backend", "rate_hz", "camera_topics"]), 10).values
        assert values[0].string_value == str(checkpoint) and values[1].string_value == "torch"
        assert values[2].integer_value == 10
        assert list(values[3].string_array_value) == ["front_left/image_raw", "front_right/image_raw"]  # relative
        change = client_node.create_client(ChangeState, f"/arm1/{NODE_NAME}/change_state")
        state = client_node.create_client(GetState, f"/arm1/{NODE_NAME}/get_state")
        assert change.wait_for_service(timeout_sec=10) and state.wait_for_service(timeout_sec=10)
        # A transition is not asked twice; where its answer is lost, the state it left says the outcome.
        request = ChangeState.Request()
        request.transition.id = 1  # configure
        assert getattr(send(change, request, 30), "success", True)
        assert call(state, GetState.Request(), 10).current_state.id == StateMsg.PRIMARY_STATE_INACTIVE
        request.transition.id = 3  # activate: refused, nobody publishes joint states
        assert not getattr(send(change, request, 10), "success", False)
        assert call(state, GetState.Request(), 10).current_state.id == StateMsg.PRIMARY_STATE_INACTIVE
    finally:
        executor.shutdown()
        client_node.destroy_node()
        process.terminate()  # SIGTERM, as a launch shutdown escalates to: the node exits cleanly
        output = process.communicate(timeout=10)[0].decode()
    assert "activate refused: no joint state received" in output
    assert process.returncode == 0, output


def test_package_launch_and_params_are_consistent():
    manifest = ET.parse(PACKAGE / "package.xml").getroot()
    assert manifest.get("format") == "3" and manifest.findtext("name") == "gato_robot"
    assert manifest.find("export/build_type").text == "ament_python"
    depends = {e.text for e in manifest.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "std_srvs", "trajectory_msgs", "diagnostic_msgs"} <= depends
    assert (PACKAGE / "resource" / "gato_robot").is_file()
    setup_cfg = (PACKAGE / "setup.cfg").read_text()
    assert "install_scripts=$base/lib/gato_robot" in setup_cfg and "script_dir=$base/lib/gato_robot" in setup_cfg
    setup = (PACKAGE / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup
    assert "stack_node = gato_robot_ros.stack_node:main" in setup
    assert (PACKAGE / "launch" / "stack.launch.py").resolve() == (ROOT / "launch" / "stack.launch.py").resolve()

    params = yaml.safe_load((PACKAGE / "config" / "params.yaml").read_text())[PARAMS_KEY]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, default in PARAMETERS.items():
        assert type(params[name]) is type(default), name

    tree = ast.parse((ROOT / "launch" / "stack.launch.py").read_text())
    arguments = next(ast.literal_eval(node.value) for node in tree.body
                     if isinstance(node, ast.Assign) and node.targets[0].id == "ARGUMENTS")
    assert {"model_path", "backend", "camera_topics", "controller", "rate_hz"} <= set(arguments)
    for argument, (parameter, default, _) in arguments.items():
        assert parameter in {*PARAMETERS, "use_sim_time"}, f"launch argument {argument} maps to unknown {parameter}"
        assert default == "", f"{argument}: a default would override the params file"
    source = (ROOT / "launch" / "stack.launch.py").read_text()
    flat = " ".join(source.split())  # where `launch` is importable the next test runs the handlers
    assert 'start_state="configuring", goal_state="inactive", handle_once=True' in flat
    assert 'start_state="configuring", goal_state="unconfigured", handle_once=True' in flat
    assert "UnregisterEventHandler(activate_once)" in flat and "UnregisterEventHandler(give_up)" in flat
    assert 'DeclareLaunchArgument("autostart", default_value="false"' in source
    assert 'DeclareLaunchArgument("robot", default_value="fr3"' in source  # the launch file is the real arm's
    assert 'config / "params.yaml"' in source and 'f"robot_{' in source
    robots = {p.stem.removeprefix("robot_"): yaml.safe_load(p.read_text())[PARAMS_KEY]["ros__parameters"]
              for p in (PACKAGE / "config").glob("robot_*.yaml")}
    assert set(robots) == {"fr3", "sim"}
    for robot, overlay in robots.items():
        for name, value in overlay.items():
            assert type(check_parameter(name, value)) is type(PARAMETERS[name]), (robot, name)
    fr3 = robots["fr3"]
    assert fr3["command_interface"] == "trajectory" and fr3["gripper_interface"] == "action"
    assert fr3["arm_joints"] == [f"fr3_joint{i}" for i in range(1, 8)] and fr3["arm_datasheet"] == "fr3"
    assert "speed_scale" not in fr3 and params["speed_scale"] == 0.25  # a first deployment's speed
    assert 'executable="stack_node"' in source and f'name="{NODE_NAME}"' in source


def test_launch_file_overrides_only_given_arguments_and_autostarts_once_after_configure():
    """Runs the real launch description (needs the `launch` and `launch_ros` packages of a ROS
    install; they are not on PyPI)."""
    pytest.importorskip("launch", reason="ROS 2 `launch` is not installed (not on PyPI; a ROS machine has it)")
    pytest.importorskip("launch_ros", reason="ROS 2 `launch_ros` is not installed (not on PyPI)")
    import importlib.util

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions
    from launch_ros.utilities import evaluate_parameters

    spec = importlib.util.spec_from_file_location("stack_launch", ROOT / "launch" / "stack.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    defaults = {a.name: a.default_value for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    context = LaunchContext()
    for name, default in defaults.items():
        if name != "params_file":
            context.launch_configurations[name] = perform_substitutions(context, default)
    assert context.launch_configurations["autostart"] == "false"  # a real arm is activated by its operator
    context.launch_configurations.update(params_file="/tmp/my_params.yaml", rate_hz="20", autostart="true")
    node, activate_once, give_up, configure = module._start_node(context)
    parameters = evaluate_parameters(context, node._Node__parameters)
    assert parameters[1] == {"rate_hz": 20}  # only the argument given; everything else from the file
    handler = activate_once.event_handler
    assert handler.handle_once  # activates once, and only after a configure that succeeded
    from launch_ros.events.lifecycle import StateTransition
    from lifecycle_msgs.msg import State, TransitionEvent

    def transition(start: str, goal: str) -> StateTransition:
        return StateTransition(action=node, msg=TransitionEvent(start_state=State(label=start), goal_state=State(label=goal)))

    assert handler.matches(transition("configuring", "inactive"))
    for start in ("deactivating", "activating"):  # operator deactivate, failed activate, e-stop: no re-activation
        assert not handler.matches(transition(start, "inactive"))
    assert configure.condition.evaluate(context)

    # The first configure fails: autostart gives up, so the operator's later configure activates nothing.
    from launch.actions import EmitEvent, UnregisterEventHandler

    for registration in (activate_once, give_up):
        context.register_event_handler(registration.event_handler)
    failed = transition("configuring", "unconfigured")
    assert not handler.matches(failed) and give_up.event_handler.matches(failed)
    for entity in give_up.event_handler.handle(failed, context):
        if isinstance(entity, UnregisterEventHandler):
            entity.execute(context)
    assert handler not in context._event_handlers and give_up.event_handler not in context._event_handlers
    # ... and when it succeeds, the give-up handler goes: a later failed configure unregisters nothing twice.
    assert any(isinstance(e, EmitEvent) for e in handler.entities)
    assert [e.event_handler for e in handler.entities if isinstance(e, UnregisterEventHandler)] == [give_up.event_handler]
