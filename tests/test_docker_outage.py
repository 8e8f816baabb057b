"""Docker stopped under a running service, then started again: runs fail cleanly, nothing is lost.

The service talks to a private Docker engine (tests/private_dockerd.py), so
stopping it disturbs no one else. While it is down, a run that was in its
container and a run asked for meanwhile both end in `AgentRunFinished`
(error) and are retried with the backoff of jobs/message_run.py (5 s, doubling);
once Docker is back the retries answer every message exactly once, and the
container Docker stopped under the run is reaped by the 60 s pass.
"""

from __future__ import annotations

import json

import pytest

from base.timefmt import parse_iso
from events import types as t
from jobs.message_run import BASE_RETRY_S
from rules.groups import register_group
from tests.observe import of_type
from tests.private_dockerd import PrivateDockerd
from tests.service_audit import audit, our_containers, unanswered
from tests.service_harness import ChatUser, start_service
from tests.waiting import eventually

pytestmark = pytest.mark.docker

ORPHAN_PASS_S = 90  # the 60 s pass, and room for a slow machine


@pytest.fixture(scope="module")
def private_engine(agent_image):
    engine = PrivateDockerd().start()
    try:
        engine.load_image(agent_image)
        yield engine
    finally:
        engine.remove()


@pytest.fixture
def world(settings, log, agent_image, private_engine, monkeypatch):
    if not private_engine.answers():
        private_engine.start()
    script = settings.root / "scripts.json"
    script.write_text(json.dumps({"*": {"turns": [[{"sleep": 2}, {"reply_prompt": True}]]}}))
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
                           IDLE_TIMEOUT="1000", DOCKER_HOST=private_engine.host,
                           SCRIPTED_AGENT_FILE=str(script)).items():
        monkeypatch.setenv(key, value)
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="local:fam", name="Family", folder="family")
    return settings, log, private_engine


def test_docker_stopped_and_started_again_under_the_service_loses_nothing(world):
    settings, log, engine = world
    service = start_service(settings)
    me, fam = ChatUser("local:me").attach(service), ChatUser("local:fam").attach(service)
    me.send("before the outage")
    assert eventually(lambda: of_type(log, t.AgentRunFinished), 60), service.stderr()

    me.send("asked just before Docker stops")
    assert eventually(lambda: len(of_type(log, t.AgentRunStarted)) == 2 and our_containers(settings), 60)
    engine.stop()  # the container under the run dies with the engine
    fam.send("@Andy asked while Docker is down")
    # both runs fail, and the first retries fail too, before Docker comes back
    assert eventually(lambda: sum(f.status == "error" for f in of_type(log, t.AgentRunFinished)) >= 3, 60), \
        service.stderr()
    assert service.proc.poll() is None  # the service itself rides it out
    engine.start()

    sent = {u.jid: u.sent for u in (me, fam)}
    assert eventually(lambda: unanswered(settings, sent) == 0, 120, interval=0.2), service.stderr()
    assert eventually(lambda: not our_containers(settings), ORPHAN_PASS_S, interval=1), service.stderr()
    for user in (me, fam):
        user.collect(0.5)
        user.detach()
    assert service.stop(timeout=90) == 0

    verdict = audit(settings, log, sent)
    assert verdict.ok, "\n".join(verdict.problems) + "\n" + service.stderr()
    assert me.pushed_twice() == [] and fam.pushed_twice() == []
    failures = [f for f in of_type(log, t.AgentRunFinished) if f.status == "error"]
    assert {f.folder for f in failures} == {"main", "family"} and all(not f.had_output for f in failures)
    retries = [r for r in log.read_since(0, types=[t.AgentRunRequested], limit=None) if r.event.reason == "retry"]
    first = next(r for r in retries if r.event.attempt == 1)
    assert abs((parse_iso(first.event.not_before) - parse_iso(first.at)).total_seconds() - BASE_RETRY_S) < 1
    assert any(r.event.attempt == 2 for r in retries)  # the backoff went on while Docker was down


def test_a_private_engine_leaves_the_hosts_docker0_alone(agent_image):
    """dockerd with --bridge=none deletes docker0; the private engine must bring a bridge of its own."""
    import subprocess

    def docker0() -> bool:
        return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0

    had_docker0 = docker0()
    engine = PrivateDockerd().start()
    try:
        assert engine.answers()
    finally:
        engine.remove()
    assert docker0() == had_docker0
    assert subprocess.run(["ip", "link", "show", engine.bridge], capture_output=True).returncode != 0
