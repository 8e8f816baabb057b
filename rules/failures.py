"""What went wrong with a run, in one word, and what the person in the chat is told.

An agent's error text comes from the Claude CLI, the gateway or the
container runner. `classify` sorts it into a kind that decides two things:
whether another attempt can help (a refused key cannot; an overloaded API
can), and the plain sentence the chat gets. Notices are short and name no
secret; the main group's also say what to do.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["credentials", "rate_limit", "api_error", "timeout", "container", "stale_session", "storage",
               "internal"]


def _status(codes: str) -> str:
    """An HTTP status only where the text calls it one ("API Error: 401", "API Error: Request rejected (429)",
    "status 429", "HTTP 503"): a number in a file name or a line the agent mentions must not decide the kind."""
    return (rf"(?:api error|status(?: code)?|http(?:/[\d.]+)?)[:= ]*(?:{codes})\b"
            rf"|api error:?[^\n(]{{0,60}}\((?:{codes})\)")


# Checked in this order: the first pattern found in the error text decides.
_PATTERNS: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("storage", re.compile(r"could not be recorded|database or disk is full|disk i/o error", re.I)),
    ("stale_session", re.compile(r"no conversation found|ENOENT[^\n]*/\.claude/[^\n]*\.jsonl|"
                                 r"\bsession (?:id:? )?(?:[0-9a-f]{8}-[0-9a-f-]{27} )?not found", re.I)),
    ("credentials", re.compile(_status("401") + r"|authentication_error|failed to authenticate|invalid api key|"
                               r"not logged in|no claude credentials|permission_error|" + _status("403"), re.I)),
    ("rate_limit", re.compile(_status("429|529") + r"|rate.?limit|overloaded", re.I)),
    ("api_error", re.compile(_status(r"5\d\d") + r"|api_error|api error|model api .* failed|connection error", re.I)),
    ("container", re.compile(r"container (spawn error|exited with code)|image .* not found|workspace not prepared",
                             re.I)),
)
NOT_RETRIED: frozenset[Kind] = frozenset({"credentials"})

_REASONS: dict[Kind, str] = {
    "credentials": "the model's API refused the assistant's credentials",
    "rate_limit": "the model's API is busy or rate-limited",
    "api_error": "the model's API failed",
    "timeout": "the assistant took too long",
    "container": "the assistant's container failed",
    "stale_session": "the saved conversation could not be resumed",
    "storage": "its answer could not be saved on the host",
    "internal": "the assistant hit an error",
}
_WHAT_TO_DO: dict[Kind, str] = {
    "credentials": "set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in .env (or log in with 'claude') and "
                   "restart the service; 'nanoclaw doctor' checks it",
    "rate_limit": "nothing to do unless it lasts; 'nanoclaw status' shows the failures",
    "api_error": "nothing to do unless it lasts; 'nanoclaw status' shows the failures",
    "timeout": "a group's timeout can be raised with 'nanoclaw groups set FOLDER --timeout SECONDS'",
    "container": "'nanoclaw doctor' checks the runtime and the agent image",
    "stale_session": "nothing: it starts a new conversation",
    "storage": "free disk space where the install's store/ folder is ('df -h'); nothing was lost",
    "internal": "the run log under logs/runs/ has the details",
}


def classify(error: str | None, *, timed_out: bool = False) -> Kind:
    if timed_out:
        return "timeout"
    text = error or ""
    return next((kind for kind, pattern in _PATTERNS if pattern.search(text)), "internal")


def retryable(kind: Kind) -> bool:
    return kind not in NOT_RETRIED


def notice(kind: Kind, *, final: bool, retry_in_s: float | None = None, for_main: bool = False,
           folder: str | None = None) -> str:
    """The chat's sentence for a failed attempt (`final`: no more attempts will follow)."""
    where = f"In {folder}: " if folder else ""
    if final:
        text = f"{where}I could not answer: {_REASONS[kind]}. Your message is kept; send it again later."
    else:
        wait = f" in {retry_in_s:.0f} s" if retry_in_s is not None else ""
        text = f"{where}I could not answer yet: {_REASONS[kind]}. I will try again{wait}."
    if for_main:
        text += f" What to do: {_WHAT_TO_DO[kind]}."
    return text
