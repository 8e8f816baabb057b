"""What a container may read about tasks and groups (SPEC 9.5).

Agents cannot query the event log, so the host writes the group's tasks (main:
everyone's) and, for main, the chats it could register into the group's IPC
folder, replaced atomically so an agent never reads half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, Sequence

from events.timefmt import iso_now
from nanoclaw.config import Settings
from router.groups import validate_folder

TASKS_SNAPSHOT = "current_tasks.json"
GROUPS_SNAPSHOT = "available_groups.json"
GROUP_SYNC_JID = "__group_sync__"
SNAPSHOT_MODE = 0o644

_TASK_COLUMNS = "id, group_folder, prompt, script, schedule_type, schedule_value, status, next_run"


class Reader(Protocol):
    """An EventLog or a Transaction: anything that can read the projections."""

    def query(self, sql: str, params: Sequence | dict = ...) -> list: ...


def _write_json(directory: Path, name: str, value: Any) -> Path:
    """Replace `directory/name` atomically; the temp name is new, so a planted link is never followed."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(value, indent=2, ensure_ascii=False))
            os.fchmod(handle.fileno(), SNAPSHOT_MODE)
        target = directory / name
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def tasks_for(reader: Reader, folder: str, is_main: bool) -> list[dict[str, Any]]:
    """The task list a group sees, newest first: main all of them, others their own."""
    where, params = ("", ()) if is_main else ("WHERE group_folder = ?", (folder,))
    rows = reader.query(
        f"SELECT {_TASK_COLUMNS} FROM tasks {where} ORDER BY created_at DESC, rowid DESC", params
    )
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
    rows = reader.query(
        """SELECT c.jid, c.name, c.last_message_time,
                  EXISTS (SELECT 1 FROM groups g WHERE g.jid = c.jid) AS registered
           FROM chats c WHERE c.is_group = 1 AND c.jid != ?
           ORDER BY c.last_message_time DESC, c.jid""",
        (GROUP_SYNC_JID,),
    )
    return [
        {
            "jid": row["jid"],
            "name": row["name"],
            "lastActivity": row["last_message_time"],
            "isRegistered": bool(row["registered"]),
        }
        for row in rows
    ]


def write_tasks_snapshot(settings: Settings, reader: Reader, folder: str, is_main: bool) -> Path:
    """Write `data/ipc/<folder>/current_tasks.json`; returns its path."""
    validate_folder(folder)
    return _write_json(settings.ipc_dir / folder, TASKS_SNAPSHOT, tasks_for(reader, folder, is_main))


def write_groups_snapshot(settings: Settings, reader: Reader, folder: str, is_main: bool) -> Path:
    """Write `data/ipc/<folder>/available_groups.json`; returns its path."""
    validate_folder(folder)
    value = {"groups": groups_for(reader, is_main), "lastSync": iso_now()}
    return _write_json(settings.ipc_dir / folder, GROUPS_SNAPSHOT, value)


def write_all_tasks_snapshots(settings: Settings, reader: Reader) -> list[Path]:
    """After any task change: rewrite `current_tasks.json` for every registered group."""
    rows = reader.query("SELECT folder, is_main FROM groups ORDER BY folder")
    return [write_tasks_snapshot(settings, reader, row["folder"], bool(row["is_main"])) for row in rows]
