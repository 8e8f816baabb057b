"""What a reply looks like on Discord: parts within its 2,000-character limit, Markdown as Discord's own.

Discord reads Markdown itself, so the renderer mostly writes the agent's
styles back in Discord's spelling; plain text escapes the characters
Discord would take for markup. Parts are cut at 1,800 characters, leaving
room for those escapes, and a code block that fits in a part stays whole.
Headings of level 1 to 3 stay headings (Discord shows them); deeper ones
are bold; a table is monospace rows, as Discord has no tables.
"""

from __future__ import annotations

import re

from router.channels.markdown import Renderer
from router.channels.split import split_text

MAX_MESSAGE_CHARS = 2000
PART_CHARS = 1800

_SPECIAL_RE = re.compile(r"([\\*_~`|])")


def split_message(text: str, limit: int = PART_CHARS) -> list[str]:
    return split_text(text, limit)


class DiscordMarkdown(Renderer):
    def escape(self, text: str) -> str:
        return _SPECIAL_RE.sub(r"\\\1", text)

    def strong(self, inner: str) -> str:
        return f"**{inner}**" if inner.strip() else inner

    def em(self, inner: str) -> str:
        return f"*{inner}*" if inner.strip() else inner

    def strike(self, inner: str) -> str:
        return f"~~{inner}~~" if inner.strip() else inner

    def code(self, text: str) -> str:
        return f"`{text.replace('`', 'ˋ')}`"

    def link(self, label: str, url: str) -> str:
        return f"[{label}](<{url.replace('>', '%3E')}>)"  # <...>: no preview embed

    def heading(self, inner: str, level: int) -> str:
        return f"{'#' * level} {inner}" if level <= 3 else self.strong(inner)

    def code_block(self, code: str, language: str) -> str:
        return f"```{language}\n{code.replace('```', 'ˋˋˋ')}\n```"

    def table(self, rows: list[list[str]]) -> str:
        return f"```\n{super().table(rows)}\n```"


_RENDERER = DiscordMarkdown()


def to_discord(markdown: str) -> str:
    rendered = _RENDERER.render(markdown)
    return rendered if len(rendered) <= MAX_MESSAGE_CHARS else rendered[:MAX_MESSAGE_CHARS - 1] + "…"
