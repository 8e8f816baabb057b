"""The local chat socket of a real `nanoclaw run`, attacked from this machine and from containers.

A flood of half-open connections, an oversize message through `nanoclaw
chat`, a container that sees the install read-only the way the main group's
does, and a container handed the socket's folder itself.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import pytest

from events import types as t
from router.channels.local import HANDSHAKE_TIMEOUT_S, MAX_CONNECTIONS, MAX_MESSAGE_BYTES
from router.channels.local_client import LocalChatClient
from rules.groups import register_group
from tests.observe import of_type
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker  # `nanoclaw run` checks the container runtime first

FLOOD_CONNECTIONS = 250
FLOOD_BYTES_EACH = 4 << 20  # what each half-open connection tries to push without a newline
RSS_GROWTH_LIMIT_MB = 60  # unbounded, such a flood took a router from 53 to 461 MB


@pytest.fixture
def router(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    process = RouterProcess(settings).wait_ready()
    yield process
    process.kill()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def sockets_under(folder: Path) -> list[Path]:
    return [Path(top) / name for top, _, names in os.walk(folder) for name in names
            if stat.S_ISSOCK(os.lstat(Path(top) / name).st_mode)]


def half_open(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.setblocking(False)
    return sock


def push_unended_lines(socks: list[socket.socket], seconds: float = 3.0) -> None:
    """Send each socket up to FLOOD_BYTES_EACH of a line that never ends, as fast as the router takes it."""
    chunk = b"x" * 65536
    sent = {sock: 0 for sock in socks}
    deadline = time.monotonic() + seconds
    while sent and time.monotonic() < deadline:
        for sock in list(sent):
            try:
                sent[sock] += sock.send(chunk)
            except BlockingIOError:
                continue
            except OSError:  # refused and closed by the router
                sent.pop(sock)
                continue
            if sent[sock] >= FLOOD_BYTES_EACH:
                sent.pop(sock)


def first_line(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_the_router_listens_outside_the_install_root_and_leaves_no_socket_in_it(router, settings):
    assert stat.S_ISSOCK(os.lstat(router.socket).st_mode)
    assert not router.socket.is_relative_to(settings.root)
    assert stat.S_IMODE(os.lstat(router.socket.parent).st_mode) == 0o700
    assert sockets_under(settings.root) == []


def test_a_flood_of_half_open_connections_is_capped_and_the_router_stays_small(router, log):
    before = rss_mb(router.proc.pid)
    flood = [half_open(router.socket) for _ in range(FLOOD_CONNECTIONS)]
    try:
        answers = [first_line(sock) for sock in flood]
        served = [sock for sock, answer in zip(flood, answers) if b'"op":"hello"' in answer]
        refused = [answer for answer in answers if b"connections open, the most it serves" in answer]
        assert (len(served), len(refused)) == (MAX_CONNECTIONS, FLOOD_CONNECTIONS - MAX_CONNECTIONS)
        pushing, silent = served[::2], served[1::2]
        push_unended_lines(pushing)
        grown = rss_mb(router.proc.pid) - before
        assert grown < RSS_GROWTH_LIMIT_MB, f"the router grew by {grown:.0f} MB"
        assert all(b"message too large: over" in first_line(sock) for sock in pushing)
        assert all(b"no request within" in first_line(sock, timeout=HANDSHAKE_TIMEOUT_S + 5) for sock in silent)
        client = LocalChatClient(router.socket, "local:me")
        try:
            assert client.send("still answering")["op"] == "ack"
        finally:
            client.close()
    finally:
        for sock in flood:
            sock.close()
    assert [m.content for m in of_type(log, t.MessageReceived)] == ["still answering"]
    assert "refused a connection from pid" in router.stderr()


def test_an_oversize_message_makes_nanoclaw_chat_print_the_limit_and_exit_non_zero(router, log):
    words = ["w" * 100_000] * 3  # one argument may hold at most 128 KiB; the message joins them
    result = subprocess.run([sys.executable, "-m", "nanoclaw.cli", "chat", "--wait", "5", *words],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert result.returncode == 1
    assert "message too large" in result.stderr and f"at most {MAX_MESSAGE_BYTES:,} bytes" in result.stderr
    assert of_type(log, t.MessageReceived) == []
    client = LocalChatClient(router.socket, "local:me")
    try:
        assert client.send("a normal one")["op"] == "ack"
    finally:
        client.close()


# --- from containers ----------------------------------------------------------------------


def run_in_container(image: str, command: str, *, user: str, volumes: dict) -> str:
    engine = docker.from_env()
    try:
        return engine.containers.run(image, entrypoint=["/bin/sh", "-c"], command=[command], user=user,
                                     network_mode="none", volumes=volumes, remove=True).decode()
    finally:
        engine.close()


def test_a_container_that_sees_the_install_read_only_finds_no_socket_of_the_service(router, settings, agent_image):
    """As main's project mount, without even the folders it hides: `find / -type s` lists only a control socket."""
    with tempfile.TemporaryDirectory(prefix="nanoclaw-probe-") as probe:
        os.chmod(probe, 0o755)
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind(f"{probe}/control.sock")  # proves find does see a socket that is mounted
        try:
            output = run_in_container(agent_image, "find / -type s 2>/dev/null; echo end", user="1000", volumes={
                str(settings.root): {"bind": "/workspace/project", "mode": "ro"},
                probe: {"bind": "/probe", "mode": "ro"}})
        finally:
            control.close()
    found = output.split()
    assert found[-1] == "end" and "/probe/control.sock" in found
    assert [path for path in found if path not in ("/probe/control.sock", "end")] == []


def test_a_container_handed_the_socket_folder_is_refused_even_as_root(router, agent_image):
    """Root in a container has the service's uid here (as uid 1000 would in a desktop install): still refused."""
    connect = ("import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(10); "
               "s.connect('/chat/local-chat.sock'); print(s.makefile().readline(), end='')")
    output = run_in_container(agent_image, f'python3 -c "{connect}"', user="0", volumes={
        str(router.socket.parent): {"bind": "/chat", "mode": "rw"}})
    assert "another pid namespace (a container)" in output
    assert "refused a connection from uid 0" in router.stderr()
