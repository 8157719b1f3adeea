"""Errors the project raises for damaged files (user errors: the CLI prints them in one line)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


class DamagedFileError(ValueError):
    """A file exists but cannot be read as what it should be: truncated, corrupted, wrong format.
    The message names the file and what went wrong."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        # Rebuilt from (path, problem), not from the message: a worker process's error must unpickle
        # in the parent, or multiprocessing's result thread dies and the pool waits forever.
        return type(self), (self.path, self.problem)


@contextmanager
def reading(path: str | Path, what: str, *errors: type[BaseException]):
    """Turn ``errors`` raised while reading ``path`` as ``what`` into a :class:`DamagedFileError`
    naming the file (the library's own exception types differ per format)."""
    try:
        yield
    except DamagedFileError:
        raise
    except errors as error:
        raise DamagedFileError(path, f"not a readable {what} ({type(error).__name__}: {error})") from error


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); anything else is damage."""
    import yaml

    path = Path(path)
    with reading(path, what, yaml.YAMLError, UnicodeDecodeError):
        document = yaml.safe_load(path.read_text())
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise DamagedFileError(path, f"not a readable {what} (top level is a {type(document).__name__}, "
                                     "not a mapping)")
    return document


def read_json_object(path: str | Path, what: str) -> dict:
    """A JSON file whose top level is an object; syntax errors, bad UTF-8 or another type are damage."""
    import json

    path = Path(path)
    with reading(path, what, UnicodeDecodeError, json.JSONDecodeError):
        data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise DamagedFileError(path, f"not a readable {what} (a JSON {type(data).__name__}, not an object)")
    return data
