"""What a container may read about tasks and groups.

Agents cannot query the event log, so the host writes the group's tasks (main:
everyone's) and, for main, the chats it could register into
`data/ipc/<folder>/snapshots/`: the host's own folder, mounted read-only, each
file replaced atomically so an agent never reads half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loguru import logger

from base.agent_paths import closing_fd, ensure_own_dir, open_under, write_file
from base.config import Settings
from base.timefmt import iso_now
from events.queries import Reader, group_chats_seen, list_groups, tasks_newest_first
from rules.groups import validate_folder

TASKS_SNAPSHOT = "current_tasks.json"
GROUPS_SNAPSHOT = "available_groups.json"
GROUP_SYNC_JID = "__group_sync__"
SNAPSHOT_MODE = 0o644
SNAPSHOTS_DIR = "snapshots"


def snapshots_dir(settings: Settings, folder: str) -> Path:
    """`data/ipc/<folder>/snapshots`: written by the host only, mounted read-only."""
    return settings.ipc_dir / folder / SNAPSHOTS_DIR


def _write_json(settings: Settings, folder: str, name: str, value: Any) -> Path:
    """Replace `snapshots/name` atomically, through descriptors: no planted link is followed."""
    directory = snapshots_dir(settings, folder)
    group_fd = open_under(settings.ipc_dir, (folder,), create=True)
    assert group_fd is not None
    with closing_fd(group_fd):
        fd, replaced = ensure_own_dir(group_fd, SNAPSHOTS_DIR, shown=directory)
        if replaced:
            logger.warning("{}: {} was {}; replaced by a real folder", folder, directory, replaced)
        with closing_fd(fd):
            data = json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")
            write_file(fd, name, data, mode=SNAPSHOT_MODE, shown=directory / name)
    return directory / name


def tasks_for(reader: Reader, folder: str, is_main: bool) -> list[dict[str, Any]]:
    """The task list a group sees, newest first: main all of them, others their own."""
    rows = tasks_newest_first(reader, None if is_main else folder)
    return [
        {
            "id": row["id"],
            "groupFolder": row["group_folder"],
            "prompt": row["prompt"],
            "script": row["script"],
            "schedule_type": row["schedule_type"],
            "schedule_value": row["schedule_value"],
            "status": row["status"],
            "next_run": row["next_run"],
        }
        for row in rows
    ]


def groups_for(reader: Reader, is_main: bool) -> list[dict[str, Any]]:
    """Group chats the channels have seen, newest activity first; only main gets any."""
    if not is_main:
        return []
    return [
        {
            "jid": row["jid"],
            "name": row["name"],
            "lastActivity": row["last_message_time"],
            "isRegistered": bool(row["registered"]),
        }
        for row in group_chats_seen(reader, except_jid=GROUP_SYNC_JID)
    ]


def write_tasks_snapshot(settings: Settings, reader: Reader, folder: str, is_main: bool) -> Path:
    """Write `data/ipc/<folder>/snapshots/current_tasks.json`; returns its path."""
    validate_folder(folder)
    return _write_json(settings, folder, TASKS_SNAPSHOT, tasks_for(reader, folder, is_main))


def write_groups_snapshot(settings: Settings, reader: Reader, folder: str, is_main: bool) -> Path:
    """Write `data/ipc/<folder>/snapshots/available_groups.json`; returns its path."""
    validate_folder(folder)
    value = {"groups": groups_for(reader, is_main), "lastSync": iso_now()}
    return _write_json(settings, folder, GROUPS_SNAPSHOT, value)


def write_all_tasks_snapshots(settings: Settings, reader: Reader) -> list[Path]:
    """After any task change: rewrite `current_tasks.json` for every registered group."""
    groups = sorted(list_groups(reader), key=lambda group: group.folder)
    return [write_tasks_snapshot(settings, reader, group.folder, group.is_main) for group in groups]
