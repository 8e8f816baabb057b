"""A group's IPC folder, `data/ipc/<folder>/`: its layout and the host's three writes into it.

The agent writes requests into `messages/` and `tasks/` (read by router/ipc.py);
the host writes into `input/`: a follow-up message as a JSON file whose name
orders it (`<epoch ms>-<4 base36>.json`), and the empty `_close` sentinel that
asks the agent to finish; a new run first clears what an earlier container
left there. The folder is the agent's, so every host step goes through
base.agent_paths: opened without following links, files made under a fresh
name and renamed into place, a planted link replaced or removed, never
written through. The agent's side of this is agent-container/agent_runner/inbox.py.
"""

from __future__ import annotations

import json
import os
import random
import string
import threading
import time
from pathlib import Path

from loguru import logger

from base.agent_paths import (OnRefused, PathRefused, closing_fd, open_under, unlink_in, warn_refusal,
                              write_file)
from base.config import Settings

MESSAGES_DIR = "messages"
TASKS_DIR = "tasks"
INPUT_DIR = "input"
AGENT_DIRS = (MESSAGES_DIR, TASKS_DIR, INPUT_DIR)  # the ones the agent writes, mounted one by one
CLOSE_SENTINEL = "_close"
INPUT_FILE_MODE = 0o644  # the agent reads it; the folder is its own, so it can delete it
_BASE36 = string.digits + string.ascii_lowercase
_names_lock = threading.Lock()
_last_ms = 0


def input_dir(settings: Settings, folder: str) -> Path:
    return settings.ipc_dir / folder / INPUT_DIR


def input_file_name() -> str:
    """`<epoch ms>-<4 base36>.json`: name order is arrival order.

    The agent reads its input in name order, so two files written within
    one millisecond must not be ordered by their random suffix: this
    process never hands out the same millisecond twice.
    """
    global _last_ms
    with _names_lock:
        _last_ms = max(_last_ms + 1, int(time.time() * 1000))
        ms = _last_ms
    return f"{ms}-{''.join(random.choices(_BASE36, k=4))}.json"


def write_input(settings: Settings, folder: str, text: str, name: str | None = None) -> Path:
    """Atomically drop a follow-up message into a group's input folder; returns its path.

    Raises PathRefused when that cannot be done safely. `name` is normally a
    fresh one; a given name stands for one an agent predicted (a test of the
    rename over a planted link).
    """
    name = name or input_file_name()
    fd = open_under(settings.ipc_dir, (folder, INPUT_DIR), create=True)
    assert fd is not None
    with closing_fd(fd):
        data = json.dumps({"type": "message", "text": text}).encode("utf-8")
        write_file(fd, name, data, mode=INPUT_FILE_MODE, shown=input_dir(settings, folder) / name)
    return input_dir(settings, folder) / name


def request_close(settings: Settings, folder: str, on_refused: OnRefused = warn_refusal) -> bool:
    """Ask a group's running agent to finish: the sentinel, renamed over whatever the agent put there."""
    try:
        fd = open_under(settings.ipc_dir, (folder, INPUT_DIR))
        if fd is None:
            return False
        with closing_fd(fd):
            write_file(fd, CLOSE_SENTINEL, b"", shown=input_dir(settings, folder) / CLOSE_SENTINEL)
        return True
    except PathRefused as refused:
        on_refused("ask the agent to finish", refused)
    except OSError as exc:
        logger.warning("could not write the close sentinel for {}: {}", folder, exc)
    return False


def clear_input(settings: Settings, folder: str, on_refused: OnRefused = warn_refusal) -> None:
    """Remove input left by an earlier container: the new run's prompt already holds it.

    Only the names themselves go: a planted link is removed, never its target.
    """
    try:
        fd = open_under(settings.ipc_dir, (folder, INPUT_DIR))
    except PathRefused as refused:
        on_refused("clear the agent's input", refused)
        return
    if fd is None:
        return
    with closing_fd(fd):
        for name in os.listdir(fd):
            if name == CLOSE_SENTINEL or name.endswith((".json", ".tmp")):
                try:
                    unlink_in(fd, name, shown=input_dir(settings, folder) / name)
                except PathRefused as refused:
                    on_refused("clear the agent's input", refused)
