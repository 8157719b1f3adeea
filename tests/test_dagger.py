"""DAgger data: the policy drives, the expert's labels are stored, and the return filter keeps
relabelled episodes (their failures are what a policy must learn to recover from)."""

from dataclasses import replace

import numpy as np

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.sim.env_base import INSTRUCTION
from gato_robot.sim.relabel import DemonstrationLabelsAgent, RelabellingAgent
from gato_robot.sim.rollout import ExpertAgent, PolicyAgent, make_env, run_episode
from gato_robot.sim.scene import DEFAULT_SCENE
from tests.conftest import decisive_policy


def test_relabelled_episodes_store_expert_labels_and_bypass_the_return_filter(tmp_path):
    store = EpisodeStore(tmp_path / "store", create=True)
    env = make_env("mujoco", "train")
    for seed in (1, 2):  # two successful expert demonstrations set the expert return
        writer = store.writer("mujoco", "train", seed, INSTRUCTION)
        assert run_episode(env, ExpertAgent(), seed, writer=writer).success
        writer.commit(True)
    short = make_env("mujoco", "train", scene=replace(DEFAULT_SCENE, episode_steps=15))
    failed = store.writer("mujoco", "train", 3, INSTRUCTION)  # a failed demonstration: filtered out
    failed.commit(run_episode(short, ExpertAgent(), 3, writer=failed).success)
    checkpoint = save_checkpoint(decisive_policy(seed=2), tmp_path / "policy")
    relabeller = RelabellingAgent(PolicyAgent(str(checkpoint), temperature=1.0))
    writer = store.writer("mujoco", "train", 6_000_000, INSTRUCTION, relabelled=True)
    result = run_episode(short, relabeller, 6_000_000, writer=writer)
    meta = writer.commit(result.success)
    assert meta.relabelled and not result.success and meta.episode_return == 0

    kept = store.episodes(0.8)
    assert sorted(m.seed for m in kept) == [1, 2, 6_000_000]
    with EpisodeReader(meta.path) as reader:
        recorded = reader.actions()
    labels = np.array([s.label for s in relabeller.steps], dtype=np.float32)
    executed = np.array([s.action for s in relabeller.steps], dtype=np.float32)
    np.testing.assert_array_equal(recorded, labels)  # the expert's labels, not what the policy did
    assert not np.allclose(recorded, executed)


def test_batched_dagger_collection_records_what_one_episode_at_a_time_records(tmp_path):
    from gato_robot.sim.relabel import BatchRelabellingAgent
    from gato_robot.sim.rollout import run_episodes_batched

    checkpoint = save_checkpoint(decisive_policy(seed=2), tmp_path / "policy")
    scene = replace(DEFAULT_SCENE, episode_steps=10)
    seeds = [6_000_001, 6_000_002]
    alone_store, batch_store = EpisodeStore(tmp_path / "alone", create=True), EpisodeStore(tmp_path / "batch", create=True)
    env = make_env("mujoco", "train", scene=scene)
    for seed in seeds:
        writer = alone_store.writer("mujoco", "train", seed, INSTRUCTION, relabelled=True)
        writer.commit(run_episode(env, RelabellingAgent(PolicyAgent(str(checkpoint), temperature=1.0)), seed,
                                  writer=writer).success)
    envs = [make_env("mujoco", "train", scene=scene) for _ in seeds]
    writers = [batch_store.writer("mujoco", "train", seed, INSTRUCTION, relabelled=True) for seed in seeds]
    agent = BatchRelabellingAgent(PolicyAgent(str(checkpoint), temperature=1.0, batch_size=2))
    for writer, result in zip(writers, run_episodes_batched(envs, agent, seeds, writers=writers)):
        writer.commit(result.success)
    for a, b in zip(alone_store.episodes(), batch_store.episodes()):
        assert a.relabelled and b.relabelled and a.steps == b.steps == 10
        with EpisodeReader(a.path) as x, EpisodeReader(b.path) as y:
            np.testing.assert_allclose(x.actions(), y.actions(), atol=1e-6)
            np.testing.assert_allclose(x.proprio(), y.proprio(), atol=1e-6)


def test_state_based_labels_agree_with_the_expert_on_its_own_path_and_differ_where_a_policy_strays():
    """DAgger labels come from the state (ScriptedExpert.label), not the phase machine: on the
    expert's own trajectory they agree with the actions it takes; in a state only a policy visits
    (TCP low beside red, an empty closed gripper) they do not say what the machine would."""
    from gato_robot.sim.expert import Phase, ScriptedExpert

    env = make_env("mujoco", "train")
    agent = DemonstrationLabelsAgent()  # no noise: the machine's clean actions drive
    assert run_episode(env, agent, 3).success
    actions, labels, phases = zip(*agent.pairs)
    actions, labels = np.array(actions), np.array(labels)
    bounds = np.asarray(RGB_STACKING_ACTIONS.bounds)
    differ = np.flatnonzero(np.any(np.abs(actions - labels) > 0.25 * bounds, axis=1))
    changes = np.array([i for i in range(1, len(phases)) if phases[i] != phases[i - 1]])
    # They differ only around the machine's phase changes (its timers and arrival tests end a
    # phase a few ticks earlier or later than the state says), never inside a phase.
    assert len(differ) < 0.2 * len(actions) and len(changes) >= 6
    assert all(np.min(np.abs(changes - i)) <= 6 for i in differ), (differ, changes)

    observation, info = env.reset(seed=4)
    red = info["objects"]["red"].position
    top = env.scene.action_path.workspace.high[2]
    expert = ScriptedExpert(env.triplet, top)
    expert.label(observation, info["objects"])  # first state: red at rest
    grasp_z, travel_z = expert._heights(info["objects"])
    strayed = dict(observation, tcp_pose=np.r_[red[0] + 0.03, red[1], grasp_z + 0.02, observation["tcp_pose"][3:]])
    label, phase = expert.label(strayed, info["objects"])
    machine = ScriptedExpert(env.triplet, top).act(strayed, info["objects"])
    assert phase is Phase.APPROACH and label[0] < 0 and abs(label[2]) < 0.2 * bounds[2]  # align at this height
    assert machine[2] > 0.5 * bounds[2]  # the phase machine: back up to carry height first
    empty = dict(strayed, tcp_pose=np.r_[red[0], red[1], grasp_z + 0.05, observation["tcp_pose"][3:]],
                 gripper_width=np.array([0.0]))
    label, phase = expert.label(empty, info["objects"])
    assert phase is Phase.DESCEND and label[4] < 0 and label[2] < 0  # open and go down, not "lift"
    env.close()


def test_state_based_labels_keep_a_lifted_red_held_as_the_demonstrations_do():
    """While the demonstrator lifts and carries red, the state-based label also says "close": red
    grasped across a narrow extent (a bevelled, holed or slanted object stops the fingers centimetres
    inside its nominal size) or with the fingers opened by a gripper flip is still held. A labeller
    that read those states as "not held" told every DAgger round to open the gripper mid-carry."""
    from gato_robot.sim.expert import ExpertConfig, Phase, ScriptedExpert

    env = make_env("mujoco", "train", render_cameras=False)
    agent = DemonstrationLabelsAgent(ExpertConfig(noise_std=0.2, gripper_flip_probability=0.01))
    held, opposite = 0, 0
    for seed in range(1000000, 1000012):  # training-store seeds, among them grasps across narrow extents
        run_episode(env, agent, seed)
        for demonstrated, label, phase in agent.pairs:
            if phase in (Phase.LIFT, Phase.CARRY):
                held += 1
                opposite += np.sign(demonstrated[4]) != np.sign(label[4])
    assert held > 500 and opposite < 0.08 * held, (opposite, held)

    observation, info = env.reset(seed=4)
    objects = dict(info["objects"])
    expert = ScriptedExpert(env.triplet, env.scene.action_path.workspace.high[2])
    expert.label(observation, objects)  # first state: red at rest
    red = objects["red"]
    lifted = replace(red, position=red.position + np.array([0.0, 0.0, 0.08]))  # above blue's height too
    tcp = np.r_[lifted.position[0], lifted.position[1], lifted.position[2] - 0.005, observation["tcp_pose"][3:]]
    for width in (0.02, env.triplet.red.size[1] + 0.02):  # a narrow grasp; fingers a flip opened
        label, phase = expert.label(dict(observation, tcp_pose=tcp, gripper_width=np.array([width])),
                                    dict(objects, red=lifted))
        assert label[4] > 0 and phase in (Phase.LIFT, Phase.CARRY, Phase.LOWER), (width, label, phase)
    env.close()
