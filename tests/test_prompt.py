"""The prompt's exact shape and the output cleanup."""

from __future__ import annotations

import pytest

from rules.prompt import PromptMessage, clean_output, display_time, escape_xml, format_prompt


def test_two_messages_one_replying_to_the_other_make_the_exact_prompt():
    messages = [
        PromptMessage("Alice", "@Andy is 3 < 4?", "2024-01-01T18:30:00.000Z"),
        PromptMessage("Bob", "agreed", "2024-01-01T18:31:00.000Z", reply_to_message_id="42",
                      reply_to_message_content='see "this"', reply_to_sender_name="Alice"),
    ]
    assert format_prompt(messages, "America/New_York") == (
        '<context timezone="America/New_York" />\n'
        "<messages>\n"
        '<message sender="Alice" time="Jan 1, 2024, 1:30 PM">@Andy is 3 &lt; 4?</message>\n'
        '<message sender="Bob" time="Jan 1, 2024, 1:31 PM" reply_to="42">\n'
        '  <quoted_message from="Alice">see &quot;this&quot;</quoted_message>agreed</message>\n'
        "</messages>"
    )


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("a & b", "a &amp; b"), ("<b>", "&lt;b&gt;"), ('say "hi"', "say &quot;hi&quot;"),
     ("it's", "it's"), ("&lt;", "&amp;lt;"), ("", ""), (None, "")],
)
def test_escaping(text, escaped):
    assert escape_xml(text) == escaped


def test_names_and_the_timezone_are_escaped_too():
    prompt = format_prompt([PromptMessage('A"<&>', "x", "2024-01-01T00:00:00.000Z")], "UTC")
    assert 'sender="A&quot;&lt;&amp;&gt;"' in prompt


@pytest.mark.parametrize(
    ("timestamp", "zone", "shown"),
    [
        ("2024-01-01T00:05:00.000Z", "UTC", "Jan 1, 2024, 12:05 AM"),
        ("2024-07-04T12:00:00.000Z", "UTC", "Jul 4, 2024, 12:00 PM"),
        ("2024-07-04T12:00:00.000Z", "Asia/Tokyo", "Jul 4, 2024, 9:00 PM"),
        ("2024-03-10T06:59:00.000Z", "America/New_York", "Mar 10, 2024, 1:59 AM"),
        ("2024-03-10T07:00:00.000Z", "America/New_York", "Mar 10, 2024, 3:00 AM"),  # DST jump
        ("2024-12-31T23:59:59.999Z", "Pacific/Kiritimati", "Jan 1, 2025, 1:59 PM"),
        ("2024-01-01T00:00:00.000Z", "Not/AZone", "Jan 1, 2024, 12:00 AM"),       # invalid zone: UTC
    ],
)
def test_times_are_shown_in_the_configured_zone(timestamp, zone, shown):
    assert display_time(timestamp, zone) == shown


def test_a_reply_without_quoted_text_has_only_the_attribute():
    prompt = format_prompt([PromptMessage("A", "x", "2024-01-01T00:00:00.000Z", reply_to_message_id="7")], "UTC")
    assert '<message sender="A" time="Jan 1, 2024, 12:00 AM" reply_to="7">x</message>' in prompt
    assert "quoted_message" not in prompt


def test_an_empty_list_gives_two_newlines_between_the_tags():
    assert format_prompt([], "UTC") == '<context timezone="UTC" />\n<messages>\n\n</messages>'


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("<internal>easy</internal>Yes.", "Yes."),
        ("A<internal>x</internal>B<internal>y</internal>C", "ABC"),
        ("<internal>line 1\nline 2</internal>\n  Done  ", "Done"),
        ("<internal>only thoughts</internal>", ""),
        ("   ", ""),
        ("<INTERNAL>kept</INTERNAL>", "<INTERNAL>kept</INTERNAL>"),   # case-sensitive, as in v1
        ("<internal>unclosed", "<internal>unclosed"),
        ("plain", "plain"),
    ],
)
def test_output_cleanup(raw, sent):
    assert clean_output(raw) == sent
