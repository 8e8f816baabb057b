"""Polling for tests: wait until a condition holds, or fail saying what was awaited."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def _first_truthy(predicate: Callable[[], T], timeout: float, interval: float) -> T:
    """The predicate's first truthy value, or its last (falsy) one once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(predicate: Callable[[], T], timeout: float = 10, what: str = "a condition",
             interval: float = 0.02) -> T:
    """The predicate's first truthy value; AssertionError after `timeout` seconds without one."""
    value = _first_truthy(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return value


def eventually(condition: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Whether the condition came true within `timeout` seconds (for asserts that add their own message)."""
    return bool(_first_truthy(condition, timeout, interval))
