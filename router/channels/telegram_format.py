"""What a reply looks like on Telegram: parts of at most 4,096 UTF-16 units, Markdown as HTML.

Long replies are cut at paragraphs, then lines, then words (a code block cut in two is closed and
reopened). Agents write ordinary Markdown; Telegram's HTML mode escapes three characters where its
MarkdownV2 escapes eighteen, so the converted text is well-formed by construction.
"""

from __future__ import annotations

import html
import re

MAX_MESSAGE_UNITS = 4096
FENCE_RESERVE_UNITS = 32  # room to close and reopen a code block cut by a split
LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")

# Boundaries in order of preference: a paragraph, a line, a word.
_BOUNDARIES = ("\n\n", "\n", " ")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji may count 2)."""
    return len(text.encode("utf-16-le")) // 2


def _fitting_prefix(text: str, limit: int) -> int:
    """The largest n such that text[:n] is at most `limit` UTF-16 units."""
    if utf16_len(text) <= limit:
        return len(text)
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _cut(text: str, limit: int) -> tuple[str, str]:
    """One part of at most `limit` units and the rest, cut at the best boundary."""
    window = _fitting_prefix(text, limit)
    head = text[:window]
    for boundary in _BOUNDARIES:
        at = head.rfind(boundary)
        if at > 0:
            return text[:at], text[at + len(boundary):]
    return head, text[window:]  # one word longer than a message: cut it


def split_message(text: str, limit: int = MAX_MESSAGE_UNITS) -> list[str]:
    """Cut a reply into parts Telegram accepts, in order; empty parts are dropped."""
    if limit < 2 * FENCE_RESERVE_UNITS:
        raise ValueError(f"limit must be at least {2 * FENCE_RESERVE_UNITS} units, not {limit}")
    fenced = "```" in text or "~~~" in text
    budget = limit - FENCE_RESERVE_UNITS if fenced else limit
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= budget:
            parts.append(rest)
            break
        part, rest = _cut(rest, budget)
        rest = rest.lstrip("\n")
        if part.strip():
            parts.append(part.rstrip())
    return _mend_fences(parts) if fenced else parts


def _open_fence(text: str, fence: tuple[str, str] | None) -> tuple[str, str] | None:
    """The fence (marker, language) still open at the end of `text`, given the one open at its start."""
    for line in text.split("\n"):
        match = _FENCE_RE.match(line)
        if match is None:
            continue
        marker, language = match.groups()
        if fence is None:
            fence = (marker, language[:16])
        elif marker[0] == fence[0][0] and len(marker) >= len(fence[0]) and not language:
            fence = None
    return fence


def _mend_fences(parts: list[str]) -> list[str]:
    """Close a code block at the end of a part and reopen it at the start of the next."""
    mended: list[str] = []
    fence = None
    for part in parts:
        if fence is not None:
            part = f"{fence[0]}{fence[1]}\n{part}"
        fence = _open_fence(part, None)
        mended.append(part if fence is None else f"{part}\n{fence[0]}")
    return mended


_INLINE_RE = re.compile(
    r"(?P<tick>`+)(?P<code>.+?)(?P=tick)"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<url>[^()\s]+)\)"
    r"|\*\*(?P<bold>(?=\S).+?(?<=\S))\*\*"
    r"|(?<!\w)__(?P<bold2>(?=\S).+?(?<=\S))__(?!\w)"
    r"|~~(?P<strike>(?=\S).+?(?<=\S))~~"
    r"|(?<![\w*])\*(?P<italic>(?=[^\s*]).*?(?<=[^\s*]))\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic2>(?=[^\s_]).*?(?<=[^\s_]))_(?![\w_])"
)
_STYLE_TAGS = {"bold": "b", "bold2": "b", "strike": "s", "italic": "i", "italic2": "i"}


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _inline(text: str) -> str:
    """Inline Markdown (code, links, bold, italic, strike-through) as Telegram HTML."""
    out: list[str] = []
    position = 0
    for match in _INLINE_RE.finditer(text):
        out.append(_escape(text[position:match.start()]))
        position = match.end()
        kind = match.lastgroup
        if kind == "code":
            out.append(f"<code>{_escape(match['code'])}</code>")
        elif kind == "url":
            url = match["url"]
            label = _inline(match["label"])
            out.append(f'<a href="{html.escape(url)}">{label}</a>' if url.startswith(LINK_SCHEMES)
                       else _escape(match.group(0)))
        else:
            tag = _STYLE_TAGS[kind]
            out.append(f"<{tag}>{_inline(match[kind])}</{tag}>")
    out.append(_escape(text[position:]))
    return "".join(out)


_HEADING_RE = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET_RE = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_QUOTE_RE = re.compile(r"^ {0,3}>\s?(.*)$")


def _line(line: str) -> str:
    if match := _HEADING_RE.match(line):
        return f"<b>{_inline(match[1])}</b>"
    if match := _BULLET_RE.match(line):
        return f"{match[1]}• {_inline(match[2])}"
    return _inline(line)


def _code_block(lines: list[str], language: str) -> str:
    body = _escape("\n".join(lines))
    if language:
        return f'<pre><code class="language-{_escape(language)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def to_telegram_html(markdown: str) -> str:
    """Markdown as Telegram's HTML parse mode shows it; always well-formed."""
    out: list[str] = []
    lines = markdown.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if fence := _FENCE_RE.match(line):
            marker, language = fence.groups()
            end = index + 1
            while end < len(lines) and not _closes(lines[end], marker):
                end += 1
            out.append(_code_block(lines[index + 1:end], language))
            index = end + 1
        elif _QUOTE_RE.match(line):
            end = index
            while end < len(lines) and _QUOTE_RE.match(lines[end]):
                end += 1
            body = "\n".join(_line(_QUOTE_RE.match(q)[1]) for q in lines[index:end])
            out.append(f"<blockquote>{body}</blockquote>")
            index = end
        else:
            out.append(_line(line))
            index += 1
    return "\n".join(out)


def _closes(line: str, marker: str) -> bool:
    match = _FENCE_RE.match(line)
    return bool(match) and match[1][0] == marker[0] and len(match[1]) >= len(marker) and not match[2]
