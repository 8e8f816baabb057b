"""The egress proxy served for tests: a real Unix socket in a thread, a TCP port in front for clients.

Also the shared fixtures: the remote host in a namespace, proxies to serve,
and a listener of this machine's own that the proxy must never reach.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jobs.egress_proxy import EgressDecision, EgressProxy
from rules.egress import parse_policy
from tests.netns_host import NetnsHost, NetnsServer

REMOTE_TIMEOUT_S = 10


@dataclass(frozen=True)
class RemoteSite:
    """The remote host with its servers: HTTP on 80, HTTPS on 443, another HTTP on 8080."""

    host: NetnsHost
    http: NetnsServer
    https: NetnsServer
    other: NetnsServer

    @property
    def address(self) -> str:
        return self.host.remote_address

    @property
    def ca(self) -> Path:
        return self.host.certificate().cert


@pytest.fixture(scope="session")
def remote():
    if os.geteuid() != 0:
        pytest.fail("the remote test host is a network namespace, which needs root: run the suite as root, as scripts/test.sh and CI do")
    with NetnsHost() as host:
        yield RemoteSite(host, host.serve_http(80), host.serve_http(443, tls=host.certificate()), host.serve_http(8080))


class ServedProxy:
    """An EgressProxy served on a Unix socket in a thread of its own, with a TCP port in front for clients."""

    def __init__(self, socket_path: Path, policy: str, record=None, **options):
        self.socket_path = socket_path
        self.decisions: list[EgressDecision] = []
        self.proxy = EgressProxy(parse_policy(policy), record or self.decisions.append, **options)
        self.loop = asyncio.new_event_loop()
        self.servers = self.loop.run_until_complete(self._start())
        self.port = self.servers[1].sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self):
        unix = await asyncio.start_unix_server(self.proxy.handle, str(self.socket_path))
        os.chmod(self.socket_path, 0o666)
        return unix, await asyncio.start_server(self._forward, "127.0.0.1", 0)

    async def _forward(self, reader, writer):
        """What the forwarder in an agent's container does: TCP in, the Unix socket out."""
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.socket_path))

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        writer.close()
        up_writer.close()

    def stop(self) -> None:
        async def shutdown():
            for server in self.servers:
                server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def exchange(self, data: bytes) -> bytes:
        """Send raw bytes straight to the Unix socket, end the sending side, read until the proxy closes.

        A proxy that refuses at once (at its connection limit) may answer and
        close before the request is written: the send then fails, but the
        answer it wrote first is still there to read, as a real client sees it.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(REMOTE_TIMEOUT_S)
            client.connect(str(self.socket_path))
            try:
                client.sendall(data)
                client.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return read_to_end(client, tolerate_reset=True)

    def wait_for_decisions(self, count: int) -> list[EgressDecision]:
        deadline = time.monotonic() + REMOTE_TIMEOUT_S
        while len(self.decisions) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.decisions


def read_to_end(client: socket.socket, *, tolerate_reset: bool = False) -> bytes:
    """Everything until the peer closes (with `tolerate_reset`, a reset ends the reading too)."""
    chunks = []
    try:
        while chunk := client.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        if not tolerate_reset:
            raise
    return b"".join(chunks)


@pytest.fixture
def serve(tmp_path):
    served: list[ServedProxy] = []
    folder = tmp_path / "egress"
    folder.mkdir()

    def start(policy: str, record=None, **options) -> ServedProxy:
        proxy = ServedProxy(folder / f"proxy-{len(served)}.sock", policy, record, **options)
        served.append(proxy)
        return proxy

    yield start
    for proxy in served:
        proxy.stop()


def client(proxy: ServedProxy, remote: RemoteSite) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(remote.ca))
    return httpx.Client(proxy=proxy.url, verify=context, timeout=REMOTE_TIMEOUT_S)


def curl(proxy: ServedProxy, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--proxy", proxy.url, *extra, url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.fixture
def host_listener():
    """A service of this machine listening on every address: what the proxy must never reach."""
    listener = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    listener.settimeout(0.2)
    yield listener
    listener.close()


def never_accepted(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
    except TimeoutError:
        return True
    return False

