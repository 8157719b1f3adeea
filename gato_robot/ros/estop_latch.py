"""A latched e-stop kept on disk, so a restarted node comes up latched (issue "Real-arm hardening").

In memory an e-stop survives deactivate, cleanup and configure; a crash, a SIGKILL or a respawn
ends the process and with it that memory. The node writes the reason here when an e-stop latches,
reads it at configure, and deletes it only on ``~/reset_estop``, an operator's explicit act. A
file that exists but cannot be read counts as latched: the safe reading of a damaged record.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

UNREADABLE = "an e-stop latch file that could not be read"


def default_latch_path(node_name: str) -> Path:
    """``$ROS_HOME/gato_robot/<node>.estop`` (ROS_HOME: ``~/.ros``, as ROS 2 logs go), one per node
    (``/arm1/gato_stack`` -> ``arm1__gato_stack.estop``)."""
    home = Path(os.environ.get("ROS_HOME") or Path.home() / ".ros")
    return home / "gato_robot" / (node_name.strip("/").replace("/", "__") + ".estop")


class EstopLatchFile:
    """The latch record at ``path``: its reason while an e-stop is latched, absent otherwise."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.latched = False  # what this process last read or wrote

    def read(self) -> str | None:
        """The reason a latched e-stop was recorded with, or None when none is."""
        try:
            reason = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            self.latched = False
            return None
        except (OSError, UnicodeDecodeError) as error:
            reason = f"{UNREADABLE} ({self.path}: {error})"
        self.latched = True
        return reason or "an e-stop latched without a reason"

    def write(self, reason: str) -> None:
        """Record ``reason`` atomically (a crash mid-write leaves the old record or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(reason + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.latched = True

    def clear(self) -> None:
        """Delete the record (raises OSError when it stays: the e-stop must then stay latched)."""
        self.path.unlink(missing_ok=True)
        self.latched = False
