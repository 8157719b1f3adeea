"""RGB stacking in MuJoCo (MjSpec), built from :mod:`gato_robot.sim.scene`; offscreen rendering via EGL or OSMesa.

The Panda comes from the same URDF PyBullet loads: its ``package://`` mesh paths are resolved to
absolute paths in a cached copy that MuJoCo's URDF importer reads. Arm bodies are gravity
compensated and driven by position actuators on every joint (fingers included), so the engine
receives joint position targets, as the real arm's forward position controller does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402

from gato_robot.observation import JointCommand  # noqa: E402

from .env_base import ObjectPose, RGBStackingEnv  # noqa: E402
from .scene import BASKET_RGBA, COLORS, FLOOR_RGBA, ROBOT_RGBA, CameraSpec, SceneSpec  # noqa: E402
from .shapes import mesh_files, shape_cache_dir, volume  # noqa: E402
from .triplets import Triplet  # noqa: E402

ARM_KP = (8000.0, 8000.0, 6000.0, 6000.0, 3000.0, 2000.0, 1500.0)  # N m / rad
ARM_KV = (400.0, 400.0, 300.0, 300.0, 100.0, 80.0, 50.0)  # N m s / rad
FINGER_KP, FINGER_KV, FINGER_FORCE = 800.0, 40.0, 40.0  # N/m, N s/m, N


def mujoco_ready_urdf(urdf: Path) -> Path:
    """Copy of ``urdf`` with ``package://`` paths made absolute and a MuJoCo compiler block added."""
    text = urdf.read_text()
    text = text.replace("package://", f"{urdf.parent.as_posix()}/")
    text = re.sub(r"<robot([^>]*)>", r'<robot\1><mujoco><compiler discardvisual="true" strippath="false" '
                  r'fusestatic="false" balanceinertia="true"/></mujoco>', text, count=1)
    out = shape_cache_dir().parent / "urdf" / f"{urdf.stem}-mujoco.urdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file() or out.read_text() != text:
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    return out


def _camera_xyaxes(camera: CameraSpec) -> list[float]:
    right, up, _ = camera.axes()
    return [*right, *up]


def build_spec(scene: SceneSpec, triplet: Triplet) -> mujoco.MjSpec:
    spec = mujoco.MjSpec.from_file(str(mujoco_ready_urdf(scene.arm.resolved_urdf())))
    spec.option.timestep = scene.physics.timestep_s
    spec.option.gravity = scene.physics.gravity
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.noslip_iterations = 3
    spec.visual.global_.offwidth = max(c.width for c in scene.cameras)
    spec.visual.global_.offheight = max(c.height for c in scene.cameras)
    spec.visual.headlight.ambient = [0.4, 0.4, 0.4]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]

    for body in spec.bodies:
        if body.name.startswith("panda"):
            body.gravcomp = 1.0
    for geom in spec.geoms:  # robot geoms: collide with the world and objects, not with each other
        geom.rgba = ROBOT_RGBA
        geom.contype, geom.conaffinity = 2, 1
        geom.friction = [scene.physics.friction, 0.02, 0.001]
        geom.condim = 4

    world = spec.worldbody
    world.add_light(pos=[0.5, 0.0, 1.5], dir=[0, 0, -1], diffuse=[0.6, 0.6, 0.6], castshadow=False)
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2, 2, 0.1], rgba=FLOOR_RGBA,
                   contype=1, conaffinity=3, friction=[scene.physics.friction, 0.02, 0.001], condim=4)
    for i, (centre, half) in enumerate(scene.basket_walls()):
        world.add_geom(name=f"basket_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=half, pos=centre,
                       rgba=BASKET_RGBA, contype=1, conaffinity=3)
    for camera in scene.cameras:
        world.add_camera(name=camera.name, pos=camera.position, xyaxes=_camera_xyaxes(camera), fovy=camera.fovy_deg)

    for name, params in triplet.objects().items():
        body = world.add_body(name=name, pos=[0.5, 0.0, params.size[2]])
        body.add_freejoint(name=f"{name}_free")
        mass_per_part = scene.physics.object_density * volume(params) / len(mesh_files(params))
        for i, path in enumerate(mesh_files(params)):
            mesh_name = f"{name}_part{i}"
            spec.add_mesh(name=mesh_name, file=str(path))
            body.add_geom(name=mesh_name, type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh_name, rgba=COLORS[name],
                          contype=1, conaffinity=3, condim=4, mass=mass_per_part,
                          friction=[scene.physics.friction, 0.02, 0.001])

    for joint, kp, kv in zip(scene.arm.arm_joints, ARM_KP, ARM_KV):
        actuator = spec.add_actuator(name=f"{joint}_position", target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=kp, kv=kv)
    for joint in scene.arm.finger_joints:
        actuator = spec.add_actuator(name=f"{joint}_position", target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=FINGER_KP, kv=FINGER_KV)
        actuator.forcelimited = True
        actuator.forcerange = [-FINGER_FORCE, FINGER_FORCE]
    return spec


class MujocoRGBStacking(RGBStackingEnv):
    engine = "mujoco"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderer: mujoco.Renderer | None = None

    def _load_triplet(self, triplet: Triplet) -> None:
        self.model = build_spec(self.scene, triplet).compile()
        self.data = mujoco.MjData(self.model)
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        model, arm = self.model, self.scene.arm
        self._arm_qpos = np.array([model.jnt_qposadr[model.joint(j).id] for j in arm.arm_joints])
        self._arm_qvel = np.array([model.jnt_dofadr[model.joint(j).id] for j in arm.arm_joints])
        self._finger_qpos = np.array([model.jnt_qposadr[model.joint(j).id] for j in arm.finger_joints])
        self._object_qpos = {n: model.jnt_qposadr[model.joint(f"{n}_free").id] for n in self.scene.object_names}
        robot_bodies = {b for b in range(model.nbody) if model.body(b).name.startswith("panda")}
        self._entity = np.full(model.ngeom, "", dtype=object)
        for g in range(model.ngeom):
            body = model.geom_bodyid[g]
            name = model.geom(g).name
            if body in robot_bodies:
                self._entity[g] = "robot"
            elif name == "floor" or name.startswith("basket"):
                self._entity[g] = "ground"
            elif model.body(body).name in self.scene.object_names:
                self._entity[g] = model.body(body).name

    def _reset_state(self, arm_q, gripper_width, object_poses) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qpos] = arm_q
        self.data.qpos[self._finger_qpos] = gripper_width / 2
        for name, pose in object_poses.items():
            x, y, z, w = pose.quaternion
            self.data.qpos[self._object_qpos[name]:self._object_qpos[name] + 7] = [*pose.position, w, x, y, z]
        mujoco.mj_forward(self.model, self.data)

    def _apply_command(self, command: JointCommand) -> None:
        self.data.ctrl[:7] = command.arm_positions
        self.data.ctrl[7:9] = command.gripper_width / 2

    def _step_physics(self, steps: int) -> None:
        mujoco.mj_step(self.model, self.data, nstep=steps)

    def _arm_state(self):
        width = float(self.data.qpos[self._finger_qpos].sum())
        return self.data.qpos[self._arm_qpos].copy(), self.data.qvel[self._arm_qvel].copy(), width

    def object_poses(self) -> dict[str, ObjectPose]:
        poses = {}
        for name, adr in self._object_qpos.items():
            qpos = self.data.qpos[adr:adr + 7]
            poses[name] = ObjectPose(qpos[:3].copy(), np.array([qpos[4], qpos[5], qpos[6], qpos[3]]))
        return poses

    def contacts(self) -> set[frozenset[str]]:
        count = self.data.ncon
        if count == 0:
            return set()
        contact = self.data.contact
        near = contact.dist[:count] < 0.002
        first, second = self._entity[contact.geom1[:count][near]], self._entity[contact.geom2[:count][near]]
        return {frozenset((a, b)) for a, b in zip(first, second) if a and b and a != b}

    def render_camera(self, name: str) -> np.ndarray:
        if self._renderer is None:
            camera = self.scene.cameras[0]
            self._renderer = mujoco.Renderer(self.model, camera.height, camera.width)
        self._renderer.update_scene(self.data, camera=name)
        return self._renderer.render()  # a fresh array per call

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
