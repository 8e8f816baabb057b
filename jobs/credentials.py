"""Which credentials reach an agent container, and from where (SPEC.md difference 8).

`.env` (or the environment) with `CLAUDE_CODE_OAUTH_TOKEN` or
`ANTHROPIC_API_KEY`, else the OAuth token of a local Claude Code login in
`~/.claude/.credentials.json`. Only these, plus `ANTHROPIC_BASE_URL` when
set, go to the container, and only on its stdin.
"""

from __future__ import annotations

import json

from loguru import logger

from nanoclaw.config import Settings, read_dotenv

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


def agent_secrets(settings: Settings) -> dict[str, str]:
    """The credentials for the agent's stdin; empty when none are configured."""
    secrets = {key: value for key in AUTH_KEYS if (value := settings.secret(key))}
    if not secrets and (token := claude_login_token(settings)):
        secrets["CLAUDE_CODE_OAUTH_TOKEN"] = token
    if settings.anthropic_base_url:
        secrets["ANTHROPIC_BASE_URL"] = settings.anthropic_base_url
    return secrets


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
