"""The container runner with real containers of the test image and the scripted provider."""

from __future__ import annotations

import json
import os
import threading
import time

import docker
import pytest

from base.config import load_settings
from jobs.containers import ContainerRunner, RunResult, RunSpec
from jobs.contract import AgentInput
from jobs.runtime import remove_orphans
from rules.groups import ensure_group_files

pytestmark = pytest.mark.docker
SECRET = "sk-ant-test-SECRET-1234567890"


@pytest.fixture
def make_settings(root, agent_image, monkeypatch):
    made = []

    def make(**env):
        monkeypatch.setenv("CONTAINER_IMAGE", agent_image)
        monkeypatch.setenv("CONTAINER_NETWORK", "none")
        monkeypatch.setenv("IDLE_TIMEOUT", "1000")  # an agent waiting for follow-ups is closed after 1 s
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings()
        settings.ensure_dirs()
        made.append(settings)
        return settings

    yield make
    for settings in made:
        remove_orphans(settings)  # whatever a failed test left running


class Run:
    """One container run in a background thread, with what it reported."""

    def __init__(self, settings, *, folder="family", is_main=False, prompt="hello", scripted=None,
                 on_output=None, **spec):
        ensure_group_files(settings, folder, is_main=is_main)
        self.settings = settings
        self.outputs: list[tuple[float, object]] = []
        self.started = threading.Event()
        self.name: str | None = None
        self.result: RunResult | None = None
        agent_input = AgentInput(prompt=prompt, groupFolder=folder, chatJid=f"local:{folder}", isMain=is_main,
                                 assistantName="Andy", provider="scripted", scripted=scripted,
                                 timezone="UTC")
        self.spec = RunSpec(folder=folder, group_name=folder.title(), is_main=is_main, input=agent_input,
                            run_id="run-1", **spec)
        self._extra = on_output
        self.runner = ContainerRunner(settings)
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._go)
        self.thread.start()

    def _go(self):
        def on_output(result):
            self.outputs.append((time.monotonic() - self.t0, result))
            if self._extra:
                self._extra(result)

        def on_started(name):
            self.name = name
            self.started.set()

        self.result = self.runner.run(self.spec, on_output, on_started)
        self.started.set()

    def wait(self, timeout=120) -> RunResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        return self.result

    def texts(self) -> list:
        return [r.result for _, r in self.outputs]

    def container(self):
        assert self.started.wait(60) and self.name
        return docker.from_env().containers.get(self.name)

    def sh(self, command: str) -> tuple[int, str]:
        code, out = self.container().exec_run(["sh", "-c", command])
        return code, out.decode()


def drop_input(settings, folder: str, text: str, name: str) -> None:
    directory = settings.ipc_dir / folder / "input"
    temp = directory / f"{name}.json.tmp"
    temp.write_text(json.dumps({"type": "message", "text": text}))
    os.chmod(temp, 0o666)
    os.replace(temp, directory / f"{name}.json")


def test_without_a_script_the_agent_replies_with_its_prompt_verbatim(make_settings):
    run = Run(make_settings(), prompt='<messages>\n<message sender="A">hi &amp; bye</message>\n</messages>')
    result = run.wait()
    assert result.status == "success" and result.exit_code == 0
    assert run.texts()[0] == '<messages>\n<message sender="A">hi &amp; bye</message>\n</messages>'


def test_results_stream_back_while_the_container_runs(make_settings):
    script = {"turns": [[{"reply": "one"}, {"sleep": 1.0}, {"reply": "two"}]], "default": "silent"}
    run = Run(make_settings(IDLE_TIMEOUT=1000), scripted=script)
    run.wait()
    (t1, first), (t2, second) = run.outputs[:2]
    assert (first.result, second.result) == ("one", "two")
    assert t2 - t1 >= 0.8  # the first arrived before the second was printed


def test_garbage_outside_markers_is_ignored_and_a_megabyte_result_arrives_whole(make_settings):
    script = {"turns": [[{"stdout": "not a marker\n---NANOCLAW_OUTPUT_ half"}, {"reply_size": 1 << 20}]],
              "default": "silent"}
    run = Run(make_settings(IDLE_TIMEOUT=1000), scripted=script)
    assert run.wait().status == "success"
    assert len(run.texts()[0]) == 1 << 20


def test_follow_ups_are_piped_in_and_close_ends_the_run(make_settings):
    settings = make_settings(IDLE_TIMEOUT=60_000)
    seen = threading.Event()
    run = Run(settings, prompt="first", on_output=lambda r: seen.set())
    assert seen.wait(60)
    seen.clear()
    drop_input(settings, "family", "second", "1000-a")
    assert seen.wait(30)
    seen.clear()
    drop_input(settings, "family", "third", "1001-b")
    assert seen.wait(30)
    (settings.ipc_dir / "family" / "input" / "_close").touch()
    result = run.wait()
    assert result.status == "success" and result.exit_code == 0
    assert run.texts() == ["first", "second", "third"]


def test_an_idle_agent_is_closed_after_the_idle_timeout(make_settings):
    run = Run(make_settings(IDLE_TIMEOUT=1000))
    result = run.wait()
    assert result.status == "success" and not result.timed_out
    assert 1.0 <= result.duration_ms / 1000 < 30


def test_no_output_before_the_hard_timeout_is_an_error_quoting_the_configured_value(make_settings):
    script = {"turns": [[{"sleep": 120}]]}
    run = Run(make_settings(IDLE_TIMEOUT=1000, CONTAINER_TIMEOUT=1000), scripted=script)
    result = run.wait(timeout=90)
    assert result.status == "error" and result.timed_out
    assert result.error == "Container timed out after 1000ms"
    assert 31 <= result.duration_ms / 1000 < 45  # max(1 s, idle 1 s + 30 s)


def test_a_hard_timeout_after_output_counts_as_idle_reaping(make_settings):
    script = {"turns": [[{"reply": "done"}, {"sleep": 120}]]}
    run = Run(make_settings(IDLE_TIMEOUT=1000, CONTAINER_TIMEOUT=1000), scripted=script)
    result = run.wait(timeout=90)
    assert (result.status, result.timed_out, run.texts()) == ("success", True, ["done"])


def test_a_crash_is_reported_with_the_tail_of_stderr(make_settings):
    script = {"turns": [[{"stderr": "something broke badly"}, {"crash": 3}]]}
    result = Run(make_settings(), scripted=script).wait()
    assert result.status == "error" and result.exit_code == 3
    assert result.error.startswith("Container exited with code 3: ")
    assert "something broke badly" in result.error


def test_a_failing_output_callback_does_not_stall_the_run(make_settings):
    def explode(_):
        raise RuntimeError("the channel is down")

    script = {"turns": [[{"reply": "a"}, {"reply": "b"}]], "default": "silent"}
    run = Run(make_settings(IDLE_TIMEOUT=1000), scripted=script, on_output=explode)
    assert run.wait().status == "success"
    assert run.texts()[:2] == ["a", "b"]


def test_main_runs_as_uid_1000_with_the_project_read_only_and_env_empty(make_settings):
    settings = make_settings()
    (settings.root / ".env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
    run = Run(settings, folder="main", is_main=True, scripted={"turns": [[{"sleep": 20}]]})
    try:
        assert run.sh("id -u")[1].strip() == "1000"
        assert run.sh("touch /workspace/project/x")[0] != 0
        assert run.sh("touch /workspace/project/store/x")[0] != 0
        for private in ("data", "store", "logs"):  # other chats, the event log, run logs: all out of sight
            assert run.sh(f"ls -A /workspace/project/{private}") == (0, "")
        assert run.sh("touch /workspace/group/notes.md")[0] == 0
        assert run.sh("cat /workspace/project/.env") == (0, "")
        assert run.sh("ls /workspace/project/groups/main")[0] == 0
        assert run.sh("touch /workspace/global/x")[0] == 0
    finally:
        (settings.ipc_dir / "main" / "input" / "_close").touch()
        run.container().kill()
        run.wait()
    assert (settings.groups_dir / "main" / "notes.md").exists()


def test_a_non_main_agent_sees_only_its_own_folder_and_global_read_only(make_settings):
    settings = make_settings()
    ensure_group_files(settings, "other", is_main=False)
    run = Run(settings, folder="family", scripted={"turns": [[{"sleep": 20}]]})
    try:
        assert run.sh("ls /workspace")[1].split() == ["extra", "global", "group", "ipc"]
        assert run.sh("test -e /workspace/project")[0] != 0
        assert run.sh("ls /workspace/group")[1].split() == ["CLAUDE.md"]
        assert run.sh("ls /workspace/ipc")[1].split() == ["input", "messages", "snapshots", "tasks"]
        assert run.sh("touch /workspace/global/x")[0] != 0
        assert run.sh("cat /workspace/global/CLAUDE.md")[0] == 0
    finally:
        run.container().kill()
        run.wait()


def test_no_real_credential_enters_the_container_only_the_runs_gateway_token(make_settings):
    settings = make_settings(LOG_LEVEL="debug", ANTHROPIC_API_KEY=SECRET)
    run = Run(settings, scripted={"turns": [[{"sleep": 20}]]})
    try:
        attrs = run.container().attrs
        assert SECRET not in json.dumps(attrs)
        assert run.sh("cat /proc/1/environ /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")[1].count(SECRET) == 0
        assert run.sh(f"grep -rl {SECRET} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null")[1] == ""
        assert attrs["HostConfig"]["NetworkMode"] == "none"
        gateway = [m for m in attrs["Mounts"] if m["Destination"] == "/run/nanoclaw"]
        assert len(gateway) == 1 and gateway[0]["RW"] is False
        assert "HTTPS_PROXY=http://127.0.0.1:3128" in attrs["Config"]["Env"]
        [token] = [access.token for access in run.runner.gateway.open_runs()]
    finally:
        run.container().kill()
        result = run.wait()
    log = open(result.log_file).read()
    assert SECRET not in log and '"token": "' in log and token not in log  # verbose log, masked


def test_each_run_writes_its_log_file(make_settings):
    settings = make_settings(IDLE_TIMEOUT=1000)
    result = Run(settings).wait()
    assert os.path.dirname(result.log_file) == str(settings.logs_dir / "runs" / "family")
    text = open(result.log_file).read()
    assert os.path.basename(result.log_file).startswith("container-") and text.startswith("=== Container Run Log ===")
    assert "Exit Code: 0" in text and "=== Input Summary ===" in text and "Prompt length: 5 chars" in text


def test_containers_are_named_and_labelled_for_this_install(make_settings):
    settings = make_settings()
    run = Run(settings, folder="my_group", scripted={"turns": [[{"sleep": 20}]]})
    try:
        container = run.container()
        assert container.name.startswith("nanoclaw-my-group-")
        assert container.labels["nanoclaw.install"] == str(settings.root)
        assert container.labels["nanoclaw.group"] == "my_group"
    finally:
        run.container().kill()
        run.wait()
    assert docker.from_env().containers.list(all=True, filters={"name": run.name}) == []


def test_a_missing_image_is_a_clear_spawn_error(make_settings):
    settings = make_settings(CONTAINER_IMAGE="nanoclaw-agent:does-not-exist")
    result = Run(settings).wait()
    assert result.status == "error"
    assert result.error == ("Container spawn error: image nanoclaw-agent:does-not-exist not found: "
                            "build it with 'nanoclaw image build'")


def test_orphan_cleanup_removes_only_this_installs_containers(make_settings):
    settings = make_settings()
    engine = docker.from_env()
    ours = engine.containers.create("nanoclaw-base:bookworm", ["sleep", "60"], name=f"nanoclaw-x-{time.time_ns()}",
                                    labels={"nanoclaw.install": str(settings.root)}, network_mode="none")
    theirs = engine.containers.create("nanoclaw-base:bookworm", ["sleep", "60"],
                                      name=f"nanoclaw-other-{time.time_ns()}",
                                      labels={"nanoclaw.install": "/somewhere/else"}, network_mode="none")
    lookalike = engine.containers.create("nanoclaw-base:bookworm", ["sleep", "60"],
                                         name=f"x-nanoclaw-{time.time_ns()}", network_mode="none")
    try:
        ours.start()
        assert remove_orphans(settings) == [ours.name]
        remaining = {c.name for c in engine.containers.list(all=True)}
        assert ours.name not in remaining and {theirs.name, lookalike.name} <= remaining
    finally:
        for container in (theirs, lookalike):
            container.remove(force=True)


def test_a_docker_network_for_agents_is_warned_about_once_as_the_unsafe_opt_out(make_settings):
    from loguru import logger

    settings = make_settings(CONTAINER_NETWORK="bridge")
    runner = ContainerRunner(settings)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        spec = RunSpec(folder="family", group_name="Family", is_main=False, run_id="net-1",
                       input=AgentInput(prompt="p", groupFolder="family", chatJid="local:family", isMain=False,
                                        assistantName="Andy"))
        assert runner.network(spec) == runner.network(spec) == "bridge"
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and "unsafe opt-out" in lines[0] and "past the egress policy" in lines[0]


def test_the_run_log_of_a_failed_turn_keeps_stdout_and_stderr_even_when_the_container_exits_0(make_settings):
    settings = make_settings(IDLE_TIMEOUT=1000)
    result = Run(settings, scripted={"turns": [[{"stderr": "the CLI said why"}, {"error": "turn failed"}]]}).wait()
    assert (result.status, result.exit_code, result.error_outputs) == ("success", 0, 1)
    text = open(result.log_file).read()
    assert "=== Stderr ===" in text and "the CLI said why" in text and "turn failed" in text
