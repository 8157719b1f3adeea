"""The rclpy lifecycle node: a thin adapter between ROS 2 topics and :class:`ControlLoop`.

- configure: read parameters, load the policy (checkpoint or compiled export; for TensorRT, engines
  are built from the ONNX export when missing or stale, as Isaac ROS's TensorRT node does), warm it
  up, load the robot model, create subscriptions, publishers and services.
- activate: refuses unless a fresh, plausible joint state has arrived and no e-stop is latched;
  seeds the loop from the measured position (the first command holds it) and starts acting.
- deactivate: holds (publishes the last safe command once) and stops acting. Nothing in the node
  activates by itself; an e-stop stays latched through deactivate, cleanup and configure until
  ``~/reset_estop``, and through a restart of the process (the reason is kept in
  ``estop_latch_file`` until ``~/reset_estop`` deletes it). A fault hold longer than ``max_hold_s``
  latches one: nothing resumes by itself.
- SIGINT / SIGTERM: publish the hold, deactivate, exit.

Topics: one ``sensor_msgs/Image`` per camera (best effort, depth 1, cached by a callback group of their
own) and its ``camera_info`` beside it (image_transport's convention; the field of view after
fitting is compared with the training cameras' once), ``sensor_msgs/JointState`` (joints matched by name), commands as ros2_control expects them
(``std_msgs/Float64MultiArray`` on ``<controller>/commands`` for a forward position controller,
or ``trajectory_msgs/JointTrajectory`` of the arm joints on ``<controller>/joint_trajectory``; the
gripper on its forward controller or through ``control_msgs/GripperCommand``), and
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics``. Topic names are relative (they resolve in
the node's namespace and remap as usual), ``/diagnostics`` excepted. The URDF comes from a file or
once from the ``robot_description`` topic. Service ``~/estop`` (std_srvs/Trigger)
latches an e-stop (while active, the arm holds where it is measured; while inactive nothing is
published); ``~/reset_estop`` clears it while the node is inactive (then activate to resume).
The loop latches one itself on implausible joint measurements. Every sample keeps its stamp, its
receive time and since when its values have not changed; the watchdog checks all three (a sample
stamped before the one it would replace is dropped). The forward controller has no command timeout, so
the watchdog lives here.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..robot.action_path import ActionPathConfig, CartesianActionMapper, Workspace
from ..deploy.control import ControlConfig, ControlLoop, LoopState
from ..deploy.policy import load_policy
from ..observation import Frame, JointCommand, JointSample, newest
from ..robot.description import PANDA, ArmDescription
from ..runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE, EXPECTATIONS
from ..runtime.factory import BACKENDS
from ..runtime.export import PREFILL_FILE
from ..runtime.tensorrt_engine import PRECISIONS, ensure_engines
from ..deploy.safety import SafetyLimits, WatchdogConfig
from ..task import RGB_STACKING
from .convert import MessageError, fit_image, fitted_fovy_deg, image_to_rgb, joint_state_to_sample, stamp_seconds
from .estop_latch import EstopLatchFile, default_latch_path

NODE_NAME = "gato_robot_stack"
GRIPPER_GOAL_STEP_M = 0.005
"""gripper_interface "action": a new goal when the commanded width moves this far (franka_gripper's
width tolerance); goals at the 20 Hz tick would preempt each other before the fingers move."""
ROBOT_DESCRIPTION_WAIT_S = 5.0  # configure waits this long for a URDF on robot_description_topic
SENSOR_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
"""Cameras and joint states: best effort (as sensor drivers publish), newest sample only."""

@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its default (which fixes its type), what it means, and the values it
    may take (``low``/``high`` for numbers, ``choices`` for strings)."""

    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def constraints(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        return ""


PARAMETER_SPECS: dict[str, ParameterSpec] = {
    "model_path": ParameterSpec("", "checkpoint dir (torch), ONNX export dir (onnxruntime; tensorrt: engines are "
                                    "built from it on configure), or a TensorRT engine dir"),
    "backend": ParameterSpec("onnxruntime", "policy runtime", choices=BACKENDS),
    "engine_dir": ParameterSpec("", "tensorrt: where engines are cached (empty: MODEL_PATH/tensorrt-PRECISION); "
                                    "rebuilt when missing or built for other graphs, precision, TensorRT or GPU"),
    "engine_precision": ParameterSpec("fp16", "tensorrt: engine precision", choices=PRECISIONS),
    "force_engine_rebuild": ParameterSpec(False, "tensorrt: rebuild the engines at configure even when current"),
    "action_temperature": ParameterSpec(DEPLOYED_TEMPERATURE, "action token sampling temperature; 0 = argmax "
                                        "(replayable from a bag), 1.0 samples as the paper's Gato", 0.0, 10.0),
    "action_expectation": ParameterSpec(DEPLOYED_EXPECTATION, "motion dimensions decoded by the expectation of "
                                        "their bins (the gripper by temperature); physical as `sim eval` scores "
                                        "the shipped policy", choices=EXPECTATIONS),
    "camera_names": ParameterSpec(["front_left", "front_right"], "the policy's cameras, in token order"),
    "camera_topics": ParameterSpec(["front_left/image_raw", "front_right/image_raw"],
                                   "sensor_msgs/Image topic of each camera (another size than the policy's is "
                                   "centre-cropped to its aspect ratio and resized, with a warning)"),
    "joint_states_topic": ParameterSpec("joint_states", "sensor_msgs/JointState topic"),
    "arm_joints": ParameterSpec(list(PANDA.arm_joints), "arm joint names, base to flange"),
    "finger_joints": ParameterSpec(list(PANDA.finger_joints), "gripper finger joint names"),
    "tcp_frame": ParameterSpec(PANDA.tcp_frame, "URDF frame of the tool centre point (between the fingertips); "
                                                "the URDF root is the base frame of the TCP pose and workspace"),
    "urdf_path": ParameterSpec("", "robot URDF; empty: the Panda URDF from pybullet_data (unless "
                                   "robot_description_topic is set)"),
    "robot_description_topic": ParameterSpec("", "std_msgs/String topic with the URDF (transient local, as "
                                                 "robot_state_publisher and franka_ros2 publish it), read once at "
                                                 "configure; empty: urdf_path"),
    "arm_datasheet": ParameterSpec("panda", "manufacturer joint limits that tighten the URDF's and bound "
                                            "each joint's acceleration (Franka datasheet: panda or fr3; empty: "
                                            "the URDF's alone, no acceleration bound)",
                                   choices=("panda", "fr3", "")),
    "command_interface": ParameterSpec("forward", "forward: Float64MultiArray position steps to "
                                                  "CONTROLLER/commands (simulators); trajectory: a one-point "
                                                  "JointTrajectory of the arm joints, start now, with velocities, to "
                                                  "CONTROLLER/joint_trajectory (real arms)",
                                       choices=("forward", "trajectory")),
    "controller": ParameterSpec("forward_position_controller", "ros2_control arm controller name"),
    "gripper_interface": ParameterSpec("forward", "forward: finger positions to GRIPPER_CONTROLLER/commands; "
                                                  "action: control_msgs/GripperCommand goals to "
                                                  "GRIPPER_CONTROLLER/gripper_action (franka_gripper: position = "
                                                  "width / 2), sent when the width changes by 5 mm",
                                       choices=("forward", "action")),
    "gripper_controller": ParameterSpec("gripper_forward_controller", "gripper controller (forward) or action "
                                                                     "server namespace (action), e.g. fr3_gripper"),
    "gripper_max_effort_n": ParameterSpec(20.0, "action: grasp force (N)", 1.0, 70.0),
    "rate_hz": ParameterSpec(RGB_STACKING.rate_hz, "control rate (Hz)", 1.0, 1000.0),
    "speed_scale": ParameterSpec(0.25, "fraction of the joint velocity limits (and of the datasheet's acceleration "
                                       "limits) the commands may use (0.25 for a first deployment; simulation "
                                       "evaluates at 0.9)", 0.01, 1.0),
    "ik_posture_gain": ParameterSpec(0.0, "null-space pull of the IK toward the home joints (1/s; 0: off, as the "
                                          "simulator made the training data; 0.5 keeps the elbow off its limits)",
                                     0.0, 10.0),
    "workspace_low": ParameterSpec(list(Workspace.low), "TCP box lower corner x, y, z (m, base frame)"),
    "workspace_high": ParameterSpec(list(Workspace.high), "TCP box upper corner x, y, z (m, base frame)"),
    "training_fovy_deg": ParameterSpec(45.0, "vertical field of view of the training cameras (degrees; the "
                                             "simulators'); a camera whose camera_info, after fitting, differs "
                                             "by more than 10% is warned about once", 1.0, 179.0),
    "max_image_age_s": ParameterSpec(0.25, "oldest camera frame the loop acts on (s)", 0.001, 2.0),
    "max_joint_state_age_s": ParameterSpec(0.1, "oldest joint state the loop acts on (s)", 0.001, 1.0),
    "max_hold_s": ParameterSpec(1.0, "a hold on unfit inputs or a failing policy longer than this latches an "
                                     "e-stop (s): after it, deactivate, ~/reset_estop, activate", 0.05, 10.0),
    "estop_latch_file": ParameterSpec("", "where a latched e-stop's reason is kept, so a restarted node comes up "
                                          "latched; ~/reset_estop deletes it (empty: "
                                          "$ROS_HOME/gato_robot/<node>.estop)"),
    "max_frozen_input_s": ParameterSpec(0.5, "a camera whose pixels (joint state whose values) stay identical this "
                                             "long while the arm (its command) moves 0.05 rad comes from a frozen "
                                             "driver: hold (s; 0 off, for fake sensors that publish one still scene)",
                                        0.0, 5.0),
    "instruction": ParameterSpec(RGB_STACKING.instruction, "task instruction (text tokens)"),
}
"""Every parameter the node declares (config/params.yaml mirrors the defaults; a test checks)."""

PARAMETERS: dict[str, object] = {name: spec.default for name, spec in PARAMETER_SPECS.items()}


def camera_info_topic(image_topic: str) -> str:
    """The camera_info topic beside an image topic (image_transport): /cam/image_raw -> /cam/camera_info."""
    head, slash, _ = image_topic.rpartition("/")
    return f"{head}{slash}camera_info"


def _gripper_command_type():
    """control_msgs/action/GripperCommand, or a clear error where control_msgs is missing (it is not
    on PyPI: a ROS machine has it from ros-jazzy-control-msgs)."""
    try:
        from control_msgs.action import GripperCommand
    except ImportError as error:
        raise RuntimeError("gripper_interface 'action' needs control_msgs (apt install ros-jazzy-control-msgs); "
                           "use gripper_interface 'forward' where it is not installed") from error
    return GripperCommand


def check_parameter(name: str, value):
    """``value`` of parameter ``name``, checked against the type of its default (ints accepted for
    doubles) and its range or choices; a ValueError naming the parameter otherwise."""
    spec = PARAMETER_SPECS[name]
    default = spec.default
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        value = float(value) if ok else value
        if ok and not (np.isfinite(value) and spec.low <= value <= spec.high):
            ok, expected = False, f"a number {spec.constraints()}"
    elif isinstance(default, list) and isinstance(default[0], float):
        ok = (isinstance(value, (list, tuple)) and len(value) == len(default)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value))
        expected, value = f"a list of {len(default)} numbers", [float(v) for v in value] if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
        expected, value = "a list of strings", list(value) if ok else value
    else:
        ok, expected = isinstance(value, str), "a string"
        if ok and spec.choices and value not in spec.choices:
            ok, expected = False, spec.constraints()
    if not ok:
        raise ValueError(f"parameter {name}: expected {expected}, got {value!r}")
    return value


class GatoStackNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        # Dynamically typed, so a params file or launch argument of the wrong type (an int where a
        # double is declared) cannot kill the node; _param() checks each type at configure.
        for name, spec in PARAMETER_SPECS.items():
            self.declare_parameter(name, spec.default, ParameterDescriptor(
                description=spec.description, additional_constraints=spec.constraints(), dynamic_typing=True))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.loop: ControlLoop | None = None
        self._lock = threading.Lock()
        self._frames: dict[str, Frame] = {}
        self._joints: JointSample | None = None
        self._input_problems: dict[str, str] = {}  # per source; cleared when that source recovers
        self._active = False
        self._owned: dict[str, list] = {"subscription": [], "publisher": [], "service": [], "timer": []}
        self._tick_times: list[float] = []
        self._reported: dict[str, int] = {}
        self._previous_arm: list[float] | None = None  # last published arm command (trajectory velocities)
        self._latched_estop = ""  # an e-stop's reason, kept through cleanup -> configure until ~/reset_estop

    # -- helpers ----------------------------------------------------------------------------------------
    def _param(self, name: str):
        """The parameter's value, checked (:func:`check_parameter`)."""
        return check_parameter(name, self.get_parameter(name).value)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """``ros2 param set``: refused while configured (every parameter takes effect at configure,
        so a change then would be silently ignored) and refused when the value is invalid."""
        for parameter in parameters:
            if parameter.name not in PARAMETER_SPECS:
                continue  # use_sim_time and the other parameters rclpy declares
            if self.loop is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{parameter.name} takes effect at configure: deactivate and clean up the node, set it, "
                    "then configure again"))
            try:
                check_parameter(parameter.name, parameter.value)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self, header) -> float:
        stamp = stamp_seconds(header.stamp)
        return stamp if stamp > 0 else self._now()  # drivers that leave stamps empty: receive time

    def _urdf_path(self) -> str:
        """``urdf_path``, or the URDF read once from ``robot_description_topic`` (waiting up to
        ROBOT_DESCRIPTION_WAIT_S) and written to a file Pinocchio loads."""
        topic = str(self._param("robot_description_topic")).strip()
        if not topic:
            return str(self._param("urdf_path"))
        from rclpy.wait_for_message import wait_for_message

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        received, message = wait_for_message(String, self, topic, qos_profile=latched,
                                             time_to_wait=ROBOT_DESCRIPTION_WAIT_S)
        if not received or not message.data.strip():
            raise TimeoutError(f"parameter robot_description_topic: no URDF on '{topic}' within "
                               f"{ROBOT_DESCRIPTION_WAIT_S:g} s (is robot_state_publisher running?)")
        path = Path(tempfile.gettempdir()) / f"{NODE_NAME}-{os.getpid()}-robot_description.urdf"
        path.write_text(message.data)
        return str(path)

    # -- lifecycle --------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            rate = float(self._param("rate_hz"))
            for name in ("controller", "joint_states_topic"):
                if not str(self._param(name)).strip():
                    raise ValueError(f"parameter {name} must not be empty")
            model_path = str(self._param("model_path"))
            if not model_path or not Path(model_path).exists():
                raise FileNotFoundError(f"parameter model_path: policy not found at '{model_path}'")
            names, topics = list(self._param("camera_names")), list(self._param("camera_topics"))
            if len(names) != len(topics):
                raise ValueError(f"camera_names ({len(names)}) and camera_topics ({len(topics)}) must pair up")
            interface = str(self._param("command_interface"))
            self.arm = ArmDescription(urdf_path=self._urdf_path(),
                                      arm_joints=tuple(self._param("arm_joints")),
                                      finger_joints=tuple(self._param("finger_joints")),
                                      tcp_frame=str(self._param("tcp_frame")),
                                      datasheet=str(self._param("arm_datasheet")))
            gripper_interface = str(self._param("gripper_interface"))
            gripper_command = _gripper_command_type() if gripper_interface == "action" else None
            config = ControlConfig(rate, str(self._param("instruction")),
                                   WatchdogConfig(float(self._param("max_image_age_s")),
                                                  float(self._param("max_joint_state_age_s")),
                                                  joint_count=len(self.arm.arm_joints),
                                                  max_frozen_s=float(self._param("max_frozen_input_s"))),
                                   max_hold_s=float(self._param("max_hold_s")))
            low, high = tuple(self._param("workspace_low")), tuple(self._param("workspace_high"))
            if not all(a < b for a, b in zip(low, high)):
                raise ValueError(f"parameters workspace_low {list(low)} must be below workspace_high {list(high)}")
            speed = float(self._param("speed_scale"))
            mapper = CartesianActionMapper(self.arm, ActionPathConfig(
                control_period_s=1.0 / rate, workspace=Workspace(low, high), velocity_limit_scale=speed,
                posture_gain=float(self._param("ik_posture_gain"))))
            limits = SafetyLimits.from_kinematics(mapper.kinematics, 1.0 / rate, velocity_scale=speed,
                                                  max_gripper_width_m=self.arm.max_gripper_width_m)
            backend = str(self._param("backend"))
            if backend == "tensorrt" and (Path(model_path) / PREFILL_FILE).is_file():  # an ONNX export
                model_path = self._ensure_engines(model_path)
            policy = load_policy(model_path, backend, config.instruction,
                                 temperature=float(self._param("action_temperature")),
                                 expectation=str(self._param("action_expectation")))
            self.loop = ControlLoop(policy, mapper, config, limits)
            latch_file = str(self._param("estop_latch_file"))
            self._latch = EstopLatchFile(Path(latch_file) if latch_file else
                                         default_latch_path(self.get_fully_qualified_name()))
            recorded = self._latch.read()  # an e-stop latched before this process started
            if recorded and not self._latched_estop:
                self._latched_estop = f"{recorded} (latched before the node restarted; {self._latch.path})"
            if self._latched_estop:  # cleanup -> configure, or a restart, does not clear an e-stop
                self.loop.estop(self._latched_estop)
                if not self._latch.latched:  # latched here, never recorded (or the record was deleted)
                    self._record_estop()
            expected = set(policy.inputs.camera_names)
            if set(names) != expected:
                raise ValueError(f"camera_names {names} do not match the policy's cameras {sorted(expected)}")
            warm = self.loop.warm_up()
            self.get_logger().info(f"policy warmed up: {1e3 * warm:.1f} ms per action")
        except Exception as error:  # report any configuration problem and stay unconfigured
            self.loop = None
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE

        # Each sensor subscription caches its latest sample in a callback group of its own (a
        # callback only swaps the sample in under a lock), so under a multi-threaded executor the
        # tick never waits on sensor I/O; the control tick and the e-stop share an exclusive group.
        self._control_group = MutuallyExclusiveCallbackGroup()
        owned = self._owned
        self._fitted_cameras: set[str] = set()  # before the subscriptions whose callbacks use them
        self._camera_fovy: dict[str, str] = {}  # camera -> its fitted field of view, for diagnostics
        for name, topic in zip(names, topics):
            owned["subscription"].append(self.create_subscription(
                Image, topic, lambda msg, name=name: self._on_image(name, msg), SENSOR_QOS,
                callback_group=MutuallyExclusiveCallbackGroup()))
            owned["subscription"].append(self.create_subscription(
                CameraInfo, camera_info_topic(topic), lambda msg, name=name: self._on_camera_info(name, msg),
                SENSOR_QOS, callback_group=MutuallyExclusiveCallbackGroup()))
        owned["subscription"].append(self.create_subscription(
            JointState, str(self._param("joint_states_topic")), self._on_joint_state, SENSOR_QOS,
            callback_group=MutuallyExclusiveCallbackGroup()))
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        controller = str(self._param("controller"))
        arm_type, arm_topic = ((Float64MultiArray, f"{controller}/commands") if interface == "forward"
                               else (JointTrajectory, f"{controller}/joint_trajectory"))
        self._arm_publisher = self.create_publisher(arm_type, arm_topic, reliable)
        gripper = str(self._param("gripper_controller"))
        self._gripper_publisher, self._gripper_action, self._sent_width = None, None, None
        if gripper_command is None:
            self._gripper_publisher = self.create_publisher(Float64MultiArray, f"{gripper}/commands", reliable)
        else:
            from rclpy.action import ActionClient

            self._gripper_action = ActionClient(self, gripper_command, f"{gripper}/gripper_action")
            self._gripper_goal_type, self._max_effort = gripper_command.Goal, float(self._param("gripper_max_effort_n"))
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        owned["publisher"] += [p for p in (self._arm_publisher, self._gripper_publisher, self._diagnostics) if p]
        owned["service"].append(self.create_service(Trigger, "~/estop", self._on_estop,
                                                    callback_group=self._control_group))
        owned["service"].append(self.create_service(Trigger, "~/reset_estop", self._on_reset_estop,
                                                    callback_group=self._control_group))
        owned["timer"].append(self.create_timer(1.0, self._publish_diagnostics,
                                                callback_group=MutuallyExclusiveCallbackGroup()))
        # The control timer runs from configure on (the executor's wait set never changes while
        # spinning); a tick does nothing until activate sets `_active`.
        owned["timer"].append(self.create_timer(1.0 / rate, self._on_tick, callback_group=self._control_group))
        self.get_logger().info(f"configured: {self.loop.policy.kind} policy on {self.loop.policy.backend} from "
                               f"{model_path}, {len(names)} cameras, {interface} commands to /{controller}, {rate} Hz")
        return TransitionCallbackReturn.SUCCESS

    def _ensure_engines(self, onnx_dir: str) -> str:
        """TensorRT engines for the ONNX export ``onnx_dir``: reused when current, else built (minutes)."""
        self.get_logger().info(f"checking TensorRT engines for {onnx_dir} ...")
        engine_dir, reason = ensure_engines(onnx_dir, str(self._param("engine_dir")) or None,
                                            str(self._param("engine_precision")), bool(self._param("force_engine_rebuild")))
        self.get_logger().info(f"TensorRT engines rebuilt in {engine_dir} ({reason})" if reason
                               else f"TensorRT engines in {engine_dir} are current")
        return str(engine_dir)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            joints = self._joints
        problem = self.loop.watchdog.joint_problem(joints, self._now())
        if problem is None:
            try:  # seeds from the measurement; refuses implausible joints and a latched e-stop
                self.loop.enable(joints)
            except (ValueError, RuntimeError) as error:
                problem = str(error)
        if problem:
            self.get_logger().error(f"activate refused: {problem}")
            return TransitionCallbackReturn.FAILURE
        self._active, self._previous_arm = True, None
        self.get_logger().info("active: policy in control")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        self.loop.disable()
        self._publish(self.loop.last_command, moving=False)
        self.get_logger().info("inactive: holding position")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.loop is not None:
            self.loop.disable()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._active = False
        if self.loop is not None and self.loop.state is LoopState.ESTOPPED:
            self._latched_estop = self.loop.estop_reason
        destroy = {"subscription": self.destroy_subscription, "publisher": self.destroy_publisher,
                   "service": self.destroy_service, "timer": self.destroy_timer}
        for kind, entities in self._owned.items():
            for entity in entities:
                destroy[kind](entity)
            entities.clear()
        with self._lock:  # samples of the old subscriptions must not pass for those of the next configure
            self._frames.clear()
            self._joints = None
            self._input_problems.clear()
        if getattr(self, "_gripper_action", None) is not None:
            self._gripper_action.destroy()
            self._gripper_action = None
        self.loop = None

    # -- callbacks --------------------------------------------------------------------------------------
    def _on_camera_info(self, name: str, message: CameraInfo) -> None:
        """Once per camera: warn when its field of view, fitted to the policy's images, is not the
        training cameras' (the policy would see objects at another scale)."""
        if name in self._camera_fovy or self.loop is None:
            return
        spec, expected = self.loop.policy.inputs, float(self._param("training_fovy_deg"))
        try:
            fovy = fitted_fovy_deg(np.asarray(message.k), message.height, message.width,
                                   spec.image_height, spec.image_width)
        except MessageError as error:
            self._camera_fovy[name] = str(error)
            self.get_logger().warning(f"camera '{name}': {error}")
            return
        differs = abs(fovy - expected) > 0.1 * expected
        self._camera_fovy[name] = f"{fovy:.1f}" + (f" (training {expected:.1f}: differs)" if differs else "")
        if differs:
            self.get_logger().warning(
                f"camera '{name}': vertical field of view {fovy:.1f} deg after fitting to {spec.image_width}x"
                f"{spec.image_height}, the training cameras' is {expected:.1f} deg: the policy sees the scene at "
                "another scale (calibrate the camera and re-render the training cameras, calibration/)")

    def _on_image(self, name: str, message: Image) -> None:
        try:
            image = image_to_rgb(message)
            spec = self.loop.policy.inputs
            if image.shape[:2] != (spec.image_height, spec.image_width):
                if name not in self._fitted_cameras:
                    self._fitted_cameras.add(name)
                    self.get_logger().warning(
                        f"camera '{name}' sends {image.shape[1]}x{image.shape[0]} images; the policy was trained on "
                        f"{spec.image_width}x{spec.image_height}: centre-cropping and resizing each frame. Check "
                        "that the field of view matches the training cameras' (calibration/)")
                image = fit_image(image, spec.image_height, spec.image_width)
            stamp, now = self._stamp(message.header), self._now()
        except MessageError as error:
            with self._lock:
                self._input_problems[name] = f"camera '{name}': {error}"
                self._frames.pop(name, None)  # a bad frame must not leave an older good one to age in place
            return
        with self._lock:
            frame = newest(Frame(image, stamp, now), self._frames.get(name))
            if frame is None:
                self._input_problems[name] = f"camera '{name}': dropped a frame stamped before the previous one"
                return
            self._frames[name] = frame
            self._input_problems.pop(name, None)

    def _on_joint_state(self, message: JointState) -> None:
        try:
            sample = joint_state_to_sample(message, self.arm.arm_joints, self.arm.finger_joints,
                                           self._stamp(message.header), self._now())
        except MessageError as error:
            with self._lock:
                self._input_problems["joints"] = f"joint state: {error}"
            return
        with self._lock:
            sample = newest(sample, self._joints)
            if sample is None:
                self._input_problems["joints"] = "joint state: dropped a sample stamped before the previous one"
                return
            self._joints = sample
            self._input_problems.pop("joints", None)

    def _on_tick(self) -> None:
        if not self._active:
            return
        with self._lock:
            frames, joints = dict(self._frames), self._joints
        result = self.loop.tick(self._now(), frames, joints)
        if result.state is LoopState.ESTOPPED and not self._latch.latched:  # the loop latched one itself
            self._record_estop()
        self._tick_times.append(self._now())
        del self._tick_times[:-100]
        self._publish(result.command, moving=result.state is LoopState.ACTIVE)

    def _on_estop(self, request, response):
        """Latch; while active, hold where the arm is measured (a fresh measurement; else the last
        command). While inactive nothing is published: the controller holds already, and the last
        command of an earlier activation may be far from where the arm is now."""
        with self._lock:
            joints = self._joints
        fresh = joints if self.loop.watchdog.joint_problem(joints, self._now()) is None else None
        self.loop.estop("e-stop service called", measured=fresh if self._active else None)
        self._record_estop()
        if self._active:
            self._publish(self.loop.last_command, moving=False)
        response.success = True
        response.message = "e-stop latched: deactivate, call ~/reset_estop, then activate to resume"
        self.get_logger().warning(response.message)
        return response

    def _on_reset_estop(self, request, response):
        if self._active:
            response.success, response.message = False, "refused: deactivate first (the e-stop stays latched)"
        else:
            try:
                self._latch.clear()
            except OSError as error:
                response.success = False
                response.message = (f"refused: the latch file {self._latch.path} could not be deleted ({error}); "
                                    "the e-stop stays latched")
                self.get_logger().error(f"reset_estop: {response.message}")
                return response
            was_latched = self.loop.reset_estop()
            self._latched_estop = ""
            response.success = True
            response.message = ("e-stop reset: activate to resume" if was_latched else "no e-stop was latched")
        self.get_logger().warning(f"reset_estop: {response.message}")
        return response

    def _record_estop(self) -> None:
        """Keep the loop's latched e-stop on disk (a failure to write is logged, and retried on the next
        tick: it stays latched in this process either way)."""
        try:
            self._latch.write(self.loop.estop_reason)
        except OSError as error:
            self.get_logger().error(f"e-stop latched but not recorded in {self._latch.path} ({error}): "
                                    "a restarted node would not come up latched", throttle_duration_sec=5.0)

    def hold_and_deactivate(self) -> None:
        """Shutdown path (SIGINT/SIGTERM): publish the hold once and stop acting."""
        if self.loop is None:
            return
        if self._active:
            self.trigger_deactivate()  # on_deactivate publishes the last safe command
        else:
            self.loop.disable()

    # -- output -----------------------------------------------------------------------------------------
    def _publish(self, command: JointCommand | None, moving: bool) -> None:
        """Send ``command``; a hold (``moving`` false) asks for zero joint velocity at its target."""
        if command is None:
            return
        arm = [float(v) for v in command.arm_positions]
        if self._arm_publisher.msg_type is Float64MultiArray:
            self._arm_publisher.publish(Float64MultiArray(data=arm))
        else:  # as MoveIt Servo streams to a joint trajectory controller: arm joints only, start now
            period = self.loop.config.period_s
            previous = self._previous_arm if self._previous_arm is not None and moving else arm
            point = JointTrajectoryPoint(positions=arm, velocities=[(a - b) / period for a, b in zip(arm, previous)],
                                         time_from_start=Duration(sec=int(period), nanosec=int((period % 1) * 1e9)))
            # A zero header stamp means "start now" to the controller: a stamp taken here would be in
            # the past on arrival, and the controller would skip into the point.
            self._arm_publisher.publish(JointTrajectory(joint_names=list(self.arm.arm_joints), points=[point]))
        self._previous_arm = arm
        if self._gripper_publisher is not None:
            fingers = [command.gripper_width / len(self.arm.finger_joints)] * len(self.arm.finger_joints)
            self._gripper_publisher.publish(Float64MultiArray(data=fingers))
        elif self._sent_width is None or abs(command.gripper_width - self._sent_width) >= GRIPPER_GOAL_STEP_M:
            goal = self._gripper_goal_type()
            goal.command.position = command.gripper_width / 2  # franka_gripper: target width = 2 x position
            goal.command.max_effort = self._max_effort
            self._gripper_action.send_goal_async(goal)
            self._sent_width = command.gripper_width

    def _publish_diagnostics(self) -> None:
        if self.loop is None:
            return
        stats, times = self.loop.stats, list(self._tick_times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        state = self.loop.state
        new_misses = stats.deadline_misses - self._reported.get("misses", 0)
        new_holds = stats.held_ticks - self._reported.get("holds", 0)
        self._reported = {"misses": stats.deadline_misses, "holds": stats.held_ticks}
        with self._lock:
            input_problems = "; ".join(self._input_problems.values())
        level = DiagnosticStatus.OK
        if state is LoopState.ESTOPPED:
            level = DiagnosticStatus.ERROR
        elif state is not LoopState.ACTIVE or stats.last_reason or input_problems or (
                self._active and (new_misses or new_holds)):
            level = DiagnosticStatus.WARN
        values = {"state": state.value, "rate_hz": f"{rate:.2f}", "ticks": str(stats.ticks),
                  "held_ticks": str(stats.held_ticks), "deadline_misses": str(stats.deadline_misses),
                  "deadline_misses_since_last_report": str(new_misses),
                  "watchdog": stats.last_reason or "ok", "input_problem": input_problems or "none",
                  "camera_fovy_deg": "; ".join(f"{k} {v}" for k, v in sorted(self._camera_fovy.items())) or "no camera_info",
                  **{f"latency_{k}_ms": f"{1e3 * v:.2f}" for k, v in stats.stage_seconds.items()}}
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: control loop", hardware_id="gato_robot",
                                  message=stats.last_reason or state.value,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(args=None) -> None:
    # Our own SIGINT/SIGTERM handling: rclpy's would shut the context down first, and the node
    # could no longer publish the hold it owes the arm before it exits.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    node = GatoStackNode()
    # A single-threaded executor: with this rclpy (Jazzy 7.1), MultiThreadedExecutor re-yields
    # ready timers and subscriptions in a hot loop (ros2/rclpy#1223, #1452); on a 2-core machine it
    # starved a 50 Hz sensor stream to 17 Hz and stalled the 20 Hz tick, while the single-threaded
    # one keeps both rates exactly. The callback groups above keep the node correct under a
    # MultiThreadedExecutor (GATO_ROBOT_EXECUTOR=multi) once that is fixed.
    executor = MultiThreadedExecutor() if os.environ.get("GATO_ROBOT_EXECUTOR") == "multi" else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():  # wakes at least every 0.1 s, so the signal handlers above get to run
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut the hold short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        node.hold_and_deactivate()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
