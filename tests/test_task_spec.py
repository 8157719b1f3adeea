"""One task spec: the RGB-stacking values (rate, instruction, cameras, image size, action and
proprio layout, episode length) reach every layer from gato_robot.task, and the files a ROS machine
reads (params.yaml) say the same."""

from pathlib import Path

import pytest
import yaml

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.robot.action_path import ActionPathConfig
from gato_robot.deploy.control import ControlConfig
from gato_robot.proprio import PROPRIO_DIM
from gato_robot.deploy.safety import SafetyLimits
from gato_robot.task import RGB_STACKING, TaskSpec
from gato_robot.tokenizer.sequence import TimestepSpec
from gato_robot.sim.env_base import INSTRUCTION
from gato_robot.sim.scene import DEFAULT_SCENE

PARAMS = Path(__file__).parents[1] / "ros_ws" / "src" / "gato_robot" / "config" / "params.yaml"


def test_every_layer_takes_the_task_values():
    task = RGB_STACKING
    assert task.control_period_s == pytest.approx(0.05) and task.episode_seconds == pytest.approx(20.0)
    timestep = TimestepSpec()
    assert (timestep.camera_names, timestep.image_height, timestep.image_width, timestep.proprio_dim) == \
        (task.camera_names, task.image_height, task.image_width, task.proprio_dim) == \
        (task.camera_names, task.image_height, task.image_width, PROPRIO_DIM)
    assert timestep.action_dim == task.actions.dim and task.actions is RGB_STACKING_ACTIONS
    control = ControlConfig()
    assert (control.rate_hz, control.instruction) == (task.rate_hz, task.instruction) == (task.rate_hz, INSTRUCTION)
    assert ActionPathConfig().control_period_s == task.control_period_s
    assert SafetyLimits.__dataclass_fields__["control_period_s"].default == task.control_period_s
    assert DEFAULT_SCENE.control_period_s == pytest.approx(task.control_period_s)  # physics steps add up to a period
    assert DEFAULT_SCENE.episode_steps == task.episode_steps
    assert tuple(c.name for c in DEFAULT_SCENE.cameras) == task.camera_names
    assert {(c.height, c.width) for c in DEFAULT_SCENE.cameras} == {(task.image_height, task.image_width)}


def test_the_node_parameters_file_says_what_the_task_says():
    parameters = next(iter(yaml.safe_load(PARAMS.read_text()).values()))["ros__parameters"]
    assert parameters["rate_hz"] == RGB_STACKING.rate_hz
    assert parameters["instruction"] == RGB_STACKING.instruction
    assert tuple(parameters["camera_names"]) == RGB_STACKING.camera_names


def test_the_task_spec_is_frozen():
    with pytest.raises(AttributeError):
        RGB_STACKING.rate_hz = 10.0  # type: ignore[misc]
    assert isinstance(RGB_STACKING, TaskSpec)
