"""`nanoclaw tasks list|pause|resume|cancel`: scheduled tasks, for people.

Agents manage tasks through their IPC tools; the owner does it here. Each
change is an event (`TaskPaused`, `TaskResumed`, `TaskCancelled`) by `cli`.
"""

from __future__ import annotations

import argparse

from base.config import Settings
from events import EventLog, types as t
from events.queries import task_by_id, tasks_soonest_first
from nanoclaw import show
from rules.groups import GroupError

CHANGES = {"pause": (t.TaskPaused, ("active",)), "resume": (t.TaskResumed, ("paused",)),
           "cancel": (t.TaskCancelled, ("active", "paused", "completed"))}


def change_task(log: EventLog, action: str, task_id: str, by: str = "cli") -> str:
    """Pause, resume or cancel a task (the CLI's and the dashboard's one way); returns its group folder."""
    event_type, allowed = CHANGES[action]
    with log.transaction() as tx:
        task = task_by_id(tx, task_id)
        if task is None:
            raise GroupError(f"no task {task_id!r}; see 'nanoclaw tasks list'")
        if task["status"] not in allowed:
            raise GroupError(f"task {task_id} is {task['status']}; cannot {action} it")
        tx.append(event_type(task_id=task_id, group_folder=task["group_folder"], by=by))
    return task["group_folder"]


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        rows = tasks_soonest_first(log, args.group or None)
    finally:
        log.close()
    if args.json:
        for row in rows:
            show.json_line(dict(row))
        return 0
    if not rows:
        print("no scheduled tasks")
        return 0
    show.table(("ID", "GROUP", "STATUS", "SCHEDULE", "NEXT RUN", "LAST RESULT", "PROMPT"),
               [(r["id"], r["group_folder"], r["status"], f"{r['schedule_type']} {r['schedule_value']}",
                 r["next_run"] or "-", (r["last_result"] or "")[:30], r["prompt"]) for r in rows])
    return 0


def cmd_change(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        folder = change_task(log, args.tasks_command, args.task_id)
    finally:
        log.close()
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[args.tasks_command]
    print(f"task {args.task_id} of {folder} {done}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list, pause, resume or cancel scheduled tasks")
    tsub = p.add_subparsers(dest="tasks_command", required=True, metavar="COMMAND")
    ls = tsub.add_parser("list", help="scheduled tasks, soonest first")
    ls.add_argument("--group", metavar="FOLDER")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_list)
    for action in CHANGES:
        change = tsub.add_parser(action, help=f"{action} a task")
        change.add_argument("task_id")
        change.set_defaults(handler=cmd_change)
