"""RGB stacking in PyBullet, built from :mod:`gato_robot.sim.scene`; headless (DIRECT) with the TinyRenderer.

Same URDF, object meshes (the same convex parts), cameras, physics step and control interface as
:mod:`gato_robot.sim.mujoco_env`: joint position targets for the arm and fingers every control period.
"""

from __future__ import annotations

import numpy as np
import pybullet as pb

from gato_robot.observation import JointCommand

from .env_base import ObjectPose, RGBStackingEnv
from .scene import BASKET_RGBA, COLORS, FLOOR_RGBA, ROBOT_RGBA
from .shapes import mesh_files, volume
from .triplets import Triplet

ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)  # N m, the URDF effort limits
ARM_POSITION_GAIN, ARM_VELOCITY_GAIN = 0.6, 1.0
FINGER_FORCE = 40.0  # N
LIGHT_DIRECTION = (0.0, 0.0, 1.0)


class PybulletRGBStacking(RGBStackingEnv):
    engine = "pybullet"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.client = pb.connect(pb.DIRECT)
        self._views = {c.name: (pb.computeViewMatrix(c.position, c.target, c.up),
                                pb.computeProjectionMatrixFOV(c.fovy_deg, c.width / c.height, c.near_m, c.far_m))
                       for c in self.scene.cameras}
        self._objects: dict[str, int] = {}
        self._loaded: Triplet | None = None

    def _build_world(self, triplet: Triplet) -> None:
        """Build the whole world from scratch. Done at every reset: Bullet keeps solver and contact
        caches that no state restore clears, and only a fresh world replays a seed bit for bit."""
        c, physics = self.client, self.scene.physics
        pb.resetSimulation(physicsClientId=c)
        pb.setTimeStep(physics.timestep_s, physicsClientId=c)
        pb.setGravity(*physics.gravity, physicsClientId=c)
        pb.setPhysicsEngineParameter(numSolverIterations=50, deterministicOverlappingPairs=1, physicsClientId=c)
        self.robot = pb.loadURDF(str(self.scene.arm.resolved_urdf()), useFixedBase=True,
                                 flags=pb.URDF_USE_INERTIA_FROM_FILE, physicsClientId=c)
        joints = {pb.getJointInfo(self.robot, j, physicsClientId=c)[1].decode(): j
                  for j in range(pb.getNumJoints(self.robot, physicsClientId=c))}
        self._arm_joints = [joints[name] for name in self.scene.arm.arm_joints]
        self._finger_joints = [joints[name] for name in self.scene.arm.finger_joints]
        for link in range(-1, pb.getNumJoints(self.robot, physicsClientId=c)):
            pb.changeVisualShape(self.robot, link, rgbaColor=ROBOT_RGBA, physicsClientId=c)
        for joint in self._finger_joints:
            pb.changeDynamics(self.robot, joint, lateralFriction=physics.friction, spinningFriction=0.001,
                              physicsClientId=c)
        self._build_static()
        self._entity: dict[int, str] = {self.robot: "robot", **{b: "ground" for b in self._static}}
        self._objects = {}
        for name, params in triplet.objects().items():
            files = [str(p) for p in mesh_files(params)]
            collision = pb.createCollisionShapeArray([pb.GEOM_MESH] * len(files), fileNames=files, physicsClientId=c)
            visual = pb.createVisualShapeArray([pb.GEOM_MESH] * len(files), fileNames=files, physicsClientId=c)
            body = pb.createMultiBody(physics.object_density * volume(params), collision, visual,
                                      basePosition=[0.5, 0.0, params.size[2]], physicsClientId=c)
            pb.changeVisualShape(body, -1, rgbaColor=COLORS[name], physicsClientId=c)
            pb.changeDynamics(body, -1, lateralFriction=physics.friction, spinningFriction=0.001,
                              rollingFriction=0.0001, physicsClientId=c)
            self._objects[name] = body
            self._entity[body] = name

    def _build_static(self) -> None:
        c = self.client
        plane = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=c)
        plane_visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[2, 2, 0.001], rgbaColor=FLOOR_RGBA,
                                            visualFramePosition=[0, 0, -0.001], physicsClientId=c)
        self._static = [pb.createMultiBody(0, plane, plane_visual, physicsClientId=c)]
        pb.changeDynamics(self._static[0], -1, lateralFriction=self.scene.physics.friction, physicsClientId=c)
        for centre, half in self.scene.basket_walls():
            collision = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
            visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=BASKET_RGBA, physicsClientId=c)
            self._static.append(pb.createMultiBody(0, collision, visual, basePosition=centre, physicsClientId=c))

    def _load_triplet(self, triplet: Triplet) -> None:
        self._loaded = triplet  # the world is (re)built at every reset

    def _reset_state(self, arm_q, gripper_width, object_poses) -> None:
        c = self.client
        self._build_world(self._loaded)
        for joint, value in zip(self._arm_joints, arm_q):
            pb.resetJointState(self.robot, joint, value, 0.0, physicsClientId=c)
        for joint in self._finger_joints:
            pb.resetJointState(self.robot, joint, gripper_width / 2, 0.0, physicsClientId=c)
        for name, pose in object_poses.items():
            pb.resetBasePositionAndOrientation(self._objects[name], pose.position, pose.quaternion, physicsClientId=c)
            pb.resetBaseVelocity(self._objects[name], [0, 0, 0], [0, 0, 0], physicsClientId=c)

    def _apply_command(self, command: JointCommand) -> None:
        c = self.client
        pb.setJointMotorControlArray(self.robot, self._arm_joints, pb.POSITION_CONTROL,
                                     targetPositions=command.arm_positions, forces=ARM_FORCES,
                                     positionGains=[ARM_POSITION_GAIN] * 7, velocityGains=[ARM_VELOCITY_GAIN] * 7,
                                     physicsClientId=c)
        pb.setJointMotorControlArray(self.robot, self._finger_joints, pb.POSITION_CONTROL,
                                     targetPositions=[command.gripper_width / 2] * 2, forces=[FINGER_FORCE] * 2,
                                     physicsClientId=c)

    def _step_physics(self, steps: int) -> None:
        for _ in range(steps):
            pb.stepSimulation(physicsClientId=self.client)

    def _arm_state(self):
        states = pb.getJointStates(self.robot, self._arm_joints + self._finger_joints, physicsClientId=self.client)
        q = np.array([s[0] for s in states[:7]])
        dq = np.array([s[1] for s in states[:7]])
        return q, dq, float(states[7][0] + states[8][0])

    def object_poses(self) -> dict[str, ObjectPose]:
        poses = {}
        for name, body in self._objects.items():
            position, quaternion = pb.getBasePositionAndOrientation(body, physicsClientId=self.client)
            poses[name] = ObjectPose(np.array(position), np.array(quaternion))
        return poses

    def contacts(self) -> set[frozenset[str]]:
        pairs = set()
        for point in pb.getContactPoints(physicsClientId=self.client):
            a, b = self._entity.get(point[1], ""), self._entity.get(point[2], "")
            if a and b and a != b and point[8] < 0.002:
                pairs.add(frozenset((a, b)))
        return pairs

    def render_camera(self, name: str) -> np.ndarray:
        view, projection = self._views[name]
        camera = next(c for c in self.scene.cameras if c.name == name)
        _, _, rgba, _, _ = pb.getCameraImage(camera.width, camera.height, view, projection, shadow=0,
                                             lightDirection=LIGHT_DIRECTION, renderer=pb.ER_TINY_RENDERER,
                                             physicsClientId=self.client)
        return np.asarray(rgba, dtype=np.uint8).reshape(camera.height, camera.width, 4)[..., :3].copy()

    def close(self) -> None:
        if self.client is not None and pb.isConnected(self.client):
            pb.disconnect(self.client)
        self.client = None
