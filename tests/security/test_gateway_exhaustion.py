"""An agent trying to take the gateway down, which would stop every group's agent with it.

The gateway runs inside the worker process, so its descriptors, memory and
upstream connections are shared by every run. One real container of the
test image (the scripted agent asleep) floods its own run's model socket as
uid 1000; the worker, here this test process, must stay small and keep
answering other runs; and of the gateway it sees its own two sockets alone,
in a folder it cannot change. Then, on the host side: calls held by other
runs, and a call still in flight when its run ends.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import docker
import pytest

from base.config import load_settings
from jobs.containers import ContainerRunner, RunSpec
from jobs.contract import AgentInput
from jobs.gateway import API_SOCKET, CONTAINER_DIR, MAX_API_CONNECTIONS, Gateway
from jobs.runtime import remove_orphans
from rules.groups import ensure_group_files
from tests.security.model_stand_in import StandIn
from tests.waiting import wait_for

pytestmark = pytest.mark.docker
REAL_KEY = "sk-ant-api03-real-key-of-the-host-91d0"
FLOOD = 2000
recorded: list = []  # what the host-side gateways below record
HELD_BODIES = 20
BODY_BYTES = 30 << 20

# Run inside the container: open many connections to the run's model socket and keep them all.
FLOOD_SCRIPT = f"""
import socket, time
kept = []
for _ in range({FLOOD}):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("{CONTAINER_DIR}/{API_SOCKET}")
    except OSError:
        continue
    kept.append(s)
print(len(kept), flush=True)
time.sleep(600)
"""

# Start many large calls with the run's own token and never finish sending them (to an API slow to read).
HOLD_SCRIPT = f"""
import os, socket, time
head = ("POST /hold HTTP/1.1\\r\\nHost: api\\r\\nx-api-key: " + os.environ["TOKEN"]
        + "\\r\\ncontent-length: {BODY_BYTES + 1024}\\r\\n\\r\\n").encode()
body = b"x" * {BODY_BYTES}
kept = []
for _ in range({HELD_BODIES}):
    s = socket.socket(socket.AF_UNIX)
    s.connect("{CONTAINER_DIR}/{API_SOCKET}")
    s.settimeout(5)
    try:
        s.sendall(head + body)
    except OSError:
        pass
    kept.append(s)
print("sent", flush=True)
time.sleep(600)
"""

# The image has no pkill: end every `python3 -c` but this one (the agent runs as `python3 -m`).
KILL_SCRIPT = """
import os, signal
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if int(pid) != os.getpid() and open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"python3\\0-c"):
            os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
"""


class Box:
    """The module's one run: a sleeping scripted agent, its runner's gateway serving this process."""

    def __init__(self, settings):
        ensure_group_files(settings, "family", is_main=False)
        script = {"turns": [[{"sleep": 300}]], "default": "silent"}
        agent_input = AgentInput(prompt="hi", groupFolder="family", chatJid="local:family", isMain=False,
                                 assistantName="Andy", provider="scripted", scripted=script)
        self.runner = ContainerRunner(settings)
        self.spec = RunSpec(folder="family", group_name="Family", is_main=False, input=agent_input,
                            run_id="run-box", egress="model-only")
        self.names: list[str] = []
        self.thread = threading.Thread(target=self.runner.run, args=(self.spec, lambda r: None, self.names.append),
                                       daemon=True)
        self.thread.start()
        wait_for(lambda: self.names, 60, "the container to start")
        self.container = docker.from_env().containers.get(self.names[0])
        [self.access] = self.runner.gateway.open_runs()

    def start(self, script: str) -> None:
        self.container.exec_run(["python3", "-c", script], user="1000", detach=True,
                                environment={"TOKEN": self.access.token})

    def stop_scripts(self) -> None:
        self.container.exec_run(["python3", "-c", KILL_SCRIPT], user="1000")


@pytest.fixture(scope="module")
def api() -> StandIn:
    return StandIn()


@pytest.fixture(scope="module")
def box(tmp_path_factory, agent_image, api):
    base = tmp_path_factory.mktemp("exhaustion")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"NANOCLAW_ROOT": base / "install", "HOME": base / "home", "CONTAINER_IMAGE": agent_image,
                           "CONTAINER_NETWORK": "none", "IDLE_TIMEOUT": "600000",
                           "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": REAL_KEY}.items():
            (base / "install").mkdir(exist_ok=True)
            (base / "home").mkdir(exist_ok=True)
            patch.setenv(key, str(value))
        settings = load_settings()
        settings.ensure_dirs()
        made = Box(settings)
        yield made
        made.container.remove(force=True)
        made.thread.join(30)
        made.runner.gateway.stop()
        remove_orphans(settings)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def resident_mib() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def call(access, path: str = "/v1/messages", token: str | None = None, timeout_s: float = 10) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(access.directory / API_SOCKET))
        try:
            conn.sendall((f"POST {path} HTTP/1.1\r\nHost: api\r\nx-api-key: {token or access.token}\r\n"
                          "content-length: 2\r\nconnection: close\r\n\r\n{}").encode())
        except BrokenPipeError:  # turned away before it was read: the answer is still there
            pass
        return conn.recv(65536)


def test_a_flood_of_connections_holds_a_few_descriptors_of_the_worker_and_other_runs_go_on(box):
    other = box.runner.gateway.open_run("run-other", "work", "model-only")
    try:
        before = open_descriptors()
        box.start(FLOOD_SCRIPT)
        time.sleep(5)  # the flood is under way; what the worker holds settles
        held = open_descriptors() - before
        assert held <= MAX_API_CONNECTIONS + 8, f"the worker holds {held} descriptors for one agent's flood"
        assert b" 200 " in call(other).split(b"\r\n")[0]
        turned_away = call(box.access, timeout_s=5)
        assert b" 503 " in turned_away.split(b"\r\n")[0] and b"connections open" in turned_away
    finally:
        box.stop_scripts()
        box.runner.gateway.close_run("run-other")
    wait_for(lambda: b" 200 " in call(box.access), 10, "the flooding run's own socket to answer again")


def test_large_calls_left_unfinished_do_not_fill_the_workers_memory(box):
    before = resident_mib()
    box.start(HOLD_SCRIPT)
    try:
        time.sleep(8)
        grown = resident_mib() - before
        assert grown < 150, f"the worker grew by {grown} MiB for {HELD_BODIES} unfinished calls"
    finally:
        box.stop_scripts()


SOCKET_TAMPERING = [
    "touch /run/nanoclaw/x", "rm -f /run/nanoclaw/api.sock", "mv /run/nanoclaw/proxy.sock /run/nanoclaw/p",
    "ln -s /tmp /run/nanoclaw/link", "mkdir /run/nanoclaw/d", "chmod 777 /run/nanoclaw/api.sock",
]


def test_the_agent_sees_its_own_runs_two_sockets_alone_and_can_change_neither(box):
    other = box.runner.gateway.open_run("run-neighbour", "work", "open")
    try:
        code, out = box.container.exec_run(
            ["sh", "-c", "find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print 2>/dev/null; "
                         "ls -A /run/nanoclaw; ls /var/run/docker.sock /run/docker.sock 2>&1"], user="1000")
        lines = out.decode().split()
        assert sorted(p for p in lines if p.startswith("/") and p.endswith(".sock") and "No" not in p) == [
            "/run/nanoclaw/api.sock", "/run/nanoclaw/proxy.sock"]
        assert "run-neighbour" not in out.decode() and other.token not in out.decode()
        for command in SOCKET_TAMPERING:
            assert box.container.exec_run(["sh", "-c", command], user="1000")[0] != 0, command
        assert sorted(p.name for p in box.access.directory.iterdir()) == ["api.sock", "proxy.sock"]
    finally:
        box.runner.gateway.close_run("run-neighbour")
    assert b" 200 " in call(box.access).split(b"\r\n")[0]


def open_gateway(monkeypatch, api: StandIn) -> Gateway:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    settings = load_settings()
    settings.ensure_dirs()
    return Gateway(settings, recorded.append)


def hold(access, count: int) -> list[socket.socket]:
    """Calls to the stand-in's /hold, whose answers never come, each left open."""
    kept = []
    for _ in range(count):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(access.directory / API_SOCKET))
        conn.sendall((f"POST /hold HTTP/1.1\r\nHost: api\r\nx-api-key: {access.token}\r\n"
                      "content-length: 2\r\n\r\n{}").encode())
        kept.append(conn)
    return kept


def test_calls_other_runs_keep_waiting_never_make_a_runs_call_wait(root, monkeypatch, api):
    gateway = open_gateway(monkeypatch, api)
    kept = []
    try:
        held_before = api.held
        for n in range(4):  # together more than an HTTP client's usual pool of 100 connections
            kept += hold(gateway.open_run(f"run-h{n}", f"g{n}", "model-only"), MAX_API_CONNECTIONS)
        wait_for(lambda: api.held - held_before >= 4 * MAX_API_CONNECTIONS, 20, "every held call to reach the API")
        fresh = gateway.open_run("run-fresh", "fresh", "model-only")
        assert b" 200 " in call(fresh, timeout_s=5).split(b"\r\n")[0]
    finally:
        for conn in kept:
            conn.close()
        gateway.stop()


def test_a_call_in_flight_when_its_run_ends_is_cut_and_the_run_closes_at_once(root, monkeypatch, api):
    gateway = open_gateway(monkeypatch, api)
    try:
        access = gateway.open_run("run-s", "family", "model-only")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(access.directory / API_SOCKET))
        conn.sendall((f"POST /stall HTTP/1.1\r\nHost: api\r\nx-api-key: {access.token}\r\n"
                      "content-length: 2\r\n\r\n{}").encode())
        conn.settimeout(10)
        assert b"message_start" in conn.recv(65536) or b"message_start" in conn.recv(65536)
        started = time.monotonic()
        gateway.close_run("run-s")  # raised a timeout while the call went on: the run's end was never recorded
        assert time.monotonic() - started < 5
        assert not access.directory.exists()
        conn.close()
        cut = wait_for(lambda: [e for e in recorded if getattr(e, "run_id", "") == "run-s"], 5, "the cut call's record")
        assert cut[-1].path == "/stall" and "run ended" in (cut[-1].error or "") and cut[-1].input_tokens == 5
        assert gateway.open_run("run-t", "family", "model-only").directory.exists()
    finally:
        gateway.stop()
