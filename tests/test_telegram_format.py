"""Telegram replies: cut into parts Telegram accepts, Markdown shown as HTML it can parse."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from router.channels.telegram_format import MAX_MESSAGE_UNITS, split_message, to_telegram_html, utf16_len
from tests.telegram_stub_api import visible_text

WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                min_size=1, max_size=30)
TEXTS = st.lists(st.tuples(WORDS, st.sampled_from([" ", " ", " ", "\n", "\n\n"])), max_size=400).map(
    lambda pairs: "".join(word + sep for word, sep in pairs))


def words_of(text: str) -> list[str]:
    return text.split()


def test_a_short_reply_is_one_part():
    assert split_message("Hello there.") == ["Hello there."]


def test_a_long_reply_is_cut_at_paragraphs_first():
    first, second = "a" * 3000, "b " * 1000
    parts = split_message(f"{first}\n\n{second}")
    assert parts == [first, second.strip()]


def test_without_paragraphs_it_cuts_at_lines_then_words():
    lines = "\n".join("line %04d " % n + "x" * 40 for n in range(200))
    parts = split_message(lines)
    assert all(utf16_len(p) <= MAX_MESSAGE_UNITS for p in parts)
    assert [line for p in parts for line in p.split("\n")] == lines.split("\n")
    prose = " ".join(f"word{n}" for n in range(2000))
    parts = split_message(prose)
    assert len(parts) > 1 and words_of(" ".join(parts)) == words_of(prose)


def test_a_word_longer_than_a_message_is_cut_where_it_must_be():
    parts = split_message("x" * 9000)
    assert [len(p) for p in parts] == [4096, 4096, 808]


def test_length_is_counted_as_telegram_counts_it_in_utf16_units():
    parts = split_message("😀" * 3000)  # 2 units each
    assert [utf16_len(p) for p in parts] == [4096, 1904]


def test_a_code_block_cut_in_two_is_closed_and_reopened():
    code = "\n".join(f"print({n})" for n in range(800))
    parts = split_message(f"Here:\n```python\n{code}\n```\nDone.")
    assert len(parts) >= 2
    for part in parts:
        assert part.count("```") % 2 == 0, part[:80]
        assert utf16_len(part) <= MAX_MESSAGE_UNITS
    assert parts[1].startswith("```python\n")
    body = [line for p in parts for line in p.split("\n") if line.startswith("print(")]
    assert body == code.split("\n")


def test_a_code_block_that_fits_in_a_part_is_never_cut():
    prose = "words " * 600
    code = "```sh\n" + "\n".join(f"echo {n}" for n in range(300)) + "\n```"
    parts = split_message(f"{prose}\n\n{code}\n\nafter")
    assert any(part.startswith(code) for part in parts)
    assert all(part.count("```") % 2 == 0 for part in parts)


@settings(max_examples=60, deadline=None)
@given(TEXTS)
def test_parts_fit_keep_every_word_in_order_and_never_cut_a_word(text):
    parts = split_message(text)
    assert all(0 < utf16_len(p) <= MAX_MESSAGE_UNITS for p in parts)
    assert words_of(" ".join(parts)) == words_of(text)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab*_`~[]()#>-+ \n<&\"'.:/", max_size=300))
def test_any_markdown_becomes_html_telegram_can_parse(markdown):
    visible_text(to_telegram_html(markdown))  # raises where Telegram would refuse it


@pytest.mark.parametrize(("markdown", "html"), [
    ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
    ("*it* and _it_ but snake_case_name", "<i>it</i> and <i>it</i> but snake_case_name"),
    ("`a < b` & c > d", "<code>a &lt; b</code> &amp; c &gt; d"),
    ("[docs](https://x.org/?a=1&b=2)", '<a href="https://x.org/?a=1&amp;b=2">docs</a>'),
    ("[no](javascript:alert)", "[no](javascript:alert)"),
    ("~~old~~", "<s>old</s>"),
    ("## Plan", "<b>Plan</b>"),
    ("- one\n- two\n  - nested\n\n3. three\n4. four", "• one\n• two\n  • nested\n\n3. three\n4. four"),
    ("<b>raw</b> & ![chart](https://e.x/c.png)", '&lt;b&gt;raw&lt;/b&gt; &amp; <a href="https://e.x/c.png">chart</a>'),
    ("| a | b |\n|---|---|\n| 1 | <2> |", "<pre>a | b\n1 | &lt;2&gt;</pre>"),
    ("one\nline each\n\n---\nafter", "one\nline each\n\n———\n\nafter"),
    ("> said **this**\n> and that", "<blockquote>said <b>this</b>\nand that</blockquote>"),
    ("```sh\nls *.py\n```", '<pre><code class="language-sh">ls *.py</code></pre>'),
    ("```\n<tag>\n```", "<pre>&lt;tag&gt;</pre>"),
])
def test_markdown_as_telegram_html(markdown, html):
    assert to_telegram_html(markdown) == html


def test_what_telegram_shows_is_never_longer_than_the_part():
    text = "**Title**\n" + "\n".join(f"- item `{n}` & [l](https://e.x/{n})" for n in range(300))
    for part in split_message(text):
        assert utf16_len(visible_text(to_telegram_html(part))) <= utf16_len(part)
        assert not re.search(r"\*\*|`", visible_text(to_telegram_html(part)))
