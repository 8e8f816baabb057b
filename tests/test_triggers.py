"""v1's trigger rules as a table."""

from __future__ import annotations

import pytest

from rules.allowlist import parse
from rules.triggers import js_trim, matches_trigger, may_trigger, needs_trigger

DEFAULT = "@Andy"


@pytest.mark.parametrize(
    ("content", "trigger", "expected"),
    [
        ("@Andy hello", "", True),
        ("@andy hello", "", True),
        ("@ANDY", "", True),
        ("@Andy's idea", "", True),
        ("@Andy, please", "", True),
        ("@Andy-x", "", True),
        ("   @Andy hi  ", "", True),
        ("\ufeff@Andy hi", "", True),          # JS trim removes U+FEFF
        ("\u00a0@Andy hi", "", True),          # and no-break spaces
        ("@Andy\u00e9", "", True),             # é is not an ASCII word char: boundary holds
        ("@Andyé", "", True),
        ("hello @Andy", "", False),
        ("@Andyextra", "", False),
        ("@Andy_x", "", False),
        ("@Andy1", "", False),
        ("", "", False),
        ("@Claw hi", "@Claw", True),
        ("@Andy hi", "@Claw", False),
        ("@claw", "  @Claw  ", True),           # the stored trigger is trimmed too
        ("@C.L.A.U.D.E hi", "@C.L.A.U.D.E", True),
        ("@CXLXAUXDXE hi", "@C.L.A.U.D.E", False),  # metacharacters are literal
        ("(a+b) go", "(a+b)", False),          # ends in a non-word char: needs a word char next
        ("(a+b)go", "(a+b)", True),
        ("aab go", "(a+b)", False),
        ("hey! there", "hey!", False),
        ("hey!there", "hey!", True),
        ("@Andy hi", "   ", True),             # a blank trigger means the default
    ],
)
def test_trigger_matching(content, trigger, expected):
    assert matches_trigger(content, trigger, DEFAULT) is expected


@pytest.mark.parametrize(
    ("is_main", "requires_trigger", "expected"),
    [(True, True, False), (True, False, False), (False, True, True), (False, False, False)],
)
def test_main_and_no_trigger_groups_need_no_trigger(is_main, requires_trigger, expected):
    assert needs_trigger(is_main, requires_trigger) is expected


@pytest.mark.parametrize(
    ("is_from_me", "allowed", "expected"),
    [(False, True, True), (False, False, False), (True, False, True), (True, True, True)],
)
def test_the_sender_must_be_allowed_unless_it_is_from_me(is_from_me, allowed, expected):
    assert may_trigger(content="@Andy hi", is_from_me=is_from_me, sender_allowed=allowed,
                       trigger="@Andy", default_trigger=DEFAULT) is expected


def test_js_trim_keeps_characters_python_would_strip():
    assert js_trim("\x1chi\x1c") == "\x1chi\x1c"  # Python's strip() removes \x1c, JavaScript's trim does not
    assert js_trim("\u3000hi\u2028") == "hi"


ALLOWLIST = """{
  "default": {"allow": "*", "mode": "trigger"},
  "chats": {
    "tg:1": {"allow": ["alice"], "mode": "trigger"},
    "tg:2": {"allow": ["alice"], "mode": "drop"},
    "tg:3": {"allow": [], "mode": "trigger"},
    "tg:4": {"allow": "alice", "mode": "trigger"}
  },
  "logDenied": false
}"""


@pytest.mark.parametrize(
    ("chat", "sender", "may_trigger_", "dropped"),
    [
        ("tg:9", "anyone", True, False),      # default entry
        ("tg:1", "alice", True, False),
        ("tg:1", "bob", False, False),        # trigger mode: stored, cannot trigger
        ("tg:2", "bob", False, True),         # drop mode: not stored at all
        ("tg:2", "alice", True, False),
        ("tg:3", "alice", False, False),      # [] denies everyone
        ("tg:4", "alice", True, False),       # an invalid entry is ignored: the default applies
    ],
)
def test_allowlist_modes(chat, sender, may_trigger_, dropped):
    rules = parse(ALLOWLIST)
    assert rules.may_trigger(chat, sender) is may_trigger_
    assert rules.drops(chat, sender) is dropped
    assert rules.log_denied is False


@pytest.mark.parametrize("text", ["not json", "[]", '{"default": {"allow": 3, "mode": "drop"}}', '{"chats": {}}'])
def test_a_broken_allowlist_fails_open(text):
    rules = parse(text)
    assert rules.may_trigger("tg:1", "x") and not rules.drops("tg:1", "x")
