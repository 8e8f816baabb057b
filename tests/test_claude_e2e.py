"""End to end with the real Claude CLI: `nanoclaw run`, the local chat, a stand-in Messages API.

The agent container has no network; the CLI reaches the stand-in only
through the worker's credential gateway, which adds the host's key and
records each call in the log.
"""

from __future__ import annotations

import pytest

from events import types as t
from rules.groups import register_group
from tests.agent_stub_api import FINAL_TEXT, TOOL_TEXT, StubAnthropicAPI
from tests.observe import of_type
from tests.test_service_e2e import chatting, replies
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

KEY = "sk-ant-api03-e2e-host-key-0c4d"


def test_a_message_is_answered_by_the_real_cli_through_the_gateway_and_each_call_is_recorded(
        settings, log, agent_image, monkeypatch):
    with StubAnthropicAPI() as api:
        for key, value in dict(CONTAINER_IMAGE=agent_image, AGENT_PROVIDER="claude", ANTHROPIC_BASE_URL=api.url,
                               ANTHROPIC_API_KEY=KEY, IDLE_TIMEOUT="2000").items():
            monkeypatch.setenv(key, value)
        register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
        with chatting(settings) as (_, client):
            client.send("hello, real agent")
            # the stand-in model first calls send_message (through IPC), then answers
            assert sorted(replies(client, 2, timeout=180)) == sorted([TOOL_TEXT, FINAL_TEXT])
        calls = wait_for(lambda: of_type(log, t.ModelCalled), timeout=30, what="ModelCalled events")
        [run] = of_type(log, t.AgentRunStarted)
    assert api.model_requests() and all(r.headers.get("x-api-key") == KEY for r in api.model_requests())
    conversation = [c for c in calls if c.status == 200 and c.streamed]
    assert conversation and all(c.run_id == run.run_id and c.folder == "main" for c in calls)
    assert conversation[0].model == "claude-stand-in" and conversation[0].input_tokens == 10
    assert all(KEY not in (c.error or "") for c in calls)


def test_without_credentials_the_user_is_told_in_seconds_what_to_do_and_nothing_is_retried(
        settings, log, agent_image, monkeypatch):
    """The real CLI meets the gateway's 401: its own retries are bounded, the run ends, and the chat is told."""
    from tests.test_service_e2e import replies as chat_replies

    with StubAnthropicAPI() as api:
        for key, value in dict(CONTAINER_IMAGE=agent_image, AGENT_PROVIDER="claude", ANTHROPIC_BASE_URL=api.url,
                               IDLE_TIMEOUT="600000").items():
            monkeypatch.setenv(key, value)
        for key in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"):
            monkeypatch.delenv(key, raising=False)
        register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
        with chatting(settings) as (_, client):
            client.send("hello?")
            [told] = chat_replies(client, 1, timeout=90)
        [finished] = wait_for(lambda: of_type(log, t.AgentRunFinished), timeout=30, what="the run's end")
    assert told.startswith("I could not answer: the model's API refused the assistant's credentials")
    assert "ANTHROPIC_API_KEY" in told  # the main group is told what to do
    assert finished.error_kind == "credentials" and finished.duration_ms < 60_000  # not the 10 min idle timeout
    assert [r.reason for r in of_type(log, t.AgentRunRequested)] == ["messages"]  # no retry
    assert api.requests == []  # the gateway refused before anything reached the API
