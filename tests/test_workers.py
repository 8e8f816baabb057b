"""Several workers per install: each knows its own runs, and recovery never reaps a live one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from events import types as t
from jobs.liveness import is_alive, release_worker, sweep, this_worker, workers_dir
from jobs.recovery import reconcile
from router.channels.local_client import LocalChatClient
from rules.groups import register_group
from tests.router_process import RouterProcess
from tests.test_service_e2e import our_containers, replies, use_script

HOLD_LEASE = (
    "import sys, time\n"
    "from base.config import load_settings\n"
    "from jobs.liveness import this_worker\n"
    "print(this_worker(load_settings()), flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def other_worker(settings):
    """A separate process holding a worker lease for this install; yields (process, worker id)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LEASE], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "NANOCLAW_ROOT": str(settings.root)})
    worker_id = proc.stdout.readline().strip()
    yield proc, worker_id
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_worker_is_alive_while_its_process_lives_and_dead_after_kill_9(settings, other_worker):
    proc, worker_id = other_worker
    assert worker_id and is_alive(settings, worker_id)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not is_alive(settings, worker_id)
    assert not (workers_dir(settings) / f"{worker_id}.lock").exists()  # the dead worker's file is tidied


def test_dead_workers_lock_files_are_swept_and_live_ones_kept(settings, other_worker):
    proc, live_id = other_worker
    dead = subprocess.Popen([sys.executable, "-c", HOLD_LEASE], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "NANOCLAW_ROOT": str(settings.root)})
    dead.stdout.readline()  # it holds its lease now
    dead.kill()
    dead.wait(timeout=10)
    assert sweep(settings) == 1
    assert sorted(p.stem for p in workers_dir(settings).glob("*.lock")) == [live_id]


def test_a_released_worker_leaves_no_lock_file(settings):
    worker_id = this_worker(settings)
    release_worker(settings)
    assert not (workers_dir(settings) / f"{worker_id}.lock").exists()
    assert not is_alive(settings, worker_id)


def test_this_process_is_one_worker_with_a_live_identity(settings):
    assert this_worker(settings) == this_worker(settings)
    assert is_alive(settings, this_worker(settings))


def test_unknown_or_malformed_worker_ids_are_not_alive(settings):
    assert not is_alive(settings, None)
    assert not is_alive(settings, "no-such-worker")
    assert not is_alive(settings, "../../etc/passwd")


def _started_run(settings, log, run_id: str, worker: str | None) -> None:
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    seq = log.append(t.MessageReceived(chat_jid="local:me", message_id="m1", sender="me", sender_name="Me",
                                       content="hi", timestamp="2026-11-30T10:00:00.000Z")).seq
    log.append(t.AgentRunStarted(run_id=run_id, folder="main", chat_jid="local:me", container="c",
                                 from_seq=0, through_seq=seq, worker=worker))


def test_recovery_leaves_a_live_workers_run_alone_and_finishes_it_once_that_worker_dies(settings, log,
                                                                                         other_worker):
    proc, worker_id = other_worker
    _started_run(settings, log, "theirs", worker_id)
    assert reconcile(settings, log)["runs_interrupted"] == 0
    assert log.query("SELECT state FROM runs WHERE run_id = 'theirs'")[0][0] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    counts = reconcile(settings, log)
    assert counts["runs_interrupted"] == 1 and counts["runs_requested"] == 1
    finished = log.read_since(0, types=[t.AgentRunFinished])[0].event
    assert (finished.run_id, finished.status, finished.cursor_rollback_to) == ("theirs", "interrupted", 0)


def test_a_run_stamped_by_no_live_worker_is_taken_for_dead(settings, log):
    _started_run(settings, log, "legacy", None)
    assert reconcile(settings, log)["runs_interrupted"] == 1


@pytest.mark.docker
def test_a_second_worker_starting_up_does_not_disturb_the_first_workers_run(settings, log, agent_image,
                                                                            monkeypatch):
    for key, value in dict(CONTAINER_IMAGE=agent_image, CONTAINER_NETWORK="none", AGENT_PROVIDER="scripted",
                           IDLE_TIMEOUT="2000").items():
        monkeypatch.setenv(key, value)
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    use_script(settings, monkeypatch, {"main": {"turns": [[{"sleep": 4}, {"reply": "slow but sure"}]]}})
    workers = []
    with RouterProcess(settings, worker=False).wait_ready() as service:
        client = LocalChatClient(service.socket, "local:me")
        try:
            workers.append(_worker(settings))
            client.send("take your time")
            deadline = time.monotonic() + 60
            while not our_containers(settings) and time.monotonic() < deadline:
                time.sleep(0.05)  # the first worker's agent is up
            containers_before = {c.name for c in our_containers(settings)}
            workers.append(_worker(settings))  # its start-up recovery runs while the first agent works
            time.sleep(2)
            assert containers_before and containers_before <= {c.name for c in our_containers(settings)}
            answer = replies(client, 1) + replies(client, 1, timeout=3)
        finally:
            client.close()
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=60)
    assert answer == ["slow but sure"]
    assert [r.event.status for r in log.read_since(0, types=[t.AgentRunFinished])] == ["ok"]
    started = log.read_since(0, types=[t.AgentRunStarted])[0].event
    assert started.worker.rsplit("-", 2)[1] == str(workers[0].pid)  # the first worker ran it
    assert our_containers(settings) == []


def _worker(settings) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nanoclaw.cli", "worker"], cwd=settings.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_worker_lifts_its_open_file_limit_to_the_hard_limit():
    """Each run's gateway holds descriptors of the worker; a low soft limit would let a few runs starve the rest."""
    import resource
    import subprocess
    import sys

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    code = "from jobs.worker import raise_open_files_limit; print(raise_open_files_limit())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))).stdout
    expected = 65_536 if hard == resource.RLIM_INFINITY else hard
    assert int(out.split()[-1]) == expected > 256
