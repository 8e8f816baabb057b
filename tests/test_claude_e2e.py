"""End to end with the real Claude CLI: `nanoclaw run`, the local chat, a stand-in Messages API.

The agent container has no network; the CLI reaches the stand-in only
through the worker's credential gateway, which adds the host's key and
records each call in the log.
"""

from __future__ import annotations

import pytest

from events import types as t
from router.groups import register_group
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
