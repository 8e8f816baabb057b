"""Fault injection: make the process kill itself at a named point, for crash tests.

`NANOCLAW_FAULT=name` (or `name@N` for the N-th time the point is reached,
several separated by commas) sends SIGKILL to this process at that point:
no cleanup, no flush, exactly like a power cut to the process. Unset, a
fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "NANOCLAW_FAULT"


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        points[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return points


_armed = _parse(os.environ.get(ENV_VAR, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def fault_point(name: str) -> None:
    """Die here with SIGKILL if NANOCLAW_FAULT names this point (and its count is reached)."""
    if name not in _armed:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        due = _hits[name] >= _armed[name]
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
