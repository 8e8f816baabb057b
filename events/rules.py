"""Rules every event in the log must keep, checked where events are folded into tables.

The router checks them before it records anything; the fold checks them
again, so an event that breaks one (from a restored copy, a script, an old
bug) is refused with its seq named instead of quietly making two main
groups or a folder the host would refuse to touch.
"""

from __future__ import annotations

import re

FOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
RESERVED_FOLDERS = ("global", "errors")


class InvariantError(ValueError):
    """An event breaks a rule of the log; names its seq so a person can look."""

    def __init__(self, seq: int, reason: str):
        super().__init__(f"event seq {seq} breaks a rule of the log: {reason}")
        self.seq = seq


def folder_problem(folder: str) -> str | None:
    """Why `folder` cannot be a group's folder, or None."""
    if not FOLDER_RE.match(folder or ""):
        return "use 1-64 characters, letters, digits, '_' or '-', starting with a letter or digit"
    if folder.lower() in RESERVED_FOLDERS:
        return "the name is reserved"
    return None
