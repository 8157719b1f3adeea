"""Errors the project raises for damaged files (user errors: the CLI prints them in one line)."""

from __future__ import annotations

from pathlib import Path


class DamagedFileError(ValueError):
    """A file exists but cannot be read as what it should be: truncated, corrupted, wrong format.
    The message names the file and what went wrong."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")
