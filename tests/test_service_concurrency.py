"""The worker under load: the container limit, one container per group, idle agents giving way."""

from __future__ import annotations

import time

import pytest

from events import types as t
from router.channels.local_client import LocalChatClient
from rules.groups import register_group
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker


@pytest.fixture
def env(settings, log, agent_image, monkeypatch):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
                           MAX_CONCURRENT_CONTAINERS="3", IDLE_TIMEOUT="60000").items():
        monkeypatch.setenv(key, value)
    path = settings.root / "scripts.json"
    path.write_text('{"*": {"turns": [[{"sleep": 1.5}, {"reply_prompt": true}]]}}')
    monkeypatch.setenv("SCRIPTED_AGENT_FILE", str(path))
    return settings, log


def overlap(log, per_folder: bool = False) -> int:
    """The largest number of runs alive at once (per folder if asked), from the log's order."""
    alive: dict[str, str] = {}
    most = 0
    for record in log.read_since(0, types=[t.AgentRunStarted, t.AgentRunFinished], limit=None):
        event = record.event
        if isinstance(event, t.AgentRunStarted):
            alive[event.run_id] = event.folder
        else:
            alive.pop(event.run_id, None)
        counts = [list(alive.values()).count(f) for f in set(alive.values())] if per_folder else [len(alive)]
        most = max([most, *counts])
    return most


def test_eight_groups_share_three_slots_and_idle_agents_give_way(env):
    settings, log = env
    for n in range(8):
        register_group(log, settings, jid=f"local:g{n}", name=f"G{n}", folder=f"g{n}", requires_trigger=False)
    service = RouterProcess(settings, worker=True).wait_ready()
    clients = [LocalChatClient(service.socket, f"local:g{n}") for n in range(8)]
    started = time.monotonic()
    try:
        for n, client in enumerate(clients):
            client.send(f"question {n}")
        answered = 0
        deadline = time.monotonic() + 120
        while answered < 8 and time.monotonic() < deadline:
            for client in clients:
                event = client.next_event(0.05)
                answered += bool(event and event.get("op") == "reply")
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
        service.stop(timeout=90)
    assert answered == 8
    assert overlap(log) == 3
    # with 60 s idle timeouts, only preemption lets the last five groups in this quickly
    assert elapsed < 50
    assert "idle agent gives its slot to a waiting group" in service.stderr()


def test_a_flood_to_one_group_never_runs_two_containers_and_every_message_is_handed_over(env):
    settings, log = env
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    service = RouterProcess(settings, worker=True).wait_ready()
    client = LocalChatClient(service.socket, "local:me")
    try:
        last = 0
        for n in range(30):
            last = client.send(f"flood {n}")["seq"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            row = log.query("SELECT seq FROM cursors WHERE chat_jid = 'local:me'")
            if row and row[0][0] >= last:
                break
            time.sleep(0.1)
    finally:
        client.close()
        service.stop(timeout=90)
    assert overlap(log, per_folder=True) == 1
    assert log.query("SELECT seq FROM cursors WHERE chat_jid = 'local:me'")[0][0] == last
    handed = sum(r.event.message_count for r in log.read_since(0, types=[t.AgentRunStarted, t.MessagesPiped],
                                                                limit=None))
    assert handed >= 10  # the window of 10 at least; the rest went by piping or later runs
