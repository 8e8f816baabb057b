"""The real model credential the credential gateway adds, and where it comes from.

`.env` (or the environment) with `CLAUDE_CODE_OAUTH_TOKEN`,
`ANTHROPIC_API_KEY` or `ANTHROPIC_AUTH_TOKEN`, else the OAuth token of a
local Claude Code login in `~/.claude/.credentials.json`. None of them ever
enters a container: the gateway on the host puts the chosen one on each
model call an agent makes with its run's token (jobs/gateway.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from loguru import logger

from base.config import Settings, read_dotenv

AUTH_KEYS = ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
MISSING_HELP = ("set CLAUDE_CODE_OAUTH_TOKEN=... (from 'claude setup-token') or ANTHROPIC_API_KEY=... in {env}, "
                "or log in with 'claude' on this machine, then restart; AGENT_PROVIDER=scripted runs a dry run "
                "without them")


def claude_login_token(settings: Settings) -> str | None:
    """The access token of `claude login` on this machine, if there is one."""
    path = settings.home / ".claude" / ".credentials.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("cannot read Claude Code credentials at {}: {}", path, exc)
        return None
    token = (data.get("claudeAiOauth") or {}).get("accessToken") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


DEFAULT_API_URL = "https://api.anthropic.com"
OAUTH_BETA = "oauth-2025-04-20"


@dataclass(frozen=True)
class UpstreamAuth:
    """How the gateway authenticates to the model API: the headers one call gets."""

    key: str        # which setting it came from, e.g. ANTHROPIC_API_KEY
    value: str = ""

    def __repr__(self) -> str:  # never the value, even in a traceback
        return f"UpstreamAuth({self.key})"

    def headers(self) -> dict[str, str]:
        """`x-api-key` for an API key; a bearer token otherwise (OAuth also needs its beta flag)."""
        if self.key == "ANTHROPIC_API_KEY":
            return {"x-api-key": self.value}
        return {"authorization": f"Bearer {self.value}"}

    @property
    def is_oauth(self) -> bool:
        return self.key == "CLAUDE_CODE_OAUTH_TOKEN"


def upstream_auth(settings: Settings) -> UpstreamAuth | None:
    """The credential the gateway uses, the first set of AUTH_KEYS, else a `claude` login."""
    for key in AUTH_KEYS:
        if value := settings.secret(key):
            return UpstreamAuth(key, value)
    if token := claude_login_token(settings):
        return UpstreamAuth("CLAUDE_CODE_OAUTH_TOKEN", token)
    return None


def upstream_url(settings: Settings) -> str:
    """The model API the gateway forwards to: ANTHROPIC_BASE_URL, else Anthropic's."""
    return (settings.anthropic_base_url or DEFAULT_API_URL).rstrip("/")


def credentials_source(settings: Settings) -> str | None:
    """Where the agent's credentials come from (a key name and its place), never their value."""
    dotenv = read_dotenv(settings.root / ".env")
    for key in AUTH_KEYS:
        if value := settings.secret(key):
            return f"{key} from {'.env' if dotenv.get(key) == value else 'the environment'}"
    if claude_login_token(settings):
        return f"the Claude Code login in {settings.home / '.claude' / '.credentials.json'}"
    return None


def warn_if_no_credentials(settings: Settings) -> bool:
    """At start-up: one clear warning when agents would run without credentials; True if warned."""
    if settings.agent_provider == "scripted" or credentials_source(settings):
        return False
    logger.warning("no Claude credentials: agents will fail until you {}",
                   MISSING_HELP.format(env=settings.root / ".env"))
    return True
