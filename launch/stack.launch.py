"""`ros2 launch gato_robot stack.launch.py model_path:=/path/to/export [backend:=tensorrt ...]`

Starts the gato_robot_stack lifecycle node with config/params.yaml (found with FindPackageShare)
plus the overrides below. With autostart:=true the node is configured and, once inactive,
activated; activation itself refuses until fresh joint states arrive, so nothing moves before the
robot is publishing its state.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

# launch argument -> (node parameter, default, description)
ARGUMENTS = {
    "model_path": ("model_path", "", "ONNX export / TensorRT engine directory or PyTorch checkpoint"),
    "backend": ("backend", "onnxruntime", "policy runtime: onnxruntime, tensorrt or torch"),
    "action_temperature": ("action_temperature", "0.0", "0 = argmax; 1.0 samples action tokens as Gato does"),
    "camera_topics": ("camera_topics", "[/front_left/image_raw, /front_right/image_raw]",
                      "image topics, in the order of camera_names"),
    "joint_states_topic": ("joint_states_topic", "/joint_states", "sensor_msgs/JointState topic"),
    "controller": ("controller", "forward_position_controller", "ros2_control controller receiving commands"),
    "command_interface": ("command_interface", "forward", "forward (Float64MultiArray) or trajectory"),
    "rate_hz": ("rate_hz", "20.0", "control rate"),
}


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    declared = [DeclareLaunchArgument(
        "params_file", default_value=PathJoinSubstitution([FindPackageShare("gato_robot"), "config", "params.yaml"]),
        description="node parameters (YAML)")]
    declared.append(DeclareLaunchArgument("autostart", default_value="true",
                                          description="configure and activate the node at start-up"))
    overrides = {}
    for argument, (parameter, default, description) in ARGUMENTS.items():
        declared.append(DeclareLaunchArgument(argument, default_value=default, description=description))
        overrides[parameter] = ParameterValue(LaunchConfiguration(argument), value_type=None)

    node = LifecycleNode(package="gato_robot", executable="stack_node", name="gato_robot_stack", namespace="",
                         output="screen", parameters=[params_file, overrides])
    autostart = IfCondition(LaunchConfiguration("autostart"))
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE), condition=autostart)
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]), condition=autostart)
    return LaunchDescription([*declared, node, activate, configure])
