"""`ros2 launch gato_robot stack.launch.py model_path:=/path/to/export [backend:=tensorrt ...]`

Starts the gato_robot_stack lifecycle node with config/params.yaml and, on top, the robot's
config/robot_<robot>.yaml (found with FindPackageShare; `robot:=fr3`, the default, is a Franka
Research 3 through franka_ros2: trajectory controller, gripper action, fr3_ names, URDF from
robot_description; `robot:=sim` a simulator with forward controllers), or only your own
`params_file:=...`. A launch argument overrides its parameter only when it is given on the
command line: everything else comes from the params files. Nothing moves by itself:

- autostart defaults to false (a real arm is activated by its operator:
  `ros2 lifecycle set /gato_robot_stack configure`, then `activate`).
- With autostart:=true the node is configured and activated once, only after that configure
  succeeded (configuring -> inactive); a later deactivate, failed activate or e-stop is never
  undone by the launch file. If that configure fails (configuring -> unconfigured), autostart
  gives up: a configure the operator runs later does not activate the arm. Activation itself
  refuses until fresh, plausible joint states arrive.
"""

from pathlib import Path

import yaml
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler,
                            UnregisterEventHandler)
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

# launch argument -> (node parameter, default, description); "" = not given: the params file decides
ARGUMENTS = {
    "model_path": ("model_path", "", "ONNX export / TensorRT engine directory or PyTorch checkpoint"),
    "backend": ("backend", "", "policy runtime: onnxruntime, tensorrt or torch"),
    "action_temperature": ("action_temperature", "", "0 = argmax (shipped); 1.0 samples action tokens as the paper's Gato"),
    "camera_topics": ("camera_topics", "", "image topics, in the order of camera_names, e.g. [/a/image, /b/image]"),
    "joint_states_topic": ("joint_states_topic", "", "sensor_msgs/JointState topic"),
    "controller": ("controller", "", "ros2_control controller receiving commands"),
    "command_interface": ("command_interface", "", "forward (Float64MultiArray) or trajectory"),
    "rate_hz": ("rate_hz", "", "control rate (Hz)"),
    "action_expectation": ("action_expectation", "", "physical (shipped), companded or off: motion decoded by expectation"),
    "speed_scale": ("speed_scale", "", "fraction of the URDF joint velocity limits (params file: 0.25)"),
    "use_sim_time": ("use_sim_time", "", "use /clock (simulation)"),
}


def _start_node(context):
    overrides = {}
    for argument, (parameter, _, _) in ARGUMENTS.items():
        text = LaunchConfiguration(argument).perform(context)
        if text != "":
            overrides[parameter] = yaml.safe_load(text)
    params_file = LaunchConfiguration("params_file").perform(context)
    if params_file:
        files = [params_file]
    else:
        config = Path(FindPackageShare("gato_robot").perform(context)) / "config"
        robot = config / f"robot_{LaunchConfiguration('robot').perform(context)}.yaml"
        if not robot.is_file():
            choices = sorted(p.stem.removeprefix("robot_") for p in config.glob("robot_*.yaml"))
            raise ValueError(f"robot:={robot.stem.removeprefix('robot_')} has no {robot}; choose one of {choices}")
        files = [str(config / "params.yaml"), str(robot)]
    node = LifecycleNode(package="gato_robot", executable="stack_node", name="gato_robot_stack",
                         namespace=LaunchConfiguration("namespace").perform(context), output="screen", parameters=[*files, overrides])
    autostart = IfCondition(LaunchConfiguration("autostart"))
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE), condition=autostart)
    on_configured = [EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                 transition_id=Transition.TRANSITION_ACTIVATE))]
    on_failed = [LogInfo(msg="autostart: configure failed; autostart gives up (configure and activate by hand)")]
    activate_once = OnStateTransition(target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
                                      handle_once=True, entities=on_configured)
    give_up = OnStateTransition(target_lifecycle_node=node, start_state="configuring", goal_state="unconfigured",
                                handle_once=True, entities=on_failed)
    # The first configure's outcome removes the other handler: a later configure never activates.
    on_configured.append(UnregisterEventHandler(give_up))
    on_failed.append(UnregisterEventHandler(activate_once))
    return [node, RegisterEventHandler(activate_once, condition=autostart),
            RegisterEventHandler(give_up, condition=autostart), configure]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument("robot", default_value="fr3", description="fr3 (franka_ros2) or sim: adds "
                              "config/robot_<robot>.yaml to config/params.yaml"),
        DeclareLaunchArgument("params_file", default_value="", description="your complete node parameters "
                              "(YAML), instead of config/params.yaml + config/robot_<robot>.yaml"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace (its topics are relative)"),
        DeclareLaunchArgument("autostart", default_value="false",
                              description="configure, then activate once, at start-up (off for real arms)"),
    ]
    declared += [DeclareLaunchArgument(argument, default_value=default, description=description)
                 for argument, (_, default, description) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_start_node)])
