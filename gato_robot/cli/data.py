"""`gato-robot data ...`: the episode store's own checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .common import _clear_errors, console

data_app = typer.Typer(help="Episode stores: verify.", no_args_is_help=True)


@data_app.command("verify")
def verify_command(store: Path = typer.Argument(..., exists=True, help="Episode store directory.")) -> None:
    """Read every episode in full and check its checksums; list each damaged or unreadable one.
    Exit status 1 when any is damaged."""
    from tqdm import tqdm

    from ..data.episodes import EpisodeStore, verify_episode

    with _clear_errors():
        paths = EpisodeStore(store).paths()
    checks = [verify_episode(path) for path in tqdm(paths, desc="verify", unit="episode")]
    damaged = [check for check in checks if check.problem]
    unchecked = sum(not check.checked and not check.problem for check in checks)
    if damaged:
        table = Table(title=f"{len(damaged)} damaged episode(s) in {store}")
        table.add_column("episode")
        table.add_column("problem")
        for check in damaged:
            table.add_row(check.path.name, check.problem)
        console.print(table)
    console.print(f"{len(checks)} episodes: {len(checks) - len(damaged) - unchecked} intact, {len(damaged)} damaged"
                  + (f", {unchecked} readable but written before checksums (not verified)" if unchecked else ""))
    if damaged:
        raise typer.Exit(1)
