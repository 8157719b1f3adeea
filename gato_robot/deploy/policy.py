"""What the control loop acts through: one protocol for every trained policy, and one registry from
a checkpoint's ``kind`` to its loader.

    Observation -> policy.encode (the policy's own inputs, checked) -> policy.act_batch -> physical
    action (m/s, rad/s, gripper; robot base frame) -> action path -> SafetyLimits

A Gato policy encodes by the Gato tokenizer and acts through a :class:`~gato_robot.runtime.base.PolicyRunner`
(torch, ONNX Runtime or TensorRT), decoding its action bins by the inverse mu-law (Gato Sec. 2.1);
the BC-IMP specialist encodes images and proprioception as arrays and regresses the action. Both run
under the same :class:`~gato_robot.deploy.control.ControlLoop`, in simulation and on the arm, so a
success rate measured in ``sim eval`` is that of the commands the arm would be sent. The scripted
expert is not a policy: it reads the simulator's object poses (privileged state) through its own
interface (:class:`gato_robot.sim.rollout.ExpertAgent`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..errors import DamagedFileError, read_json_object
from ..observation import Observation
from ..proprio import GRASP_SENSOR
from ..runtime.base import PolicyRunner
from ..runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE, check_expectation

GATO_KIND = "gato"
BC_IMP_KIND = "bc_imp"


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy must be shown each tick: these cameras' images at this size (uint8 RGB)."""

    camera_names: tuple[str, ...]
    image_height: int  # pixels
    image_width: int


class DeployedPolicy(Protocol):
    """B episodes in lockstep (B = 1 on the arm). ``encode`` raises ``ValueError`` (or a
    :class:`~gato_robot.tokenizer.errors.TokenizationError`) on an observation it cannot act on, so
    the loop holds; ``act_batch`` takes one encoded observation per row."""

    kind: str
    backend: str
    inputs: PolicyInputs
    stage_seconds: dict[str, float]  # wall time of the last call's stages (s)

    def reset(self) -> None: ...  # forget past timesteps (new episode, or after a hold)

    def seed(self, *seeds: int) -> None: ...  # reseed action sampling, one seed per row

    def encode(self, observation: Observation) -> Any: ...

    def act_batch(self, encoded: list) -> np.ndarray: ...  # (B, action_dim) physical actions

    def warm_up(self, iterations: int) -> float: ...  # act on a blank input, leave no trace; s per call


def physical_action(tokenizer, bins: np.ndarray, spec: ActionSpec = RGB_STACKING_ACTIONS) -> np.ndarray:
    """Action bins in [0, 1024) -> physical action: detokenize (bin centre, inverse mu-law; Gato
    Sec. 2.1) and scale by the action bounds, clipping anything outside them."""
    from ..tokenizer.ids import CONTINUOUS_OFFSET

    return spec.denormalize(tokenizer.decode_action(np.asarray(bins) + CONTINUOUS_OFFSET))


class GatoDeployment:
    """A Gato policy: Gato tokenizer -> runner (any backend) -> detokenized action."""

    kind = GATO_KIND

    def __init__(self, runner: PolicyRunner, instruction: str, spec: ActionSpec = RGB_STACKING_ACTIONS):
        from ..tokenizer.sequence import GatoTokenizer

        self.runner, self.instruction, self.spec = runner, instruction, spec
        self.tokenizer = GatoTokenizer(runner.config.timestep)
        timestep = self.tokenizer.spec
        self.inputs = PolicyInputs(tuple(timestep.camera_names), timestep.image_height, timestep.image_width)
        self.stage_seconds: dict[str, float] = {}

    @property
    def backend(self) -> str:
        return self.runner.backend

    def reset(self) -> None:
        self.runner.reset()

    def seed(self, *seeds: int) -> None:
        self.runner.seed(*seeds)

    def encode(self, observation: Observation):
        return self.tokenizer.encode_observation(observation)

    def act_batch(self, encoded: list) -> np.ndarray:
        started = time.perf_counter()
        bins = self.runner.act_batch(encoded)
        acted = time.perf_counter()
        action = physical_action(self.tokenizer, bins, self.spec)
        self.stage_seconds = {**self.runner.stage_seconds, "detokenize": time.perf_counter() - acted,
                              "policy": acted - started}
        return action

    def warm_up(self, iterations: int) -> float:
        """Act ``iterations`` times on mid-grey images and zero proprioception (a backend's first
        calls allocate, compile or autotune), then forget them: the sampling generators are
        restored, so the actions that follow are those of a policy that never warmed up."""
        spec = self.tokenizer.spec
        images = {name: np.full((spec.image_height, spec.image_width, 3), 127, np.uint8) for name in spec.camera_names}
        tokens = self.encode(Observation(images, np.zeros(spec.proprio_dim), self.instruction, {GRASP_SENSOR: np.zeros(1)}))
        generators, elapsed = copy.deepcopy(self.runner.rngs), 0.0
        for _ in range(iterations):
            self.runner.reset()
            started = time.perf_counter()
            self.runner.act(tokens)
            elapsed = time.perf_counter() - started
        self.runner.reset()
        self.runner.rngs = generators
        return elapsed


class BCIMPDeployment:
    """The BC-IMP specialist (:mod:`gato_robot.baselines.bc_imp`): deterministic and memoryless."""

    kind = BC_IMP_KIND
    backend = "torch"

    def __init__(self, policy, spec: ActionSpec = RGB_STACKING_ACTIONS, expectation: str = DEPLOYED_EXPECTATION):
        self.policy, self.spec, self.expectation = policy.eval(), spec, expectation
        config = policy.config
        self.inputs = PolicyInputs(tuple(config.camera_names), config.image_size, config.image_size)
        self.stage_seconds: dict[str, float] = {}

    def reset(self) -> None:
        """Nothing to forget."""

    def seed(self, *seeds: int) -> None:
        """Nothing is sampled."""

    def encode(self, observation: Observation) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """-> (images (cameras, H, W, 3) uint8, proprio (22,) float32, grasp flag (1,) float32 for a
        policy that reads it, else None), checked."""
        shape = (self.inputs.image_height, self.inputs.image_width, 3)
        images = []
        for name in self.inputs.camera_names:
            image = np.asarray(observation.images[name])
            if image.shape != shape or image.dtype != np.uint8:
                raise ValueError(f"camera '{name}': expected a {shape} uint8 image, got {image.shape} {image.dtype}")
            images.append(image)
        proprio = np.asarray(observation.proprio, dtype=np.float64)
        if proprio.shape != (self.policy.config.proprio_dim,) or not np.all(np.isfinite(proprio)):
            raise ValueError(f"proprioception must be {self.policy.config.proprio_dim} finite values, got {proprio}")
        grasp = observation.grasp_flag().astype(np.float32) if self.policy.config.grasp_sensor else None
        return np.stack(images), proprio.astype(np.float32), grasp

    def act_batch(self, encoded: list) -> np.ndarray:
        import torch

        started = time.perf_counter()
        with torch.inference_mode():
            images = torch.from_numpy(np.stack([images for images, _, _ in encoded]))
            proprio = torch.from_numpy(np.stack([proprio for _, proprio, _ in encoded]))
            grasp = torch.from_numpy(np.stack([grasp for _, _, grasp in encoded])) if self.policy.config.grasp_sensor else None
            action = self.policy.act(images, proprio, self.expectation, grasp)
        self.stage_seconds = {"policy": time.perf_counter() - started}
        return self.spec.denormalize(action)

    def warm_up(self, iterations: int) -> float:
        blank = (np.full((len(self.inputs.camera_names), self.inputs.image_height, self.inputs.image_width, 3),
                         127, np.uint8), np.zeros(self.policy.config.proprio_dim, np.float32),
                 np.zeros(1, np.float32) if self.policy.config.grasp_sensor else None)
        elapsed = 0.0
        for _ in range(iterations):
            started = time.perf_counter()
            self.act_batch([blank])
            elapsed = time.perf_counter() - started
        return elapsed


def _load_gato(path: Path, backend: str, instruction: str, **runner_options) -> GatoDeployment:
    from ..runtime.factory import load_runner

    return GatoDeployment(load_runner(backend, path, **runner_options), instruction)


def _load_bc_imp(path: Path, backend: str, instruction: str, batch_size: int = 1,
                 expectation: str = DEPLOYED_EXPECTATION, **_decoding) -> BCIMPDeployment:
    """The tanh head regresses its action (no decoding applies); the binned head decodes its motion
    by ``expectation`` ("off": argmax) and its gripper by argmax. Any batch size works."""
    from ..baselines import bc_imp

    if backend != "torch":
        raise ValueError(f"BC-IMP runs on the torch backend only, not {backend!r}")
    return BCIMPDeployment(bc_imp.load(path), expectation=check_expectation(expectation))


POLICY_LOADERS: dict[str, Callable[..., DeployedPolicy]] = {GATO_KIND: _load_gato, BC_IMP_KIND: _load_bc_imp}
"""Checkpoint ``kind`` (its config.json) -> loader."""


def checkpoint_kind(directory: str | Path) -> str:
    """The ``kind`` a checkpoint or export's config.json declares; Gato configs written before the
    field existed (2026-12-04) declare none and are Gato's. An unknown kind is refused."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"policy config not found: expected {path} (a checkpoint, an export, "
                                "or a shipped policy's name)")
    kind = read_json_object(path, "policy config").get("kind", GATO_KIND)
    if kind not in POLICY_LOADERS:
        raise DamagedFileError(path, f"unknown policy kind {kind!r}; known kinds: {sorted(POLICY_LOADERS)}")
    return kind


def load_policy(path: str | Path, backend: str = "torch", instruction: str | None = None,
                temperature: float = DEPLOYED_TEMPERATURE, expectation: str = DEPLOYED_EXPECTATION,
                batch_size: int = 1, **runner_options) -> DeployedPolicy:
    """A checkpoint directory, an export (ONNX: ``backend`` "onnxruntime"; TensorRT engines:
    "tensorrt") or a shipped policy's name -> the policy, by its declared kind. ``temperature`` and
    ``expectation`` choose Gato's action decoding (the shipped defaults: the node's and sim's);
    ``batch_size`` rows act in lockstep; ``runner_options`` (device, threads) go to the runner."""
    from ..policies import resolve_policy
    from ..task import RGB_STACKING

    path = Path(resolve_policy(str(path)))
    return POLICY_LOADERS[checkpoint_kind(path)](
        path, backend, instruction if instruction is not None else RGB_STACKING.instruction,
        temperature=temperature, expectation=expectation, batch_size=batch_size, **runner_options)
