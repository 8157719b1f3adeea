"""On-disk episode store: one compressed, chunked HDF5 file per episode, committed atomically.

Layout: ``STORE/episode-<engine>-<seed>.h5`` with datasets

- ``images/<camera>``: uint8 (T, H, W, 3), one chunk per timestep, gzip-compressed,
- ``proprio``: float32 (T, 22) (see :mod:`gato_robot.proprio`), ``actions``: float32 (T, 5)
  (physical units: m/s, rad/s, gripper), ``rewards``: float32 (T,),

and the episode's metadata as file attributes (engine, triplet, seed, return, success, steps,
instruction, and ``relabelled``: the actions are a labeller's, not the ones executed, as in
DAgger rollouts; such episodes bypass the return filter). A file is written under a temporary name and renamed into place once complete, so
a crash loses at most the episode in flight, and readers never see a partial episode. The
directory is the index: appending is adding files; reading is lazy (HDF5 reads only the
timesteps asked for).

Damage is detected, not guessed: every dataset carries HDF5's Fletcher-32 checksum per chunk (a
read of a damaged chunk fails), and the file's ``content_sha256`` attribute is the SHA-256 of every
dataset's bytes, checked by :func:`verify_episode` (``gato-robot data verify``). Episodes written
before checksums existed have neither and are reported as unchecked, not as damaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import h5py
import numpy as np

from ..errors import DamagedFileError

LOGGER = logging.getLogger(__name__)

SUFFIX = ".h5"
DIGEST_ATTRIBUTE = "content_sha256"


def content_digest(datasets: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over an episode's datasets, by name in sorted order: name, shape, dtype, bytes."""
    digest = hashlib.sha256()
    for name in sorted(datasets):
        data = np.ascontiguousarray(datasets[name])
        digest.update(f"{name}|{data.shape}|{data.dtype.str}|".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()


def _read_datasets(file: h5py.File) -> dict[str, np.ndarray]:
    """Every dataset of an open episode file, read in full (each chunk's checksum checked)."""
    names: list[str] = []
    file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return {name: file[name][()] for name in names}


@dataclass(frozen=True)
class EpisodeMeta:
    path: Path
    engine: str
    triplet: str
    seed: int
    episode_return: float
    success: bool
    steps: int
    instruction: str
    cameras: tuple[str, ...]
    relabelled: bool = False


class EpisodeWriter:
    """Collects one episode in memory; :meth:`commit` writes it atomically."""

    def __init__(self, store: "EpisodeStore", engine: str, triplet: str, seed: int, instruction: str,
                 relabelled: bool = False, attributes: Mapping[str, str] | None = None):
        self.store, self.engine, self.triplet, self.seed, self.instruction = store, engine, triplet, seed, instruction
        self.relabelled = relabelled
        self.attributes = dict(attributes or {})  # provenance (e.g. the source bag), stored as file attributes
        self.images: dict[str, list[np.ndarray]] = {}
        self.proprio, self.actions, self.rewards = [], [], []

    def add(self, images: Mapping[str, np.ndarray], proprio: np.ndarray, action: np.ndarray, reward: float) -> None:
        """One timestep: the observation and the action taken from it, and the reward that followed."""
        for name, image in images.items():
            self.images.setdefault(name, []).append(np.asarray(image, dtype=np.uint8))
        self.proprio.append(np.asarray(proprio, dtype=np.float32))
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.rewards.append(float(reward))

    def commit(self, success: bool) -> EpisodeMeta:
        if not self.actions:
            raise ValueError("cannot commit an empty episode")
        path = self.store.episode_path(self.engine, self.triplet, self.seed)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        datasets = {**{f"images/{name}": np.stack(frames) for name, frames in self.images.items()},
                    "proprio": np.stack(self.proprio), "actions": np.stack(self.actions),
                    "rewards": np.asarray(self.rewards, np.float32)}
        with h5py.File(tmp, "w") as f:
            for name, data in datasets.items():
                images = name.startswith("images/")  # one gzip chunk per timestep: windows read only theirs
                f.create_dataset(name, data=data, chunks=(1, *data.shape[1:]) if images else None,
                                 compression="gzip" if images else None, compression_opts=4 if images else None,
                                 shuffle=images, fletcher32=True)
            attrs = {"engine": self.engine, "triplet": self.triplet, "seed": self.seed,
                     "episode_return": float(np.sum(self.rewards)), "success": bool(success),
                     "steps": len(self.actions), "instruction": self.instruction,
                     "cameras": json.dumps(sorted(self.images)), "relabelled": self.relabelled}
            f.attrs.update({**self.attributes, **attrs})
            f.attrs[DIGEST_ATTRIBUTE] = content_digest(datasets)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return self.store.meta(path)


class EpisodeStore:
    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"episode store not found: {self.root} (create it with `gato-robot sim generate`)")

    def episode_path(self, engine: str, triplet: str, seed: int) -> Path:
        return self.root / f"episode-{engine}-{triplet}-{seed:08d}{SUFFIX}"

    def has(self, engine: str, triplet: str, seed: int) -> bool:
        """Whether that episode is committed (a resumed `sim generate` skips it)."""
        return self.episode_path(engine, triplet, seed).is_file()

    def writer(self, engine: str, triplet: str, seed: int, instruction: str, relabelled: bool = False,
               attributes: Mapping[str, str] | None = None) -> EpisodeWriter:
        return EpisodeWriter(self, engine, triplet, seed, instruction, relabelled, attributes)

    @staticmethod
    def meta(path: Path) -> EpisodeMeta:
        try:
            with h5py.File(path, "r") as f:
                a = f.attrs
                return EpisodeMeta(path, str(a["engine"]), str(a["triplet"]), int(a["seed"]),
                                   float(a["episode_return"]), bool(a["success"]), int(a["steps"]),
                                   str(a["instruction"]), tuple(json.loads(str(a["cameras"]))),
                                   bool(a.get("relabelled", False)))
        except (OSError, KeyError, ValueError) as error:
            raise DamagedFileError(path, f"not a readable episode ({type(error).__name__}: {error})") from error

    def paths(self) -> list[Path]:
        """Committed episodes only: in-flight temporary files are hidden (dot-prefixed)."""
        return sorted(p for p in self.root.glob(f"episode-*{SUFFIX}"))

    def episodes(self, min_return_fraction: float = 0.0, skip_damaged: bool = False) -> list[EpisodeMeta]:
        """Metadata of every committed episode; with ``min_return_fraction`` = 0.8, Gato's recipe
        (Sec. 3, "filtered to episodes with returns of at least 80% of the expert return"): only
        episodes with a positive return of at least that fraction of the expert return, which is
        the store's median episode return (the store holds the expert's episodes; the median, not
        the maximum, so one unusually long-held success does not filter out everything else).
        Relabelled (DAgger) episodes are kept whatever their return: their labels are the
        expert's, and their failures are the states a policy needs to learn to recover from.
        With ``skip_damaged`` an episode whose metadata cannot be read is left out with a warning
        naming it; otherwise its :class:`DamagedFileError` is raised."""
        metas = []
        for path in self.paths():
            try:
                metas.append(self.meta(path))
            except DamagedFileError as error:
                if not skip_damaged:
                    raise
                LOGGER.warning("skipping damaged episode %s", error)
        demonstrations = [m for m in metas if not m.relabelled]
        if min_return_fraction and demonstrations:
            expert_return = float(np.median([m.episode_return for m in demonstrations]))
            threshold = min_return_fraction * expert_return
            metas = [m for m in metas if m.relabelled or (m.episode_return >= threshold and m.episode_return > 0)]
        return metas

    def __len__(self) -> int:
        return len(self.paths())

    def __iter__(self) -> Iterator[EpisodeMeta]:
        return iter(self.episodes())


@dataclass(frozen=True)
class EpisodeCheck:
    """The verdict on one episode file: ``problem`` None when it is intact."""

    path: Path
    problem: str | None
    checked: bool  # False: written before checksums (readable, but bytes not verified)


def verify_episode(path: str | Path) -> EpisodeCheck:
    """Read every chunk of an episode (HDF5 Fletcher-32 fails on a damaged one) and compare the
    content digest with the one written at commit."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            for key in ("engine", "triplet", "seed", "steps", "cameras"):
                if key not in f.attrs:
                    return EpisodeCheck(path, f"metadata attribute {key!r} missing", False)
            stored = f.attrs.get(DIGEST_ATTRIBUTE)
            digest = content_digest(_read_datasets(f))
            steps = int(f.attrs["steps"])
            for name in ("proprio", "actions", "rewards", *(f"images/{c}" for c in json.loads(str(f.attrs["cameras"])))):
                if name not in f or f[name].shape[0] != steps:
                    return EpisodeCheck(path, f"dataset {name} missing or not {steps} timesteps long", stored is not None)
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        return EpisodeCheck(path, f"unreadable ({type(error).__name__}: {error})", False)
    if stored is None:
        return EpisodeCheck(path, None, False)
    if str(stored) != digest:
        return EpisodeCheck(path, f"content checksum mismatch (stored {str(stored)[:12]}..., read {digest[:12]}...)", True)
    return EpisodeCheck(path, None, True)


@dataclass(frozen=True)
class MergeResult:
    copied: int
    already_there: int  # the same episode (same content digest) was in the destination


def _episode_digest(path: Path) -> str:
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs[DIGEST_ATTRIBUTE]) if DIGEST_ATTRIBUTE in f.attrs else content_digest(_read_datasets(f))
    except (OSError, KeyError, ValueError) as error:
        raise DamagedFileError(path, f"not a readable episode ({type(error).__name__}: {error})") from error


def merge_stores(sources: list[str | Path], destination: str | Path) -> MergeResult:
    """Copy every episode of ``sources`` into ``destination`` (created if missing), each one
    atomically (a temporary name, then a rename). Stores generated on several machines from
    disjoint seed ranges merge this way. An episode whose name is already in the destination is
    skipped if its content digest is the same, and refused (naming both files) if it differs:
    nothing is overwritten. Each episode is verified (:func:`verify_episode`) before it is copied."""
    import shutil

    target = EpisodeStore(destination, create=True)
    copied = already = 0
    for source in sources:
        for path in EpisodeStore(source).paths():
            check = verify_episode(path)
            if check.problem:
                raise DamagedFileError(path, check.problem)
            existing = target.root / path.name
            if existing.exists():
                if _episode_digest(existing) != _episode_digest(path):
                    raise ValueError(f"{path} and {existing} are different episodes under one name "
                                     "(engine, triplet and seed collide): generate disjoint seed ranges")
                already += 1
                continue
            tmp = existing.with_name(f".{existing.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, existing)
            copied += 1
    return MergeResult(copied, already)


class EpisodeReader:
    """Lazy access to one episode's timesteps."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.file = h5py.File(path, "r")
            self.steps = int(self.file.attrs["steps"])
            self.cameras = tuple(json.loads(str(self.file.attrs["cameras"])))
        except (OSError, KeyError, ValueError) as error:
            raise DamagedFileError(path, f"not a readable episode ({type(error).__name__}: {error})") from error

    def _read(self, dataset: str, start: int, stop: int | None) -> np.ndarray:
        """Timesteps [start, stop) of one dataset; a damaged chunk names the file and dataset."""
        try:
            return self.file[dataset][start:stop]
        except (OSError, KeyError, ValueError) as error:
            raise DamagedFileError(self.path, f"cannot read {dataset}[{start}:{stop}] "
                                              f"({type(error).__name__}: {error})") from error

    def images(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: self._read(f"images/{name}", start, stop) for name in self.cameras}

    def proprio(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._read("proprio", start, stop)

    def actions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._read("actions", start, stop)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "EpisodeReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
