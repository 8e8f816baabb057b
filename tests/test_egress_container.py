"""An agent-like container with no network reaches the web only through the egress proxy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import docker
import pytest

from tests.egress_harness import host_listener, never_accepted, remote, serve  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker

# What the forwarder inside an agent's container does, written here for the test: TCP ports in,
# the proxies' Unix sockets out. Arguments are port=socket pairs.
_CONTAINER_FORWARDER = r"""
import socket, sys, threading

def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(client, path):
    upstream = socket.socket(socket.AF_UNIX)
    upstream.connect(path)
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)

def listen(port, path):
    listener = socket.create_server(("127.0.0.1", int(port)))
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, path), daemon=True).start()

for pair in sys.argv[1:]:
    threading.Thread(target=listen, args=pair.split("=", 1)).start()
print("listening", flush=True)
"""


def _bridge_gateway(engine: docker.DockerClient) -> str:
    configs = engine.networks.get("bridge").attrs["IPAM"]["Config"] or [{}]
    return configs[0].get("Gateway", "172.17.0.1")


@pytest.fixture
def agent_container(agent_image, tmp_path):
    """Start a container like an agent's (uid 1000, no network) with the proxies' folder read-only."""
    engine = docker.from_env()
    started = []

    def start(folder: Path, forwards: dict[int, str]):
        container = engine.containers.run(
            agent_image,
            entrypoint=["python3", "-c", _CONTAINER_FORWARDER, *(f"{p}=/run/egress/{n}" for p, n in forwards.items())],
            user="1000:1000", network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
            volumes={str(folder): {"bind": "/run/egress", "mode": "ro"}},
            environment={"http_proxy": "http://127.0.0.1:3128", "HTTPS_PROXY": "http://127.0.0.1:3128"},
            name=f"nanoclaw-egress-test-{os.urandom(3).hex()}", detach=True,
        )  # fmt: skip
        started.append(container)
        deadline = time.monotonic() + 30
        while b"listening" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        return container

    yield start, engine
    for container in started:
        container.remove(force=True)


def _curl_in(container, *args: str) -> tuple[int, str]:
    code, output = container.exec_run(["curl", "-sS", "--max-time", "10", *args])
    return code, output.decode("utf-8", "replace")


def test_curl_in_a_container_without_network_reaches_only_what_the_proxy_allows(
    serve, remote, agent_container, host_listener
):
    start, engine = agent_container
    allowing = serve(f"allow:{remote.address}")
    opened = serve("open")
    folder = allowing.socket_path.parent
    (folder / "ca.pem").write_bytes(remote.ca.read_bytes())
    container = start(folder, {3128: allowing.socket_path.name, 3129: opened.socket_path.name})
    port = host_listener.getsockname()[1]

    assert _curl_in(container, f"{remote.http.url}/in-container") == (
        0, f"hello from {remote.address}:80 GET /in-container\n"
    )  # fmt: skip
    assert _curl_in(container, "--cacert", "/run/egress/ca.pem", f"{remote.https.url}/tls")[1].startswith("hello from")
    code, _ = _curl_in(container, "--noproxy", "*", f"{remote.http.url}/direct")
    assert code != 0
    for target, why in ((f"127.0.0.1:{port}", "loopback"), (f"{_bridge_gateway(engine)}:{port}", "private")):
        code, output = _curl_in(container, "--proxy", "http://127.0.0.1:3129", f"http://{target}/")
        assert f"nanoclaw egress refuses {target} whatever the policy" in output and why in output
    assert never_accepted(host_listener)
    assert [d.allowed for d in allowing.decisions] == [True, True]
    assert [d.status for d in opened.decisions] == [403, 403]
