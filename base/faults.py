"""Fault injection: make the process kill itself at a named point, for crash tests.

`NANOCLAW_FAULT=name` (or `name@N` for the N-th time the point is reached,
several separated by commas) sends SIGKILL to this process at that point:
no cleanup, no flush, exactly like a power cut to the process. With
`NANOCLAW_FAULT_SCOPE=group` it kills the whole process group instead (the
router and its worker, as systemd kills a service's control group); only
in a process that leads its group or whose parent does. Unset, a fault
point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "NANOCLAW_FAULT"
SCOPE_VAR = "NANOCLAW_FAULT_SCOPE"
SCOPES = ("process", "group")


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        points[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return points


def _scope(value: str) -> str:
    if value not in SCOPES:
        raise ValueError(f"{SCOPE_VAR} must be one of {', '.join(SCOPES)}, not {value!r}")
    return value


_armed = _parse(os.environ.get(ENV_VAR, ""))
_scope_of_kill = _scope(os.environ.get(SCOPE_VAR) or "process") if _armed else "process"
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
        _die()


def _die() -> None:
    group = os.getpgrp()
    if _scope_of_kill == "group" and group in (os.getpid(), os.getppid()):
        os.killpg(group, signal.SIGKILL)  # never a group this service does not lead (a test runner's)
    os.kill(os.getpid(), signal.SIGKILL)
