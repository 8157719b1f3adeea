"""Record golden actions of a shipped policy on a fixed set of recorded observations.

The test `tests/test_shipped_policy.py::test_shipped_policy_reproduces_its_golden_actions` replays
them through the whole deployment path (tokenizer, runner, decoding), so any change to
preprocessing, tokenization, the model code or the weights that changes an action fails it.
Regenerate only on purpose (a new shipped policy):

    .venv/bin/python scripts/golden_actions.py --store ../data/heldout --policy gato-cpu-small
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.policies.golden import golden_bins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--policy", default="gato-cpu-small")
    parser.add_argument("--steps", default="0,40,80,120,160")
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    args = parser.parse_args()
    meta = EpisodeStore(args.store).episodes()[0]
    steps = [int(s) for s in args.steps.split(",")]
    with EpisodeReader(meta.path) as reader:
        images = {name: np.stack([reader.images(s, s + 1)[name][0] for s in steps]) for name in reader.cameras}
        proprio = np.stack([reader.proprio(s, s + 1)[0] for s in steps])
    bins = golden_bins(args.policy, meta.instruction, images, proprio)
    out = args.out / f"golden-{args.policy}.npz"
    np.savez_compressed(out, proprio=proprio, instruction=meta.instruction,
                        **{f"image_{k}": v for k, v in images.items()}, **{f"bins_{k}": v for k, v in bins.items()})
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {len(steps)} observations of {meta.path.name}")
    for name, value in bins.items():
        print(name, value.tolist())


if __name__ == "__main__":
    main()
