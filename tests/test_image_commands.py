"""`nanoclaw image check` and `nanoclaw image build` as a person runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.docker


def nanoclaw(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nanoclaw.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_image_check_runs_a_smoke_test_in_a_container(root, agent_image):
    result = nanoclaw("image", "check", "--tag", agent_image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_image_check_of_a_missing_image_fails_clearly(root):
    result = nanoclaw("image", "check", "--tag", "nanoclaw-agent:missing")
    assert result.returncode == 1
    assert result.stderr.startswith("nanoclaw: image check failed for nanoclaw-agent:missing")


def test_image_build_with_docker_down_says_how_to_start_it(root):
    result = nanoclaw("image", "build", "--target", "test", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 1
    assert "Docker is not running" in result.stderr and "systemctl start docker" in result.stderr


def test_image_build_shows_progress_and_reuses_the_cache(root, agent_image):
    result = nanoclaw("image", "build", "--target", "test", "--tag", agent_image)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"building {agent_image} (target test)")
    assert any(line.startswith("  ") for line in lines[1:-1])  # Docker's own steps, as they come
    assert lines[-1].startswith(f"built {agent_image} in ")


def test_image_build_if_stale_leaves_a_current_image_alone(root, agent_image):
    done = nanoclaw("image", "build", "--target", "test", "--if-stale")
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout and "building" not in done.stdout
