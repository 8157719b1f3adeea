"""Results tables: evaluation reports (JSON from `gato-robot sim eval --report`) side by side as a
Markdown table, success per triplet with 95% Wilson intervals, one column per report."""

from __future__ import annotations

import json
from pathlib import Path


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    low, high = entry["ci95"]
    return f"{100 * entry['success_rate']:.0f}% [{100 * low:.0f}, {100 * high:.0f}] (n={entry.get('episodes', '?')})"


def comparison_table(columns: dict[str, Path]) -> str:
    """``columns``: header -> report path. Rows: every triplet in any report, then "overall"."""
    reports = {header: json.loads(Path(path).read_text()) for header, path in columns.items()}
    triplets: list[str] = []
    for report in reports.values():
        triplets += [name for name in report["per_triplet"] if name not in triplets]
    lines = ["| triplet | " + " | ".join(reports) + " |", "| --- |" + " --- |" * len(reports)]
    for name in triplets:
        lines.append(f"| {name} | " + " | ".join(_cell(r["per_triplet"].get(name)) for r in reports.values()) + " |")
    overall = []
    for report in reports.values():
        entry = dict(report["overall"], episodes=sum(v["episodes"] for v in report["per_triplet"].values()))
        overall.append(_cell(entry))
    lines.append("| **overall** | " + " | ".join(overall) + " |")
    revisions = sorted({r.get("git_revision", "unknown") for r in reports.values()})
    lines.append("")
    lines.append(f"Reports: {', '.join(str(p) for p in columns.values())} (git revisions {', '.join(revisions)}).")
    return "\n".join(lines)
