"""An agent's Markdown, parsed once, shown in each chat's own markup.

Agents write ordinary (CommonMark) Markdown. markdown-it-py parses it into
a tree; a `Renderer` walks that tree and asks its subclass how each style
looks (Telegram's HTML, Slack's mrkdwn, plain text). What a chat cannot
show becomes readable text, never markup the chat would refuse: every
piece of text passes through the renderer's `escape`.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

LINK_SCHEMES = ("http://", "https://", "mailto:")
RULE = "———"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html off: a tag the agent writes is text, shown as written
    return MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])


def parse(markdown: str) -> SyntaxTreeNode:
    return SyntaxTreeNode(_parser().parse(markdown))


class Renderer:
    """Plain text; subclasses override the styles their chat can show."""

    link_schemes: tuple[str, ...] = LINK_SCHEMES

    # ----- what a chat's markup says; plain text by default ----------------------------------------
    def escape(self, text: str) -> str:
        return text

    def strong(self, inner: str) -> str:
        return inner

    def em(self, inner: str) -> str:
        return inner

    def strike(self, inner: str) -> str:
        return inner

    def code(self, text: str) -> str:
        return self.escape(text)

    def link(self, label: str, url: str) -> str:
        return label if label == self.escape(url) else f"{label} ({self.escape(url)})"

    def heading(self, inner: str, level: int) -> str:
        return inner

    def quote(self, inner: str) -> str:
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))

    def code_block(self, code: str, language: str) -> str:
        return self.escape(code)

    def table(self, rows: list[list[str]]) -> str:
        return "\n".join(" | ".join(cells) for cells in rows)

    # ----- the walk --------------------------------------------------------------------------------
    def render(self, markdown: str) -> str:
        return self._blocks(parse(markdown), "\n\n")

    def _blocks(self, node: SyntaxTreeNode, between: str) -> str:
        return between.join(shown for child in node.children if (shown := self._block(child)))

    def _block(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "paragraph":
            return self._inline_children(node)
        if kind == "heading":
            return self.heading(self._inline_children(node), int(node.tag[1:]))
        if kind == "blockquote":
            return self.quote(self._blocks(node, "\n"))
        if kind in ("bullet_list", "ordered_list"):
            return self._list(node, depth=0)
        if kind in ("fence", "code_block"):
            language = (node.info or "").split(maxsplit=1)[0][:16] if kind == "fence" and node.info else ""
            return self.code_block(node.content.rstrip("\n"), language)
        if kind == "hr":
            return RULE
        if kind == "table":
            return self.table([[self._inline_children(cell) for cell in row.children]
                               for section in node.children for row in section.children])
        return self.escape(node.content.rstrip("\n"))  # html_block and anything new: the text as written

    def _list(self, node: SyntaxTreeNode, depth: int) -> str:
        lines = []
        number = int(node.attrs.get("start", 1) or 1)
        for item in node.children:
            marker = f"{number}." if node.type == "ordered_list" else "•"
            number += 1
            body = []
            for child in item.children:
                if child.type in ("bullet_list", "ordered_list"):
                    body.append(self._list(child, depth + 1))
                else:
                    body.append(self._block(child))
            text = "\n".join(b for b in body if b)
            lines.append(f"{'  ' * depth}{marker} {text}")
        return "\n".join(lines)

    def _inline_children(self, node: SyntaxTreeNode) -> str:
        return "".join(self._inline(child) for child in node.children)

    def _inline(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "inline":
            return self._inline_children(node)
        if kind == "text":
            return self.escape(node.content)
        if kind in ("softbreak", "hardbreak"):
            return "\n"
        if kind == "strong":
            return self.strong(self._inline_children(node))
        if kind == "em":
            return self.em(self._inline_children(node))
        if kind == "s":
            return self.strike(self._inline_children(node))
        if kind == "code_inline":
            return self.code(node.content)
        if kind in ("link", "image"):
            url = str(node.attrs.get("href" if kind == "link" else "src", ""))
            label = self._inline_children(node) or self.escape(url)
            return self.link(label, url) if url.lower().startswith(self.link_schemes) else label
        return self.escape(node.content)  # html_inline and anything new: as written


class SingleMarkers(Renderer):
    """`*bold*`, `_italic_`, `~strike~`: the markers Slack's mrkdwn and WhatsApp share."""

    def strong(self, inner: str) -> str:
        return f"*{inner}*" if inner.strip() else inner

    def em(self, inner: str) -> str:
        return f"_{inner}_" if inner.strip() else inner

    def strike(self, inner: str) -> str:
        return f"~{inner}~" if inner.strip() else inner


_PLAIN = Renderer()


def to_plain(markdown: str) -> str:
    """The reply's words without markup: what a chat shows when it refuses formatting."""
    return _PLAIN.render(markdown)
