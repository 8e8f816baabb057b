"""Recording the host's refusals to act on a path an agent could have planted.

Each refusal becomes one `HostPathRefused` event in the group's stream and one
warning in the journal, so a planted link shows in `nanoclaw status` and
`nanoclaw events` instead of being skipped in silence.
"""

from __future__ import annotations

from typing import Protocol

from loguru import logger

from base.agent_paths import OnRefused, PathRefused
from events import types as t


class Writer(Protocol):
    """An EventLog or a Transaction: anything events can be appended to."""

    def append(self, event: t.Event, *, key: str | None = None): ...


def record_refusal(writer: Writer, folder: str, operation: str, refused: PathRefused) -> None:
    """Append the refusal and say in the journal what happens next."""
    writer.append(t.HostPathRefused(folder=folder, path=refused.path, operation=operation, reason=refused.reason))
    logger.warning("{}: refused to {} {}: {}; carrying on without it", folder, operation, refused.path,
                   refused.reason)


def recorder(writer: Writer, folder: str) -> OnRefused:
    """A callback for the safe file operations that records each refusal for `folder`."""
    return lambda operation, refused: record_refusal(writer, folder, operation, refused)
