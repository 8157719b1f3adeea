"""Does anything measured before the held-out evaluation predict it? For every ablation arm with a
training-distribution report (`<arm>-physical-greedy.json`), a held-out report (`<arm>-test.json`)
and a training summary, print its successes and its held-out-store action cross-entropy (nats, last
checkpoint), and the Pearson correlation of each with held-out successes, over all arms and over the
arms that fit the training distribution (at least --fitted of its episodes):

    .venv/bin/python scripts/heldout_predictors.py --match '*query*' \\
        results/ablation-2026-12-05 results/ablation-2026-12-06 \\
        results/ablation-2026-12-06-r18 results/ablation-2026-12-06-r19 \\
        --plot results/ablation-2026-12-06-r19/heldout-predictors.png \\
        --validation results/ablation-2026-12-06-r19/validation

(round 20 adds results/ablation-2026-12-06-r20 and plots to its folder, without --validation)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class ArmResult(NamedTuple):
    arm: str
    training_successes: int  # training-distribution report, deterministic decoding as deployed
    heldout_successes: int  # held-out test triplets
    heldout_store_ce: float  # action cross-entropy on the held-out store at the last checkpoint, nats
    validation_successes: int | None = None  # --validation: shapes neither trained on nor tested (train-wide grid)


def successes(report: Path) -> int:
    return sum(row["successes"] for row in json.loads(report.read_text())["per_triplet"].values())


def arms(folder: Path, match: str) -> list[ArmResult]:
    """Every arm of ``folder`` whose name matches ``match`` and that has all three files."""
    rows = []
    for test in sorted(folder.glob(f"{match}-test.json")):
        arm = test.name.removesuffix("-test.json")
        train, summary = folder / f"{arm}-physical-greedy.json", folder / "runs" / arm / "summary.json"
        if not (train.is_file() and summary.is_file()):
            continue
        heldout = json.loads(summary.read_text()).get("heldout") or []
        if heldout:
            rows.append(ArmResult(arm, successes(train), successes(test), heldout[-1]["action_cross_entropy"]))
    return rows


def correlation(rows: list[ArmResult], predictor: str) -> float:
    """Pearson r of ``predictor`` (an ArmResult field) with held-out successes."""
    values = np.array([(getattr(row, predictor), row.heldout_successes) for row in rows], dtype=float)
    return float(np.corrcoef(values.T)[0, 1])


def plot(rows: list[ArmResult], out: Path) -> None:
    """Held-out successes against each predictor, one point per arm."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axis, predictor, label in (
            (axes[0], "training_successes", "training-distribution successes (of the report's episodes)"),
            (axes[1], "heldout_store_ce", "held-out-store action cross-entropy at the end (nats)")):
        axis.scatter([getattr(row, predictor) for row in rows], [row.heldout_successes for row in rows])
        axis.set_xlabel(label)
        axis.set_title(f"Pearson r = {correlation(rows, predictor):.2f}, {len(rows)} arms")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("held-out successes")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="ablation report folders (each with runs/<arm>/)")
    parser.add_argument("--match", default="*", help="glob over arm names, e.g. '*query*'")
    parser.add_argument("--plot", type=Path, help="also save a scatter of held-out successes against each predictor")
    parser.add_argument("--validation", type=Path,
                        help="folder of <arm>-validation.json reports (train-wide shapes): a third predictor")
    parser.add_argument("--fitted", type=int, default=29, help="training-distribution successes that count as fitted")
    args = parser.parse_args()
    rows = [row for folder in args.folders for row in arms(folder, args.match)]
    if args.validation:
        reports = {row.arm: args.validation / f"{row.arm}-validation.json" for row in rows}
        rows = [row._replace(validation_successes=successes(reports[row.arm])) if reports[row.arm].is_file() else row
                for row in rows]
    if len(rows) < 3:
        raise SystemExit(f"{len(rows)} arms with all three files: too few to correlate")
    print("| arm | training distribution | held-out | held-out-store CE | validation shapes |")
    print("| --- | --- | --- | --- | --- |")
    for row in sorted(rows, key=lambda row: row.heldout_successes):
        validation = "-" if row.validation_successes is None else row.validation_successes
        print(f"| {row.arm} | {row.training_successes} | {row.heldout_successes} | {row.heldout_store_ce:.3f} "
              f"| {validation} |")
    fitted = [row for row in rows if row.training_successes >= args.fitted]
    for label, subset in ((f"all {len(rows)} arms", rows), (f"{len(fitted)} arms with >= {args.fitted}", fitted)):
        if len(subset) >= 3:
            print(f"{label}: r(training distribution, held-out) = {correlation(subset, 'training_successes'):.2f}, "
                  f"r(held-out-store CE, held-out) = {correlation(subset, 'heldout_store_ce'):.2f}")
    validated = [row for row in rows if row.validation_successes is not None]
    if len(validated) >= 3:
        print(f"{len(validated)} arms with validation reports: r(validation, held-out) = "
              f"{correlation(validated, 'validation_successes'):.2f}; by validation: "
              + ", ".join(f"{row.arm} {row.validation_successes} -> {row.heldout_successes}"
                          for row in sorted(validated, key=lambda row: -row.validation_successes)))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
