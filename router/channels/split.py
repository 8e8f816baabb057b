"""Cutting a long reply into the parts a chat accepts, the same way every time.

Parts are cut at a paragraph, then a line, then a word; a code block is
kept whole in one part when it fits in one, and one longer than a part is
closed at the end of each part and reopened at the start of the next, so
every part renders on its own. Each channel gives its limit and how it
counts length (Telegram counts UTF-16 units, Discord and Slack characters).
Delivery records each part once it is sent, so the cut must be the same on
every run: it depends on nothing but the text.
"""

from __future__ import annotations

import re
from typing import Callable

FENCE_RESERVE = 32  # room to close and reopen a code block cut by a split

# Boundaries in order of preference: a paragraph, a line, a word.
_BOUNDARIES = ("\n\n", "\n", " ")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$")

Length = Callable[[str], int]


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji may count 2)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, length: Length = len) -> list[str]:
    """Cut a reply into parts of at most `limit` (as `length` counts), in order; empty parts are dropped."""
    if limit < 2 * FENCE_RESERVE:
        raise ValueError(f"limit must be at least {2 * FENCE_RESERVE}, not {limit}")
    fenced = "```" in text or "~~~" in text
    budget = limit - FENCE_RESERVE if fenced else limit
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if length(rest) <= budget:
            parts.append(rest)
            break
        part, rest = _cut(rest, budget, length, fenced)
        rest = rest.lstrip("\n")
        if part.strip():
            parts.append(part.rstrip())
    return _mend_fences(parts) if fenced else parts


def _fitting_prefix(text: str, limit: int, length: Length) -> int:
    """The largest n such that text[:n] is at most `limit` long."""
    if length(text) <= limit:
        return len(text)
    low, high = 0, len(text)  # length is monotonic in the prefix: search for the last fitting one
    while low < high:
        middle = (low + high + 1) // 2
        if length(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def _cut(text: str, limit: int, length: Length, fenced: bool) -> tuple[str, str]:
    """One part of at most `limit` and the rest, cut at the best boundary."""
    window = _fitting_prefix(text, limit, length)
    head = text[:window]
    if fenced and (start := _unclosed_fence_start(head)) > 0:
        return text[:start], text[start:]  # the code block starts the next part, whole if it fits there
    for boundary in _BOUNDARIES:
        at = head.rfind(boundary)
        if at > 0:
            return text[:at], text[at + len(boundary):]
    return head, text[window:]  # one word longer than a part: cut it


def _unclosed_fence_start(head: str) -> int:
    """Where the code block still open at the end of `head` starts (0 when it opened at the start or none is)."""
    fence, start = _fence_at_end(head)
    return start if fence is not None else 0


def _fence_at_end(text: str) -> tuple[tuple[str, str] | None, int]:
    """The fence (marker, language) still open at the end of `text`, and where its opening line starts."""
    fence, start, position = None, 0, 0
    for line in text.split("\n"):
        match = _FENCE_RE.match(line)
        if match is not None:
            marker, language = match.groups()
            if fence is None:
                fence, start = (marker, language[:16]), position
            elif marker[0] == fence[0][0] and len(marker) >= len(fence[0]) and not language:
                fence = None
        position += len(line) + 1
    return fence, start


def _mend_fences(parts: list[str]) -> list[str]:
    """Close a code block at the end of a part and reopen it at the start of the next."""
    mended: list[str] = []
    fence = None
    for part in parts:
        if fence is not None:
            part = f"{fence[0]}{fence[1]}\n{part}"
        fence, _ = _fence_at_end(part)
        mended.append(part if fence is None else f"{part}\n{fence[0]}")
    return mended
