"""Which saved session id each provider can resume (jobs/sessions.py)."""

from __future__ import annotations

import pytest

from events import types as t
from jobs.sessions import session_to_resume, unusable_reason

CLAUDE_ID = "0b3f7c1e-1111-4222-8333-944455556666"


@pytest.mark.parametrize("provider, session, usable", [
    ("claude", CLAUDE_ID, True), ("claude", "scripted-1a2b", False), ("claude", "not-a-uuid", False),
    ("scripted", "scripted-1a2b", True), ("scripted", CLAUDE_ID, False),
])
def test_each_provider_resumes_only_its_own_kind_of_session(provider, session, usable):
    assert (unusable_reason(provider, session) is None) is usable


def test_an_unusable_session_is_cleared_with_its_reason_and_a_usable_one_kept(log):
    log.append(t.SessionUpdated(folder="main", session_id="scripted-1a2b"))
    log.append(t.SessionUpdated(folder="family", session_id=CLAUDE_ID))
    with log.transaction() as tx:
        assert session_to_resume(tx, "main", "claude") is None
        assert session_to_resume(tx, "family", "claude") == CLAUDE_ID
        assert session_to_resume(tx, "nobody", "claude") is None
    [cleared] = [r.event for r in log.read_since(0, types=[t.SessionCleared])]
    assert cleared.folder == "main" and "not a Claude session id" in cleared.reason
    assert [r[0] for r in log.query("SELECT folder FROM sessions")] == ["family"]
