"""Plot held-out success per test triplet for several `sim eval` reports side by side (95% Wilson
intervals from the reports), e.g. the training runs of one recipe beside BC-IMP:

    .venv/bin/python scripts/heldout_spread.py --out results/ablation-2026-12-05/heldout-spread.png \\
        --report "seed 0=results/ablation-2026-12-05/all-novel-gf-global-query-test.json" \\
        --report "BC-IMP=results/shipped/bc-imp-mujoco-test.json"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(spec: str) -> tuple[str, dict]:
    label, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"--report wants LABEL=PATH, got {spec!r}")
    return label, json.loads(Path(path).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="append", required=True, help="LABEL=PATH of a sim eval report")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="held-out test triplets, MuJoCo")
    args = parser.parse_args()
    reports = [load(spec) for spec in args.report]
    triplets = list(reports[0][1]["per_triplet"]) + ["overall"]
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(1.6 * len(triplets) + 5, 4))
    colors = plt.get_cmap("tab10" if len(reports) <= 10 else "tab20").colors  # one colour per report
    for i, (label, report) in enumerate(reports):
        rows = [report["per_triplet"][t] for t in triplets[:-1]]
        wins, count = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
        rates = [r["success_rate"] for r in rows] + [wins / count]
        intervals = [r["ci95"] for r in rows] + [report["overall"]["ci95"]]
        errors = np.array([[rate - low, high - rate] for rate, (low, high) in zip(rates, intervals)]).T
        x = np.arange(len(triplets)) + (i - (len(reports) - 1) / 2) * width
        ax.bar(x, rates, width, yerr=errors, capsize=2, color=colors[i % len(colors)],
               label=f"{label} ({wins}/{count})")
    ax.set_xticks(np.arange(len(triplets)), [t.replace("test-", "") for t in triplets])
    ax.set_ylim(0, 1)
    ax.set_ylabel("success (95% Wilson interval)")
    ax.set_title(args.title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes, never over a bar
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
