"""Which saved session a run resumes: only one its provider can use.

The Claude CLI names its sessions with UUIDs; the scripted provider with
`scripted-<hex>`. After the owner switches AGENT_PROVIDER (a dry run, then
the real agent), the saved id belongs to the other provider and every resume
would fail. Such an id is cleared once, with a `SessionCleared` saying why,
and the run starts a fresh conversation.
"""

from __future__ import annotations

import uuid

from loguru import logger

from events import Transaction, types as t
from events.queries import session_of

SCRIPTED_PREFIX = "scripted-"


def unusable_reason(provider: str, session_id: str) -> str | None:
    """Why `provider` cannot resume `session_id`, or None when it can."""
    if provider == "scripted":
        return None if session_id.startswith(SCRIPTED_PREFIX) else \
            f"session {session_id} is not the scripted provider's (AGENT_PROVIDER changed to scripted)"
    try:
        uuid.UUID(session_id)
    except ValueError:
        return f"session {session_id} is not a Claude session id (AGENT_PROVIDER changed, or it was damaged)"
    return None


def session_to_resume(tx: Transaction, folder: str, provider: str) -> str | None:
    """The group's saved session if `provider` can resume it; an unusable one is cleared here, once."""
    session_id = session_of(tx, folder)
    if session_id is None:
        return None
    reason = unusable_reason(provider, session_id)
    if reason is None:
        return session_id
    tx.append(t.SessionCleared(folder=folder, reason=reason))
    logger.warning("{}: {}; the next run starts a fresh conversation", folder, reason)
    return None
