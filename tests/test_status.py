"""`nanoclaw status`: the service from its heartbeat, groups, containers, queue, tasks and errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import docker
import msgspec
import pytest
from huey import SqliteHuey

from base.timefmt import iso_now
from events import types as t
from nanoclaw import cli, status
from nanoclaw.cli_status import render
from router.heartbeat import ServiceBeat, status_path, write_beat
from rules.groups import register_group
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker

NO_DOCKER = "unix:///nonexistent/docker.sock"


def message(jid: str, n: int) -> t.MessageReceived:
    return t.MessageReceived(chat_jid=jid, message_id=f"m{n}", sender="me", sender_name="Me", content=f"hello {n}",
                             timestamp=iso_now())


def start_run(log, folder: str, jid: str, run_id: str) -> None:
    log.append(t.AgentRunStarted(run_id=run_id, folder=folder, chat_jid=jid, container=f"nanoclaw-{folder}-1"))


@pytest.fixture
def groups(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="local:fam", name="Family", folder="family")
    register_group(log, settings, jid="local:quiet", name="Quiet", folder="quiet")
    return log


@pytest.fixture
def labelled_container(settings, agent_image):
    """Start a sleeping container of the agent image carrying this install's labels."""
    engine = docker.from_env()
    started = []

    def start(folder: str, run_id: str):
        container = engine.containers.run(
            agent_image, entrypoint=["sleep", "300"], detach=True, network_mode="none",
            name=f"nanoclaw-{folder}-{time.monotonic_ns()}",
            labels={"nanoclaw.install": str(settings.root), "nanoclaw.group": folder, "nanoclaw.run": run_id})
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove(force=True)
    engine.close()


def test_without_a_service_status_says_down_and_why(settings):
    report = status.gather(settings)
    assert report.service.state == "down" and "not running" in report.service.detail
    assert report.docker.reachable and report.groups == [] and report.containers == [] and report.errors == []


def test_a_status_file_left_by_a_killed_service_reads_as_down_with_when_it_was_last_seen(settings):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_beat(status_path(settings), ServiceBeat(pid=gone.pid, started_at=iso_now(), updated_at="2026-01-02T03:04:05.000Z",
                                                  state="live", root=str(settings.root), channels=["local"]))
    info = status.service_info(settings)
    assert info.state == "down" and f"pid {gone.pid} is gone" in info.detail and "2026-01-02T03:04:05.000Z" in info.detail
    assert info.channels == []


def test_a_live_service_that_stopped_beating_is_unresponsive(settings):
    stuck = subprocess.Popen([sys.executable, "-c", "import time; print(1, flush=True); time.sleep(60)", "nanoclaw"],
                             stdout=subprocess.PIPE)
    try:
        stuck.stdout.readline()  # past its exec: /proc shows its own command line
        write_beat(status_path(settings), ServiceBeat(pid=stuck.pid, started_at=iso_now(), state="live",
                                                      updated_at="2026-01-02T03:04:05.000Z", root=str(settings.root)))
        info = status.service_info(settings)
        assert info.state == "unresponsive" and "wrote no heartbeat" in info.detail
    finally:
        stuck.kill()
        stuck.wait()


def test_a_running_service_reports_its_pid_channels_and_worker_and_clears_the_file_on_stop(settings, groups,
                                                                                           monkeypatch):
    monkeypatch.setenv("AGENT_PROVIDER", "scripted")
    service = RouterProcess(settings, worker=True).wait_ready()
    try:
        info = status.service_info(settings)
        deadline = time.monotonic() + 30
        while info.worker_pid is None and time.monotonic() < deadline:  # the next beat names the worker
            time.sleep(0.2)
            info = status.service_info(settings)
        assert (info.state, info.pid, info.channels) == ("up", service.proc.pid, ["local"])
        with open(f"/proc/{info.worker_pid}/status") as proc_status:
            assert f"PPid:\t{service.proc.pid}" in proc_status.read()
    finally:
        assert service.stop(timeout=60) == 0
    assert not status_path(settings).exists()
    assert status.service_info(settings).state == "down"


def test_groups_are_listed_most_recently_active_first_with_their_newest_event(settings, groups):
    groups.append(message("local:fam", 1), key="m1")
    start_run(groups, "main", "local:me", "run-1")
    listed = status.groups_info(groups)
    assert [(g.folder, g.last_activity) for g in listed[:2]] == [("main", "AgentRunStarted"),
                                                               ("family", "MessageReceived")]
    quiet = listed[2]
    assert quiet.folder == "quiet" and quiet.last_activity == "GroupRegistered" and not quiet.is_main


def test_a_container_is_busy_until_it_answers_then_idle_until_input_is_piped(settings, groups, labelled_container):
    start_run(groups, "main", "local:me", "run-1")
    labelled_container("main", "run-1")
    docker_info, listed = status.docker_containers(settings)
    busy = status.containers_info(groups, listed, time.time())
    assert docker_info.reachable and [(c.folder, c.state, c.docker_state) for c in busy] == [("main", "busy", "running")]
    assert busy[0].age_s is not None and busy[0].age_s >= 0
    groups.append(t.AgentOutput(run_id="run-1", folder="main", index=0, status="success", result="hi"))
    idle = status.containers_info(groups, status.docker_containers(settings)[1], time.time())
    assert idle[0].state == "idle" and idle[0].idle_since is not None
    groups.append(t.MessagesPiped(run_id="run-1", folder="main", chat_jid="local:me", through_seq=9,
                                  message_count=1, file="x.json"))
    assert status.containers_info(groups, status.docker_containers(settings)[1], time.time())[0].state == "busy"


def test_a_labelled_container_without_a_running_run_is_shown_as_an_orphan(settings, groups, labelled_container):
    labelled_container("family", "run-gone")
    listed = status.containers_info(groups, status.docker_containers(settings)[1], time.time())
    assert [(c.folder, c.run_id, c.state) for c in listed] == [("family", "run-gone", "orphan")]


def test_with_docker_down_status_still_shows_runs_from_the_log_and_says_docker_is_down(settings, groups, monkeypatch,
                                                                                      capsys):
    start_run(groups, "family", "local:fam", "run-2")
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    report = status.gather(settings)
    assert not report.docker.reachable and "not reachable" in report.docker.detail
    assert [(c.folder, c.state, c.docker_state) for c in report.containers] == [("family", "busy", None)]
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "docker      DOWN: not reachable" in out and "from the log only: Docker is down" in out


def test_queue_depth_counts_waiting_and_scheduled_jobs_in_the_huey_file(settings):
    from jobs.queue import JobQueue

    assert status.QUEUE_NAME == JobQueue(settings).huey.name
    assert status.queue_info(settings) == status.QueueInfo(pending=0, scheduled=0)
    queue = SqliteHuey(status.QUEUE_NAME, filename=str(settings.queue_path), results=False)
    job = queue.task()(lambda: None)
    job()
    job()
    queue.add_schedule(job.s(delay=3600))  # what the consumer does with a job whose time has not come
    assert status.queue_info(settings) == status.QueueInfo(pending=2, scheduled=1)


def test_next_tasks_are_the_active_ones_soonest_first(settings, groups):
    for task_id, next_run in (("later", "2030-01-02T00:00:00.000Z"), ("soon", "2030-01-01T00:00:00.000Z"),
                              ("paused", "2029-01-01T00:00:00.000Z")):
        groups.append(t.TaskScheduled(task_id=task_id, group_folder="family", chat_jid="local:fam", prompt="check",
                                      schedule_type="once", schedule_value=next_run, next_run=next_run))
    groups.append(t.TaskPaused(task_id="paused", group_folder="family"))
    assert [(task.id, task.schedule) for task in status.next_tasks(groups)] == [
        ("soon", "once 2030-01-01T00:00:00.000Z"), ("later", "once 2030-01-02T00:00:00.000Z")]


def test_the_last_errors_are_failed_runs_undelivered_replies_and_refused_ipc_newest_first(settings, groups):
    fin = dict(folder="main", chat_jid="local:me")
    groups.append(t.AgentRunFinished(run_id="r1", status="error", error="container exited with code 1", **fin))
    groups.append(t.OutboundFailed(outbound_id="o1", chat_jid="local:me", attempts=5, reason="channel down"))
    groups.append(t.IpcRejected(folder="family", file="x.json", reason="not authorized"))
    for n in range(status.ERROR_PAGE + 5):  # successes beyond one page do not hide older errors
        groups.append(t.AgentRunFinished(run_id=f"ok{n}", status="ok", **fin))
    errors = status.recent_errors(groups)
    assert [(e.type, e.where) for e in errors] == [("IpcRejected", "family"), ("OutboundFailed", "local:me"),
                                                   ("AgentRunFinished", "main")]
    assert "not authorized" in errors[0].message and "error: container exited with code 1" in errors[2].message
    for n in range(7):
        groups.append(t.AgentRunFinished(run_id=f"t{n}", status="timeout", **fin))
    assert len(status.recent_errors(groups)) == status.SHOW_ERRORS


def test_a_path_the_host_refused_to_touch_is_one_of_the_last_errors(settings, groups):
    groups.append(t.HostPathRefused(folder="family", path="/x/groups/family/CLAUDE.md",
                                    operation="hand the file to the agent's user", reason="is a symbolic link"))
    [error] = status.recent_errors(groups)
    assert (error.type, error.where) == ("HostPathRefused", "family")
    assert error.message == "refused to hand the file to the agent's user /x/groups/family/CLAUDE.md: is a symbolic link"


def test_the_screen_and_the_json_carry_the_same_facts(settings, groups, capsys):
    groups.append(message("local:fam", 1), key="m1")
    groups.append(t.AgentRunFinished(run_id="r1", folder="main", chat_jid="local:me", status="timeout",
                                     error="no answer in 1800 s"))
    out = io.StringIO()
    render(status.gather(settings), out)
    screen = out.getvalue()
    for line in ("service     DOWN", "channels    -", "docker      up, Docker", "queue       0 job(s) waiting",
                 "groups      3 registered", "  family ", "(MessageReceived)", "last errors 1", "timeout: no answer",
                 "egress open", "agents      network none (the gateway is their only way out)",
                 "gateway     model API https://api.anthropic.com", f"chat socket {settings.local_chat_socket}",
                 "usage       today ~$0.00 (0 tokens), this month ~$0.00 (0 tokens)"):
        assert line in screen, screen
    assert len(screen.splitlines()) < 25
    assert cli.main(["status", "--json"]) == 0
    data = msgspec.json.decode(capsys.readouterr().out)
    assert list(data) == ["root", "generated_at", "service", "docker", "queue", "groups", "containers", "next_tasks",
                          "errors", "containment", "usage", "channel_notes"]
    assert data["containment"]["network"] == "none" and data["groups"][0]["egress"] == "open"
    assert data["containment"]["chat_socket"] == str(settings.local_chat_socket)
    assert data["errors"][0]["message"] == "timeout: no answer in 1800 s" and len(data["groups"]) == 3
    assert os.path.samefile(data["root"], settings.root)


def test_an_agents_error_output_is_one_of_the_last_errors_while_its_run_still_goes_on(settings, groups):
    groups.append(t.AgentRunStarted(run_id="r1", folder="main", chat_jid="local:me", container="c"))
    groups.append(t.AgentOutput(run_id="r1", folder="main", index=0, status="error", error="API Error: 529"))
    [error] = status.recent_errors(groups)
    assert (error.type, error.where) == ("AgentOutput", "main") and "agent error (run r1): API Error: 529" in error.message
    assert status.recent_errors(groups)[0].seq == groups.last_seq()
