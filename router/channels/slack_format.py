"""What a reply looks like on Slack: parts of at most 3,000 characters, Markdown as mrkdwn.

A part goes as one `section` block of mrkdwn (Slack refuses a longer one
with `invalid_blocks`) with the plain text beside it for notifications and
for the fallback when Slack refuses the block. mrkdwn escapes `&`, `<` and
`>` and nothing else; bold is `*x*`, italic `_x_`, strike-through `~x~`,
links `<url|label>`; headings are bold, as Slack has none.
"""

from __future__ import annotations

from router.channels.markdown import SingleMarkers
from router.channels.split import split_text

SECTION_MAX_CHARS = 3000


def split_message(text: str, limit: int = SECTION_MAX_CHARS) -> list[str]:
    return split_text(text, limit)


class SlackMrkdwn(SingleMarkers):
    def escape(self, text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def code(self, text: str) -> str:
        return f"`{self.escape(text.replace('`', 'ˋ'))}`"

    def link(self, label: str, url: str) -> str:
        return f"<{self.escape(url).replace('|', '%7C')}|{label.replace('|', '¦')}>"

    def heading(self, inner: str, level: int) -> str:
        return self.strong(inner)

    def code_block(self, code: str, language: str) -> str:
        return f"```\n{self.escape(code)}\n```"

    def table(self, rows: list[list[str]]) -> str:
        return f"```\n{super().table(rows)}\n```"


_RENDERER = SlackMrkdwn()


def to_mrkdwn(markdown: str) -> str:
    return _RENDERER.render(markdown)
