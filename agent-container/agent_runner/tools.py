"""The agent's `nanoclaw` tools: each one writes a request file for the host.

Implemented once, as plain functions (arguments in, reply text out), so the
Claude provider's in-process MCP server and the scripted provider run the
very same code. Tools only write requests into `ipc/messages/` or
`ipc/tasks/`; the host decides what to do with them.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent_runner.browser_tools import BROWSER_HANDLERS
from agent_runner.cron import is_valid_cron
from agent_runner.tool_specs import TOOL_SPECS
from agent_runner.tool_types import Handler, ToolContext, ToolReply, ToolSpec

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# The host's limits for send_file (rules/outbox.py, router/actions.py); tests/test_contract.py keeps them equal.
SEND_FILE_MAX_BYTES = 20 * 1024 * 1024
CAPTION_MAX_CHARS = 1024
_OFFSET_SUFFIX = re.compile(r"[+-]\d{2}:\d{2}$")


# --- files ---------------------------------------------------------------

def iso_now() -> str:
    """UTC now as `YYYY-MM-DDTHH:MM:SS.mmmZ` (JavaScript's toISOString)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _random_base36(length: int = 6) -> str:
    return "".join(random.choice(_BASE36) for _ in range(length))


def write_ipc_file(directory: Path, data: dict[str, Any]) -> Path:
    """Write `data` as `<epoch ms>-<6 base36>.json`, atomically (tmp + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{int(time.time() * 1000)}-{_random_base36()}.json"
    tmp = directory / f"{name}.tmp"
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    final = directory / name
    os.rename(tmp, final)
    return final


def _ok(text: str) -> ToolReply:
    return ToolReply(text)


def _error(text: str) -> ToolReply:
    return ToolReply(text, is_error=True)


# --- validation ----------------------------------------------------------

def _positive_int(value: str) -> bool:
    text = value.strip()
    return text.isascii() and text.isdigit() and int(text) > 0


def _check_schedule(kind: str, value: str) -> ToolReply | None:
    """An error reply when `value` does not fit `kind`, else None."""
    if kind == "cron" and not is_valid_cron(value):
        return _error(
            f'Invalid cron: "{value}". Use format like "0 9 * * *" (daily 9am) '
            'or "*/5 * * * *" (every 5 min).'
        )
    if kind == "interval" and not _positive_int(value):
        return _error(
            f'Invalid interval: "{value}". Must be positive milliseconds (e.g., 300000 for 5 min).'
        )
    if kind == "once":
        if value.endswith(("Z", "z")) or _OFFSET_SUFFIX.search(value):
            return _error(
                f'Timestamp must be local time without timezone suffix. Got "{value}" '
                '- use format like "2026-02-01T15:30:00".'
            )
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            return _error(
                f'Invalid timestamp: "{value}". Use local time format like "2026-02-01T15:30:00".'
            )
    return None


# --- tools ---------------------------------------------------------------

def send_message(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    data: dict[str, Any] = {"type": "message", "chatJid": ctx.chat_jid, "text": args["text"]}
    if args.get("sender"):
        data["sender"] = args["sender"]
    data["groupFolder"] = ctx.group_folder
    data["timestamp"] = iso_now()
    write_ipc_file(ctx.ipc_dir / "messages", data)
    return _ok("Message sent.")


def send_file(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    """Ask the host to send a file of the group's folder; it checks and copies it before anything is sent."""
    raw = args["path"].strip()
    path = Path(raw) if raw.startswith("/") else ctx.group_dir / raw
    try:
        relative = path.parent.resolve().relative_to(ctx.group_dir.resolve()) / path.name
    except (ValueError, OSError):
        relative = None
    if relative is None or path.name in ("", ".", ".."):
        return _error(f"Only files in the group's folder ({ctx.group_dir}) can be sent, not {raw}.")
    try:
        info: os.stat_result | None = os.lstat(ctx.group_dir / relative)
    except OSError:
        info = None
    problem = _unsendable(info, len(args.get("caption") or ""))
    if problem:
        return _error(f"{raw} cannot be sent: {problem}.")
    data: dict[str, Any] = {"type": "file", "chatJid": ctx.chat_jid, "path": str(relative),
                            "caption": args.get("caption") or "", "groupFolder": ctx.group_folder,
                            "timestamp": iso_now()}
    write_ipc_file(ctx.ipc_dir / "messages", data)
    return _ok(f"File {relative} sent to the chat (the host checks it first; a refusal is logged).")


def _unsendable(info: os.stat_result | None, caption_chars: int) -> str | None:
    """Why the host would refuse the file (told to the agent at once), or None."""
    if info is None:
        return "there is no such file"
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link; the host never follows one (send the file itself)"
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if info.st_nlink != 1:
        return f"it has {info.st_nlink} hard links; only a file with one is sent (copy it)"
    if not 0 < info.st_size <= SEND_FILE_MAX_BYTES:
        return "it is empty" if not info.st_size else f"it is over {SEND_FILE_MAX_BYTES:,} bytes"
    if caption_chars > CAPTION_MAX_CHARS:
        return f"the caption is over {CAPTION_MAX_CHARS} characters"
    return None


def schedule_task(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    kind, value = args["schedule_type"], args["schedule_value"]
    problem = _check_schedule(kind, value)
    if problem:
        return problem
    target = args.get("target_group_jid") if ctx.is_main else None
    task_id = f"task-{int(time.time() * 1000)}-{_random_base36()}"
    data: dict[str, Any] = {"type": "schedule_task", "taskId": task_id, "prompt": args["prompt"]}
    if args.get("script"):
        data["script"] = args["script"]
    data.update(
        schedule_type=kind,
        schedule_value=value,
        context_mode=args.get("context_mode") or "group",
        targetJid=target or ctx.chat_jid,
        createdBy=ctx.group_folder,
        timestamp=iso_now(),
    )
    write_ipc_file(ctx.ipc_dir / "tasks", data)
    return _ok(f"Task {task_id} scheduled: {kind} - {value}")


def list_tasks(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    path = ctx.ipc_dir / "snapshots" / "current_tasks.json"  # the host's, read-only
    try:
        if not path.exists():
            return _ok("No scheduled tasks found.")
        tasks = json.loads(path.read_text(encoding="utf-8"))
        if not ctx.is_main:
            tasks = [t for t in tasks if t.get("groupFolder") == ctx.group_folder]
        if not tasks:
            return _ok("No scheduled tasks found.")
        return _ok("Scheduled tasks:\n" + "\n".join(_task_line(t) for t in tasks))
    except Exception as exc:  # a bad snapshot is reported to the agent, not raised
        return _ok(f"Error reading tasks: {exc}")


def _task_line(task: dict[str, Any]) -> str:
    prompt = str(task.get("prompt") or "")[:50]
    return (
        f"- [{task.get('id')}] {prompt}... ({task.get('schedule_type')}: "
        f"{task.get('schedule_value')}) - {task.get('status')}, next: {task.get('next_run') or 'N/A'}"
    )


def _task_action(kind: str, reply: str) -> Handler:
    def handler(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
        data = {
            "type": kind,
            "taskId": args["task_id"],
            "groupFolder": ctx.group_folder,
            "isMain": ctx.is_main,
            "timestamp": iso_now(),
        }
        write_ipc_file(ctx.ipc_dir / "tasks", data)
        return _ok(reply.format(id=args["task_id"]))

    return handler


def update_task(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    kind, value = args.get("schedule_type"), args.get("schedule_value")
    if value and (kind == "cron" or not kind):
        if not is_valid_cron(value):
            return _error(f'Invalid cron: "{value}".')
    if value and kind == "interval" and not _positive_int(value):
        return _error(f'Invalid interval: "{value}".')
    data: dict[str, Any] = {
        "type": "update_task",
        "taskId": args["task_id"],
        "groupFolder": ctx.group_folder,
        "isMain": "true" if ctx.is_main else "false",
        "timestamp": iso_now(),
    }
    for key in ("prompt", "script", "schedule_type", "schedule_value"):
        if key in args and args[key] is not None:
            data[key] = args[key]
    write_ipc_file(ctx.ipc_dir / "tasks", data)
    return _ok(f"Task {args['task_id']} update requested.")


def register_group(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    if not ctx.is_main:
        return _error("Only the main group can register new groups.")
    requires_trigger = args.get("requiresTrigger")
    data = {
        "type": "register_group",
        "jid": args["jid"],
        "name": args["name"],
        "folder": args["folder"],
        "trigger": args["trigger"],
        "requiresTrigger": requires_trigger if isinstance(requires_trigger, bool) else False,
        "timestamp": iso_now(),
    }
    write_ipc_file(ctx.ipc_dir / "tasks", data)
    return _ok(f'Group "{args["name"]}" registered. It will start receiving messages immediately.')


# --- registry and dispatch -------------------------------------------------

_HANDLERS: dict[str, Handler] = {
    **BROWSER_HANDLERS,
    "send_message": send_message,
    "send_file": send_file,
    "schedule_task": schedule_task,
    "list_tasks": list_tasks,
    "pause_task": _task_action("pause_task", "Task {id} pause requested."),
    "resume_task": _task_action("resume_task", "Task {id} resume requested."),
    "cancel_task": _task_action("cancel_task", "Task {id} cancellation requested."),
    "update_task": update_task,
    "register_group": register_group,
}

TOOLS: dict[str, ToolSpec] = {
    name: ToolSpec(name, spec.description, spec.schema, _HANDLERS[name], spec.main_only, spec.needs_browser)
    for name, spec in TOOL_SPECS.items()
}


def tools_for(is_main: bool, has_browser: bool = False) -> list[ToolSpec]:
    """The tools a container offers: `register_group` only to main, `browser_*` only with a browser."""
    return [spec for spec in TOOLS.values()
            if (is_main or not spec.main_only) and (has_browser or not spec.needs_browser)]


def call_tool(name: str, ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
    """Check the arguments against the tool's schema, then run it."""
    spec = TOOLS.get(name)
    if spec is None:
        return _error(f"Unknown tool: {name}")
    problem = check_arguments(spec.schema, args)
    if problem:
        return _error(problem)
    return spec.handler(ctx, args)


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "boolean": bool, "object": dict, "number": (int, float), "integer": int,
}


def check_arguments(schema: dict[str, Any], args: Any) -> str | None:
    """A short message when `args` breaks the (flat) schema, else None."""
    if not isinstance(args, dict):
        return "Tool arguments must be an object"
    for key in schema.get("required", []):
        if key not in args:
            return f"Missing required argument: {key}"
    for key, prop in schema.get("properties", {}).items():
        if key not in args or (args[key] is None and key not in schema.get("required", [])):
            continue
        expected = _JSON_TYPES.get(prop.get("type", ""))
        wrong_bool = isinstance(args[key], bool) and prop.get("type") in ("number", "integer")
        if expected and (wrong_bool or not isinstance(args[key], expected)):
            return f"Argument {key} must be a {prop['type']}"
        if "enum" in prop and args[key] not in prop["enum"]:
            return f"Argument {key} must be one of: {', '.join(prop['enum'])}"
    return None
