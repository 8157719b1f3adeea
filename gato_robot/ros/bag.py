"""Opening rosbag2 recordings (sqlite3 or MCAP storage) with `rosbags`, without a ROS install:
the one place that knows which of its errors mean a truncated, corrupted or foreign file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import reading


def bag_damage_errors() -> tuple[type[BaseException], ...]:
    """What rosbags raises for a damaged bag: its metadata, its storage or a message."""
    import sqlite3

    import apsw  # rosbags' SQLite driver for rosbag2 .db3 storage
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Bag1Error
    from rosbags.rosbag2 import ReaderError as Bag2Error
    from rosbags.serde import SerdeError

    return AnyReaderError, Bag1Error, Bag2Error, SerdeError, sqlite3.DatabaseError, apsw.Error, UnicodeDecodeError


@contextmanager
def open_bag(path: str | Path) -> Iterator:
    """An open :class:`rosbags.highlevel.AnyReader` over one bag directory; a missing bag raises
    FileNotFoundError, a damaged one :class:`~gato_robot.errors.DamagedFileError` naming it (also
    for damage found while its messages are read inside the ``with`` block)."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"rosbag2 not found: {path}")
    with reading(path, "rosbag2", *bag_damage_errors()):
        # rosbags checks the types of most metadata fields, not of duration and start time: one of the
        # wrong type escapes as a bare TypeError while the reader is built (never inside the caller's block)
        with reading(path, "rosbag2", TypeError, ValueError, AttributeError):
            reader = AnyReader([path])
            reader.open()
        try:
            yield reader
        finally:
            reader.close()
