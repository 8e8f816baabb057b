"""CONTAINER_RUNTIME=podman: real agent runs through our ContainerRunner on Podman's Docker-compatible API.

Debian's podman (installed and started by scripts/test.sh: ensure_test_tools,
ensure_podman) serves the API on its rootful socket; the agent test image is
copied from Docker into Podman's storage (`docker save | podman load`) when
Podman's copy is missing or older. A Podman that cannot start is a failure
with its error, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound

from base.config import load_settings
from jobs.containers import MEMORY_LIMIT, PIDS_LIMIT, ContainerRunner, RunResult, RunSpec
from jobs.contract import AgentInput
from jobs.image import check_image, image_exists, image_is_stale
from jobs.runtime import PODMAN_ROOTFUL_SOCKET, check_runtime, client, remove_orphans
from rules.groups import ensure_group_files

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[1]
PODMAN_URL = f"unix://{PODMAN_ROOTFUL_SOCKET}"
SECRET = "sk-ant-podman-SECRET-0987654321"


def _podman_answers() -> str | None:
    try:
        engine = docker.DockerClient(base_url=PODMAN_URL, timeout=10)
        try:
            engine.ping()
            return None
        finally:
            engine.close()
    except Exception as exc:  # whatever the reason, it is reported below
        return str(exc)


@pytest.fixture(scope="session")
def podman() -> docker.DockerClient:
    """A client on Podman's socket, starting the service (scripts/lib.sh ensure_podman) if needed."""
    if _podman_answers():
        done = subprocess.run(["bash", "-c", "source scripts/lib.sh && ensure_test_tools && ensure_podman"],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        problem = _podman_answers()
        if problem:
            pytest.fail(f"Podman's API socket {PODMAN_URL} does not answer ({problem}); ensure_podman said:\n"
                        f"{done.stdout}{done.stderr}")
    engine = docker.DockerClient(base_url=PODMAN_URL, timeout=120)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def podman_image(agent_image, podman) -> str:
    """The agent test image in Podman's storage, the same image id as Docker's."""
    wanted = docker.from_env().images.get(agent_image).id
    try:
        present = podman.images.get(agent_image).id
    except ImageNotFound:
        present = None
    if present != wanted:
        save = subprocess.Popen(["docker", "save", agent_image], stdout=subprocess.PIPE)
        load = subprocess.run(["podman", "load"], stdin=save.stdout, capture_output=True, text=True, timeout=600)
        save.stdout.close()
        assert save.wait(timeout=60) == 0 and load.returncode == 0, f"podman load failed: {load.stderr}"
        if present:
            subprocess.run(["podman", "rmi", present], capture_output=True)  # the older copy, if unused
        assert podman.images.get(agent_image).id == wanted
    return agent_image


@pytest.fixture
def podman_settings(root, podman_image, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    for key, value in {"CONTAINER_RUNTIME": "podman", "CONTAINER_IMAGE": podman_image,
                       "CONTAINER_NETWORK": "none", "IDLE_TIMEOUT": "1000"}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    settings.ensure_dirs()
    yield settings
    remove_orphans(settings)


class PodmanRun:
    """One agent run through ContainerRunner in a thread, with what it reported."""

    def __init__(self, settings, *, folder="family", prompt="hello", scripted=None):
        ensure_group_files(settings, folder, is_main=False)
        self.texts: list[str] = []
        self.got_output = threading.Event()
        self.started = threading.Event()
        self.name: str | None = None
        self.result: RunResult | None = None
        agent_input = AgentInput(prompt=prompt, groupFolder=folder, chatJid=f"local:{folder}", isMain=False,
                                 assistantName="Andy", provider="scripted", scripted=scripted, timezone="UTC")
        spec = RunSpec(folder=folder, group_name=folder.title(), is_main=False, input=agent_input, run_id="run-p1")
        self.thread = threading.Thread(target=self._go, args=(ContainerRunner(settings), spec))
        self.thread.start()

    def _go(self, runner, spec):
        def on_output(result):
            self.texts.append(result.result)
            self.got_output.set()

        def on_started(name):
            self.name = name
            self.started.set()

        self.result = runner.run(spec, on_output, on_started)
        self.started.set()

    def wait(self, timeout=120) -> RunResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        return self.result


def test_the_runtime_check_reaches_podman_not_docker(podman_settings, podman):
    assert check_runtime(podman_settings) == podman.version()["Version"]
    components = [c["Name"] for c in podman.version()["Components"]]
    assert "Podman Engine" in components


def test_a_scripted_agent_run_on_podman_replies_and_leaves_no_container(podman_settings, podman):
    run = PodmanRun(podman_settings, prompt="hello from podman")
    result = run.wait()
    assert (result.status, result.exit_code, run.texts) == ("success", 0, ["hello from podman"])
    assert podman.containers.list(all=True, filters={"name": run.name}) == []
    assert Path(result.log_file).read_text().startswith("=== Container Run Log ===")


def test_podman_runs_the_agent_locked_down_as_docker_does(podman_settings, podman):
    podman_settings.secrets["ANTHROPIC_API_KEY"] = SECRET  # the gateway's key: never in the container
    run = PodmanRun(podman_settings, scripted={"turns": [[{"sleep": 30}]]})
    assert run.started.wait(60) and run.name
    container = podman.containers.get(run.name)
    try:
        attrs, host = container.attrs, container.attrs["HostConfig"]
        assert attrs["Config"]["User"] == "1000:1000"
        assert container.labels["nanoclaw.install"] == str(podman_settings.root)
        assert (container.labels["nanoclaw.group"], container.labels["nanoclaw.run"]) == ("family", "run-p1")
        assert (host["NetworkMode"], host["Init"], host["PidsLimit"]) == ("none", True, PIDS_LIMIT)
        assert host["Memory"] == 2 * 1024 ** 3 and MEMORY_LIMIT == "2g"
        assert host["SecurityOpt"] == ["no-new-privileges"]
        mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
        assert mounts["/workspace/group"] == (str(podman_settings.groups_dir / "family"), True)
        assert mounts["/workspace/global"][1] is False
        assert SECRET not in json.dumps(attrs)
        assert _sh(container, "id -u") == "1000"
        assert _sh(container, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status").split() == \
            ["CapEff:", "0000000000000000", "NoNewPrivs:", "1"]
        assert _sh(container, "cat /proc/1/comm") == "podman-init"  # an init reaps the agent's children
        assert _sh(container, "ls /sys/class/net") == "lo"
        assert _sh(container, "ls /run/nanoclaw").split() == ["api.sock", "proxy.sock"]  # the run's gateway
        # through the image's forwarder and the mounted socket to the gateway, which wants the run's token
        assert _sh(container, "curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:3129/v1/messages") \
            == "401"
        assert _sh(container, "curl -s -o /dev/null -w '%{http_code}' --noproxy '' --proxy http://127.0.0.1:3128 "
                              "http://127.0.0.1:9/") == "403"
        assert _sh(container, "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max") == \
            str(PIDS_LIMIT)
        assert _sh(container, "touch /workspace/global/x 2>&1; echo $?").endswith("1")
    finally:
        container.kill()
        run.wait()
    assert podman.containers.list(all=True, filters={"name": run.name}) == []


def _sh(container, command: str) -> str:
    code, out = container.exec_run(["sh", "-c", command])
    return out.decode().strip()


def test_follow_ups_reach_a_podman_agent_and_the_close_sentinel_ends_it(podman_settings):
    settings = podman_settings
    run = PodmanRun(settings, prompt="first", scripted=None)
    assert run.got_output.wait(60)
    run.got_output.clear()
    inbox = settings.ipc_dir / "family" / "input"
    temp = inbox / "1000-a.json.tmp"
    temp.write_text(json.dumps({"type": "message", "text": "second"}))
    temp.chmod(0o666)
    temp.rename(inbox / "1000-a.json")
    assert run.got_output.wait(30)
    (inbox / "_close").touch()
    result = run.wait()
    assert (result.status, result.exit_code, run.texts) == ("success", 0, ["first", "second"])


def test_an_agent_crash_on_podman_reports_its_exit_code_and_stderr(podman_settings):
    script = {"turns": [[{"stderr": "podman agent broke"}, {"crash": 3}]]}
    result = PodmanRun(podman_settings, scripted=script).wait()
    assert (result.status, result.exit_code) == ("error", 3)
    assert "podman agent broke" in result.error


def test_a_missing_image_on_podman_is_a_clear_spawn_error_without_a_pull(podman_settings, monkeypatch):
    monkeypatch.setenv("CONTAINER_IMAGE", "nanoclaw-agent:does-not-exist")
    settings = load_settings()
    started = time.monotonic()
    result = PodmanRun(settings).wait()
    assert result.error == ("Container spawn error: image nanoclaw-agent:does-not-exist not found: "
                            "build it with 'nanoclaw image build'")
    assert time.monotonic() - started < 30


def test_orphans_on_podman_are_found_by_this_installs_label(podman_settings, podman, podman_image):
    def sleeper(name: str, install: str):
        return podman.containers.create(podman_image, ["60"], entrypoint=["sleep"], name=name,
                                        labels={"nanoclaw.install": install}, network_mode="none")

    ours = sleeper(f"nanoclaw-x-{time.time_ns()}", str(podman_settings.root))
    theirs = sleeper(f"nanoclaw-other-{time.time_ns()}", "/somewhere/else")
    try:
        ours.start()
        assert remove_orphans(podman_settings) == [ours.name]
        remaining = {c.name for c in podman.containers.list(all=True)}
        assert ours.name not in remaining and theirs.name in remaining
    finally:
        theirs.remove(force=True)


def test_docker_host_overrides_the_podman_socket(podman_settings, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    engine = client(podman_settings)
    try:
        assert not any("Podman" in c["Name"] for c in engine.version().get("Components", []))
    finally:
        engine.close()


def test_the_image_check_runs_in_podman_when_the_runtime_is_podman(podman_settings, podman, podman_image):
    only_in_podman = "nanoclaw-agent:podman-only"
    podman.images.get(podman_image).tag("nanoclaw-agent", "podman-only")
    try:
        assert image_exists(only_in_podman, podman_settings) and not image_exists(only_in_podman)
        assert not image_is_stale(only_in_podman, settings=podman_settings)
        assert check_image(only_in_podman, podman_settings).startswith(f"{only_in_podman}: runner answered")
        done = subprocess.run([sys.executable, "-m", "nanoclaw.cli", "image", "check", "--tag", only_in_podman],
                              capture_output=True, text=True, env=dict(os.environ), timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        podman.images.remove(only_in_podman)
