"""What a reply looks like on WhatsApp: parts of at most 4,000 characters, Markdown as WhatsApp's own styles.

WhatsApp styles text with markers, not markup: `*bold*`, `_italic_`,
`~strike~`, `` `code` `` and ```` ```monospace``` ```` blocks, `> ` quotes and
`- ` or `1. ` lists. It has no escape character and never refuses a
message, so there is no fallback to plain text to make: a style marker the
agent typed as a character shows as that character. Headings are bold and
links are their words with the address beside them, as WhatsApp shows an
address as a link by itself.

WhatsApp takes about 65,000 characters in one message, but a wall of text
that long is unreadable on a phone, so replies are cut at 4,000. Sharing
the owner's number, each part starts with the assistant's name (`Andy: `),
so the people in the chat can tell who is speaking; the name's room is
taken from the limit, so every part stays within it.
"""

from __future__ import annotations

from router.channels.markdown import SingleMarkers
from router.channels.split import split_text

MAX_PART_CHARS = 4000


def name_prefix(assistant_name: str) -> str:
    return f"{assistant_name}: "


def split_message(text: str, prefix: str = "", limit: int = MAX_PART_CHARS) -> list[str]:
    """The reply's Markdown cut into parts that fit beside the name prefix, in order."""
    return split_text(text, limit - len(prefix))


class WhatsAppText(SingleMarkers):
    def code(self, text: str) -> str:
        return f"`{text.replace('`', 'ˋ')}`" if text.strip() else text

    def heading(self, inner: str, level: int) -> str:
        return self.strong(inner)

    def code_block(self, code: str, language: str) -> str:
        return f"```{code.replace('```', 'ˋˋˋ')}```"

    def table(self, rows: list[list[str]]) -> str:
        return self.code_block(super().table(rows), "")


_RENDERER = WhatsAppText()


def to_whatsapp(markdown: str, prefix: str = "") -> str:
    """One part's Markdown as WhatsApp shows it, after the name prefix when there is one."""
    return f"{prefix}{_RENDERER.render(markdown)}"
