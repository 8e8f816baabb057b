"""What each channel's credentials look like: checked at start-up and by `nanoclaw doctor`, before any call.

A token pasted into the wrong key (the Slack app token as the bot token),
cut short, or set without its partner is found here with a sentence that
says which one to copy again, instead of as a refusal from the platform.
"""

from __future__ import annotations

import re
from typing import Callable

# key -> (the shape it must have, what it is and where it comes from)
SHAPES: dict[str, tuple[str, str]] = {
    "TELEGRAM_BOT_TOKEN": (r"\d+:[\w-]{20,}", "the token @BotFather gave the bot (123456789:AAE...)"),
    "SLACK_BOT_TOKEN": (r"xoxb-[\w-]+", "the Slack app's Bot User OAuth Token (xoxb-...)"),
    "SLACK_APP_TOKEN": (r"xapp-[\w-]+", "the Slack app's App-Level Token (xapp-...)"),
    "DISCORD_BOT_TOKEN": (r"[\w-]+\.[\w-]+\.[\w-]+", "the Discord bot's token (three parts joined by dots)"),
}
TOGETHER = (("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"),)  # set both or neither


def problems(secret: Callable[[str], str | None]) -> list[str]:
    """One sentence per credential that is set but cannot be right, or set without its partner."""
    found = []
    for key, (shape, what) in SHAPES.items():
        value = secret(key)
        if value and not re.fullmatch(shape, value.strip()):
            found.append(f"{key} does not look like {what}; copy it again into .env")
    for keys in TOGETHER:
        unset = [key for key in keys if not secret(key)]
        if unset and len(unset) < len(keys):
            found.append(f"{' and '.join(keys)} are needed together; {', '.join(unset)} is not set in .env")
    return found


def problems_of(keys: tuple[str, ...], secret: Callable[[str], str | None]) -> list[str]:
    """The problems that concern one channel's keys."""
    return [problem for problem in problems(secret) if any(key in problem for key in keys)]
