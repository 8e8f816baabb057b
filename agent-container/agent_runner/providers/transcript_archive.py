"""Keeps a readable copy of a conversation before the SDK compacts it.

Compaction replaces the session's history with a summary; the user's group
folder keeps the full exchange as `conversations/<date>-<name>.md`. Only the
standard library is used, so the archive can be tested outside the image.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

MESSAGE_CAP_CHARS = 2000
NAME_CAP_CHARS = 50
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def archive_transcript(
    *,
    transcript_path: str,
    session_id: str,
    group_dir: Path,
    assistant_name: str,
    now: datetime | None = None,
) -> Path | None:
    """Write the markdown archive; None when the transcript has no messages."""
    path = Path(transcript_path)
    if not transcript_path or not path.is_file():
        return None
    messages = parse_transcript(path.read_text(encoding="utf-8", errors="replace"))
    if not messages:
        return None
    now = now or datetime.now()
    summary = session_summary(path.parent / "sessions-index.json", session_id)
    name = file_stem(summary) if summary else f"conversation-{now:%H%M}"
    target = group_dir / "conversations" / f"{now:%Y-%m-%d}-{name}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(to_markdown(messages, summary, assistant_name, now), encoding="utf-8")
    return target


def parse_transcript(text: str) -> list[tuple[str, str]]:
    """(role, text) for each user or assistant entry of a JSONL transcript that has text."""
    messages = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant"):
            continue
        content = (entry.get("message") or {}).get("content")
        body = _text_of(content, assistant=entry["type"] == "assistant")
        if body:
            messages.append((entry["type"], body))
    return messages


def _text_of(content: Any, *, assistant: bool) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict) or (assistant and block.get("type") != "text"):
            continue
        text = block.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def session_summary(index_path: Path, session_id: str) -> str | None:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for entry in index.get("entries", []) if isinstance(index, dict) else []:
        if isinstance(entry, dict) and entry.get("sessionId") == session_id and entry.get("summary"):
            return str(entry["summary"])
    return None


def file_stem(summary: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", summary.lower()).strip("-")[:NAME_CAP_CHARS]


def to_markdown(
    messages: list[tuple[str, str]], summary: str | None, assistant_name: str, now: datetime
) -> str:
    hour = now.hour % 12 or 12
    stamp = f"{_MONTHS[now.month - 1]} {now.day}, {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"
    lines = [f"# {summary or 'Conversation'}", "", f"Archived: {stamp}", "", "---", ""]
    for role, text in messages:
        sender = "User" if role == "user" else (assistant_name or "Assistant")
        if len(text) > MESSAGE_CAP_CHARS:
            text = text[:MESSAGE_CAP_CHARS] + "..."
        lines += [f"**{sender}**: {text}", ""]
    return "\n".join(lines)
