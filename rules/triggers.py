"""Who may wake the assistant: v1's trigger rules, reproduced exactly.

A trigger is literal text matched case-insensitively at the start of the
trimmed message, followed by a JavaScript-style word boundary, which is
ASCII-only: `@Andyé` triggers, `@Andy_x` does
not. Main groups and groups registered without a trigger answer everything.
"""

from __future__ import annotations

import re
from functools import lru_cache

# The characters JavaScript's String.prototype.trim removes.
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_WORD = "A-Za-z0-9_"


def js_trim(text: str) -> str:
    return text.strip(JS_WHITESPACE)


@lru_cache(maxsize=1024)
def trigger_pattern(trigger: str, default_trigger: str) -> re.Pattern[str]:
    """The compiled pattern for a literal trigger (empty means the default)."""
    literal = js_trim(trigger) or default_trigger
    last_is_word = re.match(f"[{_WORD}]", literal[-1]) is not None
    boundary = f"(?![{_WORD}])" if last_is_word else f"(?=[{_WORD}])"
    return re.compile("^" + re.escape(literal) + boundary, re.IGNORECASE)


def matches_trigger(content: str, trigger: str, default_trigger: str) -> bool:
    """True when the trimmed content starts with the trigger and a word boundary."""
    return trigger_pattern(trigger, default_trigger).search(js_trim(content)) is not None


def needs_trigger(is_main: bool, requires_trigger: bool) -> bool:
    """Main groups and no-trigger groups answer every message."""
    return not is_main and requires_trigger


def may_trigger(
    *,
    content: str,
    is_from_me: bool,
    sender_allowed: bool,
    trigger: str,
    default_trigger: str,
) -> bool:
    """A message triggers when it matches and its sender may trigger."""
    return matches_trigger(content, trigger, default_trigger) and (is_from_me or sender_allowed)
