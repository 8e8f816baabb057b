"""`systemctl stop` as the unit's KillMode does it: a busy agent finishes within the grace period.

systemd cannot be PID 1 here, so the test sends the signals `systemctl stop`
sends. With KillMode=mixed (the unit's) SIGTERM goes to the main process
only; `nanoclaw run` then stops its worker, which asks running agents to
finish and waits for them. With KillMode=control-group every process of the
unit gets SIGTERM at once, and the router's own SIGTERM to the worker, sent
once the router has closed its channels, is the worker's second: huey takes
a second graceful signal as "stop now" and cuts the agents off. The last
test shows that, which is why the unit does not use control-group.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from events import types as t
from jobs.worker import SHUTDOWN_TIMEOUT_S
from nanoclaw.systemd_unit import render_unit, unit_paths
from router.channels.local_client import LocalChatClient
from tests.router_process import RouterProcess
from tests.test_service_e2e import our_containers, service_env, use_script  # noqa: F401
from tests.test_systemd_unit import parse_unit

pytestmark = pytest.mark.docker
AGENT_WORK_S = 6  # well inside the worker's grace period


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _stop_as_systemd(service: RouterProcess, kill_mode: str) -> None:
    if kill_mode == "mixed":
        os.kill(service.proc.pid, signal.SIGTERM)
    else:  # control-group: every process at once, and the router closes its channels more slowly
        for pid in _children(service.proc.pid):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "Shutting down gracefully" not in service.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker (sharing the router's stderr) is waiting for its agents
        os.kill(service.proc.pid, signal.SIGTERM)


def _run_and_stop(settings, log, monkeypatch, kill_mode: str) -> list:
    use_script(settings, monkeypatch, {"main": {"turns": [[{"sleep": AGENT_WORK_S}, {"reply": "finished in time"}]]}})
    service = RouterProcess(settings, worker=True, own_group=True).wait_ready()
    client = LocalChatClient(service.socket, "local:me")
    client.send("a question that takes a few seconds")
    deadline = time.monotonic() + 60
    while not log.read_since(0, types=[t.AgentRunStarted]) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # the agent is in its long turn
    _stop_as_systemd(service, kill_mode)
    assert service.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 40) == 0, service.stderr()
    service.wait_group_gone()
    client.close()
    return [r.event for r in log.read_since(0, types=[t.AgentOutput, t.AgentRunFinished])]


def test_the_unit_stops_the_main_process_first_and_kills_the_rest_last(settings):
    assert parse_unit(render_unit(unit_paths(settings)))["Service"]["KillMode"] == ["mixed"]


def test_stopping_as_the_unit_does_lets_a_busy_agent_finish_its_turn(service_env, monkeypatch):
    settings, log = service_env
    events = _run_and_stop(settings, log, monkeypatch, "mixed")
    assert [e.result for e in events if isinstance(e, t.AgentOutput)] == ["finished in time"]
    assert [e.status for e in events if isinstance(e, t.AgentRunFinished)] == ["ok"]
    assert our_containers(settings) == []


def test_sigterm_to_every_process_at_once_cuts_the_busy_agent_off(service_env, monkeypatch):
    """Why not KillMode=control-group: the same stop, signalled to the whole group, loses the grace."""
    settings, log = service_env
    events = _run_and_stop(settings, log, monkeypatch, "control-group")
    assert [e.result for e in events if isinstance(e, t.AgentOutput)] == []
    assert [e.status for e in events if isinstance(e, t.AgentRunFinished)] != ["ok"]
    assert our_containers(settings) == []
