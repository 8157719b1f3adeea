"""Shared pieces of the command line: the console and the user-error handler."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

# Tables stay on one line when output goes to a file or CI log (rich would wrap at 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)


@dataclass
class Invocation:
    """Options of the `gato-robot` command itself, set before any subcommand runs."""
    debug: bool = False  # user errors keep their traceback


invocation = Invocation()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or `taskset`'s share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


WORKERS_HELP = "Parallel processes (default: the cores available to this process)."
TRIPLETS_HELP = "train, train-wide (the wider object grid), test or one triplet name."


@contextmanager
def _clear_errors():
    """Turn expected user errors (missing or damaged files, bad input) into one red line and exit
    code 2; with `gato-robot --debug` they propagate with their traceback."""
    try:
        yield
    except (FileNotFoundError, ValueError, KeyError) as error:
        if invocation.debug:
            raise
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


def git_revision() -> str:
    """The checkout's short revision, recorded in reports ("unknown" outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
