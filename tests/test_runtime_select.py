"""CONTAINER_RUNTIME: Docker by default, Podman's Docker-compatible socket by configuration."""

from __future__ import annotations

import pytest

from base.config import ConfigError, load_settings
from jobs.runtime import PODMAN_ROOTFUL_SOCKET, engine_url, podman_socket, start_hint


@pytest.fixture
def settings_with(root, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    def make(**env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return load_settings()

    return make


def test_docker_is_the_default_runtime_and_uses_the_docker_sdks_own_default(settings_with):
    settings = settings_with()
    assert settings.container_runtime == "docker"
    assert engine_url(settings) is None
    assert "sudo systemctl start docker" in start_hint(settings)


def test_podman_selects_podmans_socket(settings_with):
    settings = settings_with(CONTAINER_RUNTIME="Podman")
    assert settings.container_runtime == "podman"
    assert engine_url(settings) == f"unix://{podman_socket()}"
    assert "podman.socket" in start_hint(settings) and podman_socket() in start_hint(settings)


def test_the_podman_socket_is_the_system_one_for_root_and_the_users_otherwise():
    assert podman_socket(uid=0, environ={}) == PODMAN_ROOTFUL_SOCKET == "/run/podman/podman.sock"
    assert podman_socket(uid=1000, environ={"XDG_RUNTIME_DIR": "/run/user/1000"}) == "/run/user/1000/podman/podman.sock"
    assert podman_socket(uid=1001, environ={}) == "/run/user/1001/podman/podman.sock"


def test_docker_host_wins_over_the_configured_runtime(settings_with, monkeypatch):
    settings = settings_with(CONTAINER_RUNTIME="podman")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert engine_url(settings) is None  # the docker SDK reads DOCKER_HOST itself


def test_the_runtime_may_be_set_in_dotenv(root, monkeypatch):
    monkeypatch.delenv("CONTAINER_RUNTIME", raising=False)
    (root / ".env").write_text("CONTAINER_RUNTIME=podman\n")
    assert load_settings().container_runtime == "podman"


def test_an_unknown_runtime_is_a_clear_error_naming_the_key(settings_with):
    with pytest.raises(ConfigError) as caught:
        settings_with(CONTAINER_RUNTIME="rkt")
    assert caught.value.key == "CONTAINER_RUNTIME"
    assert str(caught.value) == "CONTAINER_RUNTIME: 'rkt' is not one of: docker, podman"
