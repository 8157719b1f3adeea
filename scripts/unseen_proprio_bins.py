"""Diagnosis (issue "A Gato policy that stacks", results/ablation-history.md round 17): how often does a state of the
held-out test triplets put a proprioceptive value into a mu-law bin that no training state reached?

Gato embeds each continuous token by its own table row (Reed et al. 2022, Sec. 2.2), so a bin no
training state reached keeps the row it was initialized with, and the bins of a standardized value
are fine (about 0.02 standard deviations wide near the mean). For every proprio value a policy sees,
the script tokenizes the training store's states (return filter as in training) and each other
store's states with the policy's own statistics, and prints the share of states whose bin of that
value is unseen in training, and the share with at least one unseen bin.

    .venv/bin/python scripts/unseen_proprio_bins.py --policy gato-cpu-small --train ../data/mujoco-dart-g \
        --store ../data/heldout --store ../data/mujoco-test-4-flat --store ../data/mujoco-test-1-slanted
"""

from __future__ import annotations

import argparse

import numpy as np

from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.model.checkpoint import load_config
from gato_robot.policies import resolve_policy
from gato_robot.proprio import PROPRIO_LAYOUT
from gato_robot.tokenizer.mulaw import continuous_to_bins
from gato_robot.train.trainer import TrainConfig


def proprio_names() -> list[str]:
    return [name if size == 1 else f"{name}[{i}]" for name, size in PROPRIO_LAYOUT for i in range(size)]


def store_bins(store: str, min_return_fraction: float, mean: np.ndarray, std: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mu-law bins (states, kept values) of every state of a store, tokenized as the policy does."""
    rows = []
    for meta in EpisodeStore(store).episodes(min_return_fraction):
        with EpisodeReader(meta.path) as reader:
            rows.append(reader.proprio())
    proprio = np.concatenate(rows)
    return continuous_to_bins(((proprio - mean) / std)[:, keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="shipped name or checkpoint directory (its statistics)")
    parser.add_argument("--train", required=True, help="the training store")
    parser.add_argument("--store", action="append", required=True, help="a store to compare (repeatable)")
    args = parser.parse_args()

    spec = load_config(resolve_policy(args.policy)).timestep
    dim = spec.proprio_dim
    mean = np.zeros(dim) if spec.proprio_mean is None else np.array(spec.proprio_mean)
    std = np.ones(dim) if spec.proprio_std is None else np.array(spec.proprio_std)
    keep = np.arange(dim) if spec.proprio_keep is None else np.array(spec.proprio_keep)
    names = [proprio_names()[i] for i in keep]

    train = store_bins(args.train, TrainConfig().min_return_fraction, mean, std, keep)
    seen = [set(np.unique(train[:, j]).tolist()) for j in range(len(keep))]
    print(f"training store {args.train}: {len(train)} states; distinct bins per value: "
          + ", ".join(f"{n} {len(s)}" for n, s in zip(names, seen)))
    for store in args.store:
        bins = store_bins(store, 0.0, mean, std, keep)
        unseen = np.stack([~np.isin(bins[:, j], list(seen[j])) for j in range(len(keep))], axis=1)
        print(f"\n{store}: {len(bins)} states; with any unseen bin: {unseen.any(axis=1).mean():.1%}")
        for j in np.argsort(-unseen.mean(axis=0)):
            if unseen[:, j].any():
                print(f"  {names[j]:<20} {unseen[:, j].mean():6.1%} of states in an unseen bin")


if __name__ == "__main__":
    main()
