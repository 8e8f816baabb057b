"""The test machine's Docker engine and offline base image, as later tests need them.

scripts/test.sh starts dockerd and builds `nanoclaw-base:bookworm` with
debootstrap; these checks fail loudly (never skip) if that did not happen.
"""

from __future__ import annotations

import docker
import pytest

BASE_IMAGE = "nanoclaw-base:bookworm"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client():
    engine = docker.from_env()
    yield engine
    engine.close()


def test_the_engine_answers(client):
    assert client.ping()


def test_the_offline_base_runs_hardened_without_a_network(client):
    container = client.containers.create(
        BASE_IMAGE, ["/bin/sh", "-c", "id -u; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'; ls /sys/class/net"],
        user="1000:1000", network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
        pids_limit=64, mem_limit="128m", init=True, labels={"nanoclaw.test": "base"},
    )
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    lines = out.split()
    assert lines[0] == "1000"
    assert "0000000000000000" in out and "NoNewPrivs:\t1" in out
    assert lines[-1] == "lo"
