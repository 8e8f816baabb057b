"""What the model is told about each `nanoclaw` tool: description and schema.

Kept apart from the handlers in `tools.py` because this is prompt text the
model reads, tuned on its own schedule; the schemas double as the argument
check for the scripted provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpecText:
    description: str
    schema: dict[str, Any]
    main_only: bool = False


def _string(description: str, enum: tuple[str, ...] | None = None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "string", "description": description}
    if enum:
        prop["enum"] = list(enum)
    return prop


def _object(required: tuple[str, ...], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


_TASK_ID = _string("The task id, as shown by list_tasks.")
_SCHEDULE_TYPES = ("cron", "interval", "once")
_SCHEDULE_VALUE = _string(
    "cron: a 5-field cron expression in local time (\"0 9 * * 1-5\" = weekdays at 9:00); "
    "interval: milliseconds between runs (\"3600000\" = hourly); "
    "once: a local timestamp without a timezone suffix (\"2026-02-01T15:30:00\")."
)
_SCRIPT = _string(
    "Optional bash script run before the agent wakes; its last stdout line must be JSON "
    "like {\"wakeAgent\": true, \"data\": {...}}. The agent runs only when wakeAgent is true."
)

TOOL_SPECS: dict[str, SpecText] = {
    "send_message": SpecText(
        "Send a message to the chat right away, while you keep working. Use it for progress "
        "updates or several separate messages; your final answer is sent anyway.",
        _object(
            ("text",),
            text=_string("The message text."),
            sender=_string("Optional persona name to send as (on channels that support it)."),
        ),
    ),
    "schedule_task": SpecText(
        "Schedule a recurring or one-time task. The prompt runs as a full agent with all tools. "
        "context_mode 'group' sees this chat's conversation history; 'isolated' starts fresh.",
        _object(
            ("prompt", "schedule_type", "schedule_value"),
            prompt=_string("What the agent should do when the task runs."),
            schedule_type=_string("How to read schedule_value.", _SCHEDULE_TYPES),
            schedule_value=_SCHEDULE_VALUE,
            context_mode=_string("group (default) or isolated.", ("group", "isolated")),
            target_group_jid=_string("Main group only: the chat JID the task runs for."),
            script=_SCRIPT,
        ),
    ),
    "list_tasks": SpecText(
        "List the scheduled tasks (all of them from the main group, else this group's).",
        {"type": "object", "properties": {}},
    ),
    "pause_task": SpecText("Pause a scheduled task.", _object(("task_id",), task_id=_TASK_ID)),
    "resume_task": SpecText(
        "Resume a paused task.", _object(("task_id",), task_id=_TASK_ID)
    ),
    "cancel_task": SpecText(
        "Cancel and delete a scheduled task.", _object(("task_id",), task_id=_TASK_ID)
    ),
    "update_task": SpecText(
        "Change a scheduled task. Give only the fields to change; an empty script removes it. "
        "When changing the value of an interval task, pass schedule_type too.",
        _object(
            ("task_id",),
            task_id=_TASK_ID,
            prompt=_string("New prompt."),
            schedule_type=_string("New schedule type.", _SCHEDULE_TYPES),
            schedule_value=_SCHEDULE_VALUE,
            script=_SCRIPT,
        ),
    ),
    "register_group": SpecText(
        "Main group only: register a chat so the assistant answers there. Use the JID from "
        "/workspace/ipc/snapshots/available_groups.json; folder is a short lowercase name like "
        "'telegram_family'.",
        {
            "type": "object",
            "properties": {
                "jid": _string("The chat JID."),
                "name": _string("Display name of the group."),
                "folder": _string("Folder name for the group's files and memory."),
                "trigger": _string("Trigger word, e.g. '@Andy'."),
                "requiresTrigger": {
                    "type": "boolean",
                    "description": "Whether messages need the trigger word (default false).",
                },
            },
            "required": ["jid", "name", "folder", "trigger"],
        },
        main_only=True,
    ),
}
