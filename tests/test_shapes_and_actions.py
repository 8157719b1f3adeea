"""Object shapes, triplets and the shared action path (kinematics only: fast)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gato_robot.robot.action_path import CartesianActionMapper
from gato_robot.sim.shapes import ShapeParams, convex_parts, mesh_files, part_meshes, volume
from gato_robot.sim.evaluate import triplet_names
from gato_robot.sim.rollout import make_env
from gato_robot.sim.triplets import (NARROW_GRID, TEST_TRIPLETS, TRAINING_GRIDS, WIDE_GRID, training_distribution,
                                     training_triplet)


@pytest.fixture(scope="module")
def mapper():
    return CartesianActionMapper()


def test_every_part_is_convex_and_the_hole_is_exact():
    holed = ShapeParams("h", size=(0.06, 0.06, 0.04), hole=0.5)
    parts = part_meshes(holed)
    assert len(parts) == 4 and all(p.is_convex for p in parts)
    assert volume(holed) == pytest.approx(0.06 * 0.06 * 0.04 - 0.03 * 0.03 * 0.04, rel=1e-9)
    prism = ShapeParams("p", size=(0.06, 0.05, 0.04), prism=True)
    assert volume(prism) == pytest.approx(0.5 * 0.06 * 0.04 * 0.05, rel=1e-9)
    slanted = convex_parts(ShapeParams("s", slant=0.5))[0]
    top, bottom = slanted[slanted[:, 2] > 0], slanted[slanted[:, 2] < 0]
    assert top[:, 0].mean() - bottom[:, 0].mean() == pytest.approx(0.025)


def test_meshes_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("GATO_ROBOT_CACHE", str(tmp_path))
    params = ShapeParams("b", bevel=0.3)
    first = mesh_files(params)
    stamp = first[0].stat().st_mtime_ns
    assert mesh_files(params) == first and first[0].stat().st_mtime_ns == stamp
    assert mesh_files(ShapeParams("b", bevel=0.2))[0].parent != first[0].parent


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="exceeds the grasp width"):
        ShapeParams("wide", size=(0.05, 0.09, 0.05))
    with pytest.raises(ValueError, match="a hole combines with size and slant only"):
        ShapeParams("x", hole=0.3, prism=True)


def _training_values(grid) -> set:
    values = set()
    for seed in range(2000):
        for params in training_triplet(seed, grid).objects().values():
            values.add((params.size, params.bevel, params.hole, params.slant, params.prism))
    return values


@pytest.mark.parametrize("grid", [NARROW_GRID, WIDE_GRID], ids=lambda g: g.name)
def test_test_objects_never_appear_in_training(grid):
    training = _training_values(grid)
    for triplet in TEST_TRIPLETS:
        for params in triplet.objects().values():
            assert (params.size, params.bevel, params.hole, params.slant, params.prism) not in training
            assert (any(v not in grid.sizes for v in params.size) or params.bevel not in (0.0, *grid.bevels)
                    or params.hole not in (0.0, *grid.holes) or params.slant not in (0.0, *grid.slants))
        assert triplet.blue.flat_top


def test_the_wide_grid_spans_the_test_objects_and_the_narrow_one_does_not():
    """Held-out objects are interpolation for the wide grid (as in the benchmark), extrapolation for the narrow."""
    tests = [params for triplet in TEST_TRIPLETS for params in triplet.objects().values()]
    sizes = [v for params in tests for v in params.size]
    for axis, values in (("sizes", sizes), ("bevels", [p.bevel for p in tests if p.bevel]),
                         ("holes", [p.hole for p in tests if p.hole]), ("slants", [p.slant for p in tests if p.slant])):
        wide, narrow = getattr(WIDE_GRID, axis), getattr(NARROW_GRID, axis)
        assert min(wide) <= min(values) and max(values) <= max(wide), axis
        assert max(values) > max(narrow), axis
    wide_objects = [p for seed in range(500) for p in training_triplet(seed, WIDE_GRID).objects().values()]
    assert {p.size[2] for p in wide_objects} >= {0.0225, 0.0725}  # flat and tall objects both occur
    assert max(p.size[1] for p in wide_objects) <= 0.065  # within the grasp width


def test_training_triplet_names_name_their_grid():
    assert training_triplet(17).name == "train-17" and training_triplet(17, WIDE_GRID).name == "train-wide-17"
    assert training_distribution("train-wide-17") == "train-wide" and training_distribution("train-17") == "train"
    assert training_distribution("test-1-slanted") is None and training_distribution("train-wide") is None
    assert set(TRAINING_GRIDS) == {"train", "train-wide"}
    assert triplet_names("train-wide,test-4")[:2] == ["train-wide", "test-4-flat"]
    env = make_env("mujoco", "train-wide", render_cameras=False)
    env.reset(seed=17)
    assert env.triplet == training_triplet(17, WIDE_GRID)
    env.close()


def test_training_triplets_are_deterministic_and_varied():
    assert training_triplet(3) == training_triplet(3)
    assert len({training_triplet(s) for s in range(50)}) == 50
    assert all(training_triplet(s).blue.flat_top for s in range(200))


def _integrate(mapper, action, steps, q=None):
    q = np.array(mapper.arm.home_joint_positions) if q is None else q
    for _ in range(steps):
        q = mapper(q, action).arm_positions
    return q


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_commanded_tcp_velocity_is_tracked(mapper, axis):
    action = np.zeros(5)
    action[axis] = 0.05 if axis < 2 else -0.05
    start = mapper.tcp_pose(np.array(mapper.arm.home_joint_positions))
    end = mapper.tcp_pose(_integrate(mapper, action, 10))
    expected = np.zeros(3)
    expected[axis] = action[axis] * 0.5
    np.testing.assert_allclose(end[:3] - start[:3], expected, atol=0.003)
    assert abs(end[3]) > 0.99  # still pointing down (quaternion x ~ 1 at zero yaw)


def test_yaw_rate_turns_the_wrist_and_stops_at_the_limit(mapper):
    q = _integrate(mapper, np.array([0, 0, 0, 1.0, 0]), 10)
    yaw = 2 * np.arctan2(mapper.tcp_pose(q)[4], mapper.tcp_pose(q)[3])
    assert yaw == pytest.approx(0.5, abs=0.05)
    q = _integrate(mapper, np.array([0, 0, 0, 1.0, 0]), 60, q)
    yaw = 2 * np.arctan2(mapper.tcp_pose(q)[4], mapper.tcp_pose(q)[3])
    assert yaw == pytest.approx(np.pi / 2, abs=0.05)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-1, 1)] * 5), min_size=5, max_size=60))
def test_any_action_sequence_keeps_tcp_in_the_box_and_joints_in_limits(actions):
    mapper = _MAPPER
    q = np.array(mapper.arm.home_joint_positions)
    q = _integrate(mapper, np.array([0, 0, 0, 0, 0.0]), 3, q)  # settle into the box from home
    k = mapper.kinematics
    for normalized in actions:
        action = np.asarray(normalized) * np.asarray(mapper.spec.bounds)
        command = mapper(q, action * 5)  # 5x beyond the bounds: must be clipped
        assert np.all(command.arm_positions >= k.lower - 1e-9) and np.all(command.arm_positions <= k.upper + 1e-9)
        assert np.all(np.abs(command.arm_positions - q) <= k.velocity_limit * 0.05 + 1e-9)
        assert 0.0 <= command.gripper_width <= 0.08
        q = command.arm_positions
        assert mapper.config.workspace.contains(mapper.tcp_pose(q)[:3], tolerance=0.004)


_MAPPER = CartesianActionMapper()


def test_posture_term_returns_the_elbow_without_moving_the_tcp():
    """Arm moved along the TCP task's null space (elbow swung, TCP still): holding still, the
    posture term brings the joints back toward home while the TCP stays put; without it they stay."""
    from gato_robot.robot.action_path import ActionPathConfig
    home = np.array(_MAPPER.arm.home_joint_positions)
    jacobian, _ = _MAPPER.kinematics.jacobian(home)
    null_direction = np.linalg.svd(jacobian)[2][-1]  # unit joint direction with J n = 0
    start = home + 0.3 * null_direction
    for gain, remaining in ((0.0, (0.9, 1.01)), (1.0, (0.0, 0.5))):
        mapper = CartesianActionMapper(config=ActionPathConfig(posture_gain=gain))
        q = _integrate(mapper, np.zeros(5), 40, start)  # 2 s of "hold still"
        assert remaining[0] <= np.linalg.norm(q - home) / 0.3 <= remaining[1]
        assert np.linalg.norm(mapper.tcp_pose(q)[:3] - mapper.tcp_pose(start)[:3]) < 0.003
    with pytest.raises(ValueError, match="posture_gain"):
        ActionPathConfig(posture_gain=-1.0)


def test_bad_joint_state_is_rejected(mapper):
    with pytest.raises(ValueError, match="expected 7 finite values"):
        mapper(np.r_[np.zeros(6), np.nan], np.zeros(5))
    with pytest.raises(ValueError, match="expected 7 finite values"):
        mapper(np.zeros(6), np.zeros(5))


def test_arm_joints_out_of_chain_order_are_refused():
    """Commands and limits are indexed in the URDF's chain order: a reordered ``arm_joints``
    parameter would apply joint 1's limits to joint 7 and command the wrong joints."""
    from gato_robot.robot.action_path import ArmKinematics
    from gato_robot.robot.description import PANDA

    swapped = dataclasses.replace(PANDA, arm_joints=(PANDA.arm_joints[1], PANDA.arm_joints[0], *PANDA.arm_joints[2:]))
    with pytest.raises(ValueError, match="in chain order"):
        ArmKinematics(swapped)
    assert ArmKinematics(PANDA).lower.shape == (7,)
