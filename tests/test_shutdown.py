"""Graceful shutdown of `nanoclaw run`: agents are asked to finish, waited for a bounded time, then stopped.

Shutdown is graceful: SIGTERM or SIGINT sends the close sentinel to running
containers; an agent busy past the grace period has its container stopped, so
none outlives the service, and what it had not answered runs after restart.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from events import types as t
from jobs.worker import SHUTDOWN_TIMEOUT_S
from router.channels.local_client import LocalChatClient
from tests.router_process import RouterProcess
from tests.test_service_e2e import our_containers, replies, service_env, use_script  # noqa: F401

pytestmark = pytest.mark.docker


def _wait_for(log, event_type, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(log.read_since(0, types=[event_type])) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(log.read_since(0, types=[event_type])) >= count, f"no {event_type.__name__} in {timeout} s"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_agent_is_closed_at_shutdown_and_the_service_exits_0(service_env, monkeypatch, signum):
    settings, log = service_env
    monkeypatch.setenv("IDLE_TIMEOUT", "600000")  # it would wait ten minutes for a follow-up
    service = RouterProcess(settings, worker=True).wait_ready()
    client = LocalChatClient(service.socket, "local:me")
    client.send("hello")
    assert len(replies(client, 1)) == 1
    client.close()
    stopped_at = time.monotonic()
    service.proc.send_signal(signum)
    assert service.proc.wait(timeout=60) == 0, service.stderr()
    assert time.monotonic() - stopped_at < SHUTDOWN_TIMEOUT_S  # the sentinel ended it, not the deadline
    assert [r.event.status for r in log.read_since(0, types=[t.AgentRunFinished])] == ["ok"]
    assert our_containers(settings) == []


def test_an_agent_busy_past_the_grace_period_is_stopped_and_its_message_answered_after_restart(
        service_env, monkeypatch):
    settings, log = service_env
    use_script(settings, monkeypatch, {"main": {"turns": [[{"sleep": 300}, {"reply": "too late"}]]}})
    service = RouterProcess(settings, worker=True).wait_ready()
    client = LocalChatClient(service.socket, "local:me")
    client.send("a question that takes forever")
    _wait_for(log, t.AgentRunStarted)
    time.sleep(1)  # the container is up and in its long turn
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 30) == 0, service.stderr()
    client.close()
    assert our_containers(settings) == []  # none outlived the service
    assert log.query("SELECT count(*) FROM outbound")[0][0] == 0

    use_script(settings, monkeypatch, {"main": {"turns": [[{"reply": "answered after the restart"}]]}})
    with RouterProcess(settings, worker=True).wait_ready() as again:
        client = LocalChatClient(again.socket, "local:me")
        answer = replies(client, 1, timeout=90) + replies(client, 1, timeout=3)
        client.close()
        again.stop(timeout=60)
    assert answer == ["answered after the restart"], again.stderr()
    assert our_containers(settings) == []



def test_ctrl_c_reaching_the_worker_does_not_cut_its_busy_agent_off(service_env, monkeypatch):
    """Ctrl-C signals the whole foreground group, worker included; only the service may stop its worker."""
    settings, log = service_env
    use_script(settings, monkeypatch, {"main": {"turns": [[{"sleep": 4}, {"reply": "finished my turn"}]]}})
    service = RouterProcess(settings, worker=True, own_group=True).wait_ready()
    client = LocalChatClient(service.socket, "local:me")
    client.send("think about it")
    _wait_for(log, t.AgentRunStarted)
    time.sleep(1)
    os.kill(service.worker_pid(), signal.SIGINT)  # the terminal's signal, before the service acts on its own
    assert replies(client, 1) == ["finished my turn"]
    os.killpg(service.proc.pid, signal.SIGINT)
    assert service.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 30) == 0, service.stderr()
    client.close()
    assert "worker exited" not in service.stderr()
    assert [(r.event.status, r.event.had_output) for r in log.read_since(0, types=[t.AgentRunFinished])] == [
        ("ok", True)]
    assert our_containers(settings) == []
