"""What a reply looks like on Telegram: parts of at most 4,096 UTF-16 units, Markdown as HTML.

Telegram's HTML parse mode escapes three characters where its MarkdownV2
escapes eighteen, so the rendered text is well-formed by construction.
Links keep only schemes Telegram opens; headings are bold (Telegram has no
headings); a table is shown as monospace rows.
"""

from __future__ import annotations

import html

from router.channels.markdown import Renderer
from router.channels.split import split_text, utf16_len

MAX_MESSAGE_UNITS = 4096

__all__ = ["MAX_MESSAGE_UNITS", "split_message", "to_telegram_html", "utf16_len"]


def split_message(text: str, limit: int = MAX_MESSAGE_UNITS) -> list[str]:
    """Cut a reply into parts Telegram accepts, in order."""
    return split_text(text, limit, utf16_len)


class TelegramHtml(Renderer):
    link_schemes = ("http://", "https://", "tg://", "mailto:")

    def escape(self, text: str) -> str:
        return html.escape(text, quote=False)

    def strong(self, inner: str) -> str:
        return f"<b>{inner}</b>"

    def em(self, inner: str) -> str:
        return f"<i>{inner}</i>"

    def strike(self, inner: str) -> str:
        return f"<s>{inner}</s>"

    def code(self, text: str) -> str:
        return f"<code>{self.escape(text)}</code>"

    def link(self, label: str, url: str) -> str:
        return f'<a href="{html.escape(url)}">{label}</a>'

    def heading(self, inner: str, level: int) -> str:
        return f"<b>{inner}</b>"

    def quote(self, inner: str) -> str:
        return f"<blockquote>{inner}</blockquote>"

    def code_block(self, code: str, language: str) -> str:
        if language:
            return f'<pre><code class="language-{self.escape(language)}">{self.escape(code)}</code></pre>'
        return f"<pre>{self.escape(code)}</pre>"

    def table(self, rows: list[list[str]]) -> str:
        return f"<pre>{super().table(rows)}</pre>"


_RENDERER = TelegramHtml()


def to_telegram_html(markdown: str) -> str:
    """Markdown as Telegram's HTML parse mode shows it; always well-formed."""
    return _RENDERER.render(markdown)
