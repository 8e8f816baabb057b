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
    needs_browser: bool = False


def _string(description: str, enum: tuple[str, ...] | None = None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "string", "description": description}
    if enum:
        prop["enum"] = list(enum)
    return prop


def _number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _boolean(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


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

_WAIT_STATES = ("load", "domcontentloaded", "networkidle")
_TIMEOUT = _number("Seconds to wait at most (default 15, 30 to open a page; up to 120).")
_SELECTOR = _string(
    "Which element: a Playwright selector such as CSS (\"#email\", \"form button\"), "
    "text=Sign in, or role=button[name=\"Send\"] (see browser_read's accessibility tree)."
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
    "send_file": SpecText(
        "Send a file from the group's folder to the chat: an image (a browser_screenshot) shows as a "
        "picture where the chat can, anything else as a document. Up to 20 MB.",
        _object(
            ("path",),
            path=_string("The file, relative to the group's folder (browser/shot.png) or under /workspace/group/."),
            caption=_string("Optional text shown with the file (up to 1024 characters)."),
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
    **{name: SpecText(text, schema, needs_browser=True) for name, (text, schema) in {
        "browser_open": (
            "Open a web page in this group's headless browser and read its text. The browser keeps the "
            "page (and its cookies) for the next browser_* call. Only http(s); the web is reached through "
            "the group's egress policy, and a refused destination is reported as refused.",
            _object(("url",), url=_string("The page's address."),
                    wait_until=_string("When the page counts as open (default load).", _WAIT_STATES),
                    timeout_s=_TIMEOUT),
        ),
        "browser_read": (
            "Read the open page again: its visible text, its accessibility tree (roles and names, the "
            "best guide to what can be clicked or filled) or its HTML, whole or one element's.",
            _object((), format=_string("text (default), accessibility or html.", ("text", "accessibility", "html")),
                    selector=_SELECTOR),
        ),
        "browser_click": (
            "Click an element of the open page (a link, a button) and wait for what it opens.",
            _object(("selector",), selector=_SELECTOR, timeout_s=_TIMEOUT),
        ),
        "browser_type": (
            "Type text into a field of the open page key by key, optionally pressing Enter after.",
            _object(("selector", "text"), selector=_SELECTOR, text=_string("The text to type."),
                    submit=_boolean("Press Enter after typing."), timeout_s=_TIMEOUT),
        ),
        "browser_fill": (
            "Fill a form on the open page at once, then optionally click its submit button.",
            _object(("fields",),
                    fields={"type": "object", "description": "Selector -> value: text for inputs and "
                            "textareas, an option's value or label for selects, true/false for checkboxes."},
                    submit=_string("Selector of the button to click after filling."), timeout_s=_TIMEOUT),
        ),
        "browser_wait": (
            "Wait until an element or a text is on the open page, until it reaches a load state, or "
            "for a number of seconds.",
            _object((), selector=_SELECTOR, text=_string("Text to wait for."),
                    state=_string("A load state to wait for.", _WAIT_STATES),
                    timeout_s=_number("Longest wait in seconds (default 15; alone: how long to wait).")),
        ),
        "browser_screenshot": (
            "Save a PNG screenshot of the open page (or of one element) into the group's folder, "
            "under browser/. send_file then shows it in the chat.",
            _object((), name=_string("File name (letters, digits, . - _); default screenshot-<time>.png."),
                    full_page=_boolean("The whole scrollable page, not just the window."), selector=_SELECTOR),
        ),
        "browser_pdf": (
            "Save the open page as a PDF into the group's folder, under browser/.",
            _object((), name=_string("File name (letters, digits, . - _); default pdf-<time>.pdf.")),
        ),
    }.items()},
}
