"""Shared pieces of the command line: the console and the user-error handler."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass

import typer
from rich.console import Console

# Tables stay on one line when output goes to a file or CI log (rich would wrap at 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)


@dataclass
class Invocation:
    """Options of the `gato-robot` command itself, set before any subcommand runs."""
    debug: bool = False  # user errors keep their traceback


invocation = Invocation()


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
