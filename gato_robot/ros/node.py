"""The rclpy lifecycle node: a thin adapter between ROS 2 topics and :class:`ControlLoop`.

- configure: read parameters, load the policy (checkpoint or compiled export) and the robot model,
  create subscriptions, publishers and services.
- activate: refuses unless a fresh joint state has arrived; seeds the loop from the measured
  position (the first command holds it) and starts the control timer.
- deactivate: holds (publishes the last safe command once) and stops the timer; also what clears
  a latched e-stop (the next activate re-seeds).

Topics: one ``sensor_msgs/Image`` per camera (sensor-data QoS, cached by a callback group of their
own), ``sensor_msgs/JointState`` (joints matched by name), commands as ros2_control expects them
(``std_msgs/Float64MultiArray`` on ``/<controller>/commands`` for a forward position controller,
or ``trajectory_msgs/JointTrajectory`` on ``/<controller>/joint_trajectory``), and
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics``. Service ``~/estop`` (std_srvs/Trigger)
latches an e-stop. The forward controller has no command timeout, so the watchdog lives here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..actions import ActionPathConfig, CartesianActionMapper, JointCommand
from ..control import ControlConfig, ControlLoop, LoopState
from ..robot_description import PANDA, ArmDescription
from ..runtime.factory import load_runner
from ..safety import Frame, JointSample, WatchdogConfig
from .convert import MessageError, image_to_rgb, joint_state_to_sample, stamp_seconds

NODE_NAME = "gato_robot_stack"

PARAMETERS: dict[str, object] = {
    "model_path": "",  # checkpoint dir (torch) or export dir (onnxruntime / tensorrt)
    "backend": "onnxruntime",
    "action_temperature": 0.0,  # 0 = argmax (replayable from a bag); 1.0 samples as Gato and `sim eval` do
    "action_expectation": False,  # decode the motion dimensions by their expected bin (gripper by temperature)
    "camera_names": ["front_left", "front_right"],
    "camera_topics": ["/front_left/image_raw", "/front_right/image_raw"],
    "joint_states_topic": "/joint_states",
    "arm_joints": list(PANDA.arm_joints),
    "finger_joints": list(PANDA.finger_joints),
    "urdf_path": "",
    "command_interface": "forward",  # forward | trajectory
    "controller": "forward_position_controller",
    "gripper_controller": "gripper_forward_controller",
    "rate_hz": 20.0,
    "max_image_age_s": 0.25,
    "max_joint_state_age_s": 0.1,
    "instruction": "stack the red object on the blue object",
}
"""Every parameter the node declares, with its default (config/params.yaml mirrors it; a test checks)."""


class GatoStackNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        self.loop: ControlLoop | None = None
        self._lock = threading.Lock()
        self._frames: dict[str, Frame] = {}
        self._joints: JointSample | None = None
        self._input_problem = ""
        self._active = False
        self._owned: dict[str, list] = {"subscription": [], "publisher": [], "service": [], "timer": []}
        self._tick_times: list[float] = []

    # -- helpers ----------------------------------------------------------------------------------------
    def _param(self, name: str):
        return self.get_parameter(name).value

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self, header) -> float:
        stamp = stamp_seconds(header.stamp)
        return stamp if stamp > 0 else self._now()  # drivers that leave stamps empty: receive time

    # -- lifecycle --------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            model_path = str(self._param("model_path"))
            if not model_path or not Path(model_path).exists():
                raise FileNotFoundError(f"parameter model_path: policy not found at '{model_path}'")
            names, topics = list(self._param("camera_names")), list(self._param("camera_topics"))
            if len(names) != len(topics):
                raise ValueError(f"camera_names ({len(names)}) and camera_topics ({len(topics)}) must pair up")
            interface = str(self._param("command_interface"))
            if interface not in ("forward", "trajectory"):
                raise ValueError(f"command_interface must be 'forward' or 'trajectory', got '{interface}'")
            self.arm = ArmDescription(urdf_path=str(self._param("urdf_path")),
                                      arm_joints=tuple(self._param("arm_joints")),
                                      finger_joints=tuple(self._param("finger_joints")))
            rate = float(self._param("rate_hz"))
            config = ControlConfig(rate, str(self._param("instruction")),
                                   WatchdogConfig(float(self._param("max_image_age_s")),
                                                  float(self._param("max_joint_state_age_s")),
                                                  joint_count=len(self.arm.arm_joints)))
            mapper = CartesianActionMapper(self.arm, ActionPathConfig(control_period_s=1.0 / rate))
            runner = load_runner(str(self._param("backend")), model_path,
                                 temperature=float(self._param("action_temperature")),
                                 expectation=bool(self._param("action_expectation")))
            self.loop = ControlLoop(runner, mapper, config)
            expected = set(self.loop.tokenizer.spec.camera_names)
            if set(names) != expected:
                raise ValueError(f"camera_names {names} do not match the policy's cameras {sorted(expected)}")
        except Exception as error:  # report any configuration problem and stay unconfigured
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE

        # Each sensor subscription caches its latest sample in a callback group of its own (a
        # callback only swaps the sample in under a lock), so under a multi-threaded executor the
        # tick never waits on sensor I/O; the control tick and the e-stop share an exclusive group.
        self._control_group = MutuallyExclusiveCallbackGroup()
        owned = self._owned
        for name, topic in zip(names, topics):
            owned["subscription"].append(self.create_subscription(
                Image, topic, lambda msg, name=name: self._on_image(name, msg), qos_profile_sensor_data,
                callback_group=MutuallyExclusiveCallbackGroup()))
        owned["subscription"].append(self.create_subscription(
            JointState, str(self._param("joint_states_topic")), self._on_joint_state, qos_profile_sensor_data,
            callback_group=MutuallyExclusiveCallbackGroup()))
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        controller = str(self._param("controller"))
        if interface == "forward":
            self._arm_publisher = self.create_publisher(Float64MultiArray, f"/{controller}/commands", reliable)
            self._gripper_publisher = self.create_publisher(
                Float64MultiArray, f"/{self._param('gripper_controller')}/commands", reliable)
        else:
            self._arm_publisher = self.create_publisher(JointTrajectory, f"/{controller}/joint_trajectory", reliable)
            self._gripper_publisher = None
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        owned["publisher"] += [p for p in (self._arm_publisher, self._gripper_publisher, self._diagnostics) if p]
        owned["service"].append(self.create_service(Trigger, "~/estop", self._on_estop,
                                                    callback_group=self._control_group))
        owned["timer"].append(self.create_timer(1.0, self._publish_diagnostics,
                                                callback_group=MutuallyExclusiveCallbackGroup()))
        # The control timer runs from configure on (the executor's wait set never changes while
        # spinning); a tick does nothing until activate sets `_active`.
        owned["timer"].append(self.create_timer(1.0 / rate, self._on_tick, callback_group=self._control_group))
        self.get_logger().info(f"configured: {runner.backend} policy from {model_path}, {len(names)} cameras, "
                               f"{interface} commands to /{controller}, {rate} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            joints = self._joints
        problem = self.loop.watchdog.joint_problem(joints, self._now())
        if problem:
            self.get_logger().error(f"activate refused: {problem}")
            return TransitionCallbackReturn.FAILURE
        self.loop.disable()  # clears a latched e-stop; enable re-seeds from the measurement
        self.loop.enable(joints)
        self._active = True
        self.get_logger().info("active: policy in control")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        self.loop.disable()
        self._publish(self.loop.last_command)
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
        destroy = {"subscription": self.destroy_subscription, "publisher": self.destroy_publisher,
                   "service": self.destroy_service, "timer": self.destroy_timer}
        for kind, entities in self._owned.items():
            for entity in entities:
                destroy[kind](entity)
            entities.clear()
        self.loop = None

    # -- callbacks --------------------------------------------------------------------------------------
    def _on_image(self, name: str, message: Image) -> None:
        try:
            frame = Frame(image_to_rgb(message), self._stamp(message.header))
        except MessageError as error:
            with self._lock:
                self._input_problem = f"camera '{name}': {error}"
                self._frames.pop(name, None)  # a bad frame must not leave an older good one to age in place
            return
        with self._lock:
            self._frames[name] = frame

    def _on_joint_state(self, message: JointState) -> None:
        try:
            sample = joint_state_to_sample(message, self.arm.arm_joints, self.arm.finger_joints,
                                           self._stamp(message.header))
        except MessageError as error:
            with self._lock:
                self._input_problem = f"joint state: {error}"
            return
        with self._lock:
            self._joints = sample

    def _on_tick(self) -> None:
        if not self._active:
            return
        with self._lock:
            frames, joints = dict(self._frames), self._joints
        result = self.loop.tick(self._now(), frames, joints)
        self._tick_times.append(self._now())
        del self._tick_times[:-100]
        self._publish(result.command)

    def _on_estop(self, request, response):
        self.loop.estop("e-stop service called")
        self._publish(self.loop.last_command)
        response.success, response.message = True, "e-stop latched: deactivate and activate to resume"
        self.get_logger().warning(response.message)
        return response

    # -- output -----------------------------------------------------------------------------------------
    def _publish(self, command: JointCommand | None) -> None:
        if command is None:
            return
        if self._arm_publisher.msg_type is Float64MultiArray:
            self._arm_publisher.publish(Float64MultiArray(data=[float(v) for v in command.arm_positions]))
            fingers = [command.gripper_width / len(self.arm.finger_joints)] * len(self.arm.finger_joints)
            self._gripper_publisher.publish(Float64MultiArray(data=fingers))
        else:
            period = self.loop.config.period_s
            point = JointTrajectoryPoint(
                positions=[float(v) for v in command.arm_positions]
                + [command.gripper_width / len(self.arm.finger_joints)] * len(self.arm.finger_joints),
                time_from_start=Duration(sec=int(period), nanosec=int((period % 1) * 1e9)))
            trajectory = JointTrajectory(joint_names=[*self.arm.arm_joints, *self.arm.finger_joints], points=[point])
            trajectory.header.stamp = self.get_clock().now().to_msg()
            self._arm_publisher.publish(trajectory)

    def _publish_diagnostics(self) -> None:
        if self.loop is None:
            return
        stats, times = self.loop.stats, list(self._tick_times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        state = self.loop.state
        level = DiagnosticStatus.OK if state is LoopState.ACTIVE else (
            DiagnosticStatus.ERROR if state is LoopState.ESTOPPED else DiagnosticStatus.WARN)
        values = {"state": state.value, "rate_hz": f"{rate:.2f}", "ticks": str(stats.ticks),
                  "held_ticks": str(stats.held_ticks), "deadline_misses": str(stats.deadline_misses),
                  "watchdog": stats.last_reason or "ok", "input_problem": self._input_problem or "none",
                  **{f"latency_{k}_ms": f"{1e3 * v:.2f}" for k, v in stats.stage_seconds.items()}}
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: control loop", hardware_id="gato_robot",
                                  message=stats.last_reason or state.value,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = GatoStackNode()
    # A single-threaded executor: with this rclpy (Jazzy 7.1), MultiThreadedExecutor re-yields
    # ready timers and subscriptions in a hot loop (ros2/rclpy#1223, #1452); on a 2-core machine it
    # starved a 50 Hz sensor stream to 17 Hz and stalled the 20 Hz tick, while the single-threaded
    # one keeps both rates exactly. The callback groups above keep the node correct under a
    # MultiThreadedExecutor (GATO_ROBOT_EXECUTOR=multi) once that is fixed.
    executor = MultiThreadedExecutor() if os.environ.get("GATO_ROBOT_EXECUTOR") == "multi" else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        if node.loop is not None:
            node.loop.disable()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
