"""Diagnosis (issue "A Gato policy that stacks", results/ablation-history.md round 21): which proprioception tokens of
held-out states did training never show the policy?

Gato embeds each proprioception value as one table row per mu-law bin (Reed et al. 2022, Sec. 2.1:
values mu-law companded, 1024 uniform bins), so a bin no training state reached enters the
policy as a row that only the action head ever trained. This tokenizes every state of the
training store and of each other store with the policy's own tokenizer (its standardization and
the proprioception it keeps) and prints, per store and per proprioception value, the share of
states whose bin training never produced and how far (in bins) it lies from the nearest one
that it did.

    .venv/bin/python scripts/proprio_coverage.py --policy gato-cpu-small --train ../data/mujoco-dart-g \
        --store ../data/heldout --store ../data/heldout-test
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.model.checkpoint import load_config
from gato_robot.policies import resolve_policy
from gato_robot.proprio import PROPRIO_LAYOUT
from gato_robot.tokenizer.sequence import GatoTokenizer
from gato_robot.train.trainer import TrainConfig

PROPRIO_NAMES = [f"{key}[{i}]" if size > 1 else key for key, size in PROPRIO_LAYOUT for i in range(size)]


def proprio_tokens(store: Path, tokenizer: GatoTokenizer,
                   min_return_fraction: float = 0.0) -> dict[str, np.ndarray]:
    """Test triplet name (or "train" for any training triplet) -> (states, kept values) token ids of
    every state in ``store``, as ``tokenizer`` makes them at deployment."""
    by_triplet: dict[str, list[np.ndarray]] = defaultdict(list)
    for meta in EpisodeStore(store).episodes(min_return_fraction):
        with EpisodeReader(meta.path) as reader:
            proprio = reader.proprio().astype(np.float64)
        group = meta.triplet if meta.triplet.startswith("test") else "train"
        by_triplet[group].append(tokenizer.proprio_token_ids(proprio))
    return {triplet: np.concatenate(parts) for triplet, parts in sorted(by_triplet.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="gato-cpu-small", help="a Gato checkpoint directory or a shipped name")
    parser.add_argument("--train", type=Path, required=True, help="the store the policy was trained on")
    parser.add_argument("--store", type=Path, action="append", required=True, help="a store of held-out states")
    args = parser.parse_args()
    spec = load_config(resolve_policy(args.policy)).timestep
    tokenizer = GatoTokenizer(spec)
    keep = list(spec.proprio_keep) if spec.proprio_keep is not None else list(range(spec.proprio_dim))
    names = [PROPRIO_NAMES[i] for i in keep]
    train = np.concatenate(list(proprio_tokens(args.train, tokenizer, TrainConfig.min_return_fraction).values()))
    seen = [np.unique(train[:, j]) for j in range(len(keep))]
    print(f"training store {args.train}: {len(train)} states")
    for store in args.store:
        for triplet, tokens in proprio_tokens(store, tokenizer).items():
            unseen = np.stack([~np.isin(tokens[:, j], seen[j]) for j in range(len(keep))], axis=1)
            distance = np.stack([np.abs(tokens[:, j, None] - seen[j][None, :]).min(axis=1) for j in range(len(keep))],
                                axis=1)
            worst = ", ".join(f"{names[j]} {unseen[:, j].mean():.0%} (max {distance[:, j].max()} bins)"
                              for j in np.argsort(-unseen.mean(axis=0))[:4] if unseen[:, j].any())
            print(f"{store.name} {triplet}: {len(tokens)} states, {unseen.any(axis=1).mean():.0%} with an unseen bin"
                  f"{': ' + worst if worst else ''}")


if __name__ == "__main__":
    main()
