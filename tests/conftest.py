"""Shared fixtures: every test runs in its own temporary install root and home."""

from __future__ import annotations

from pathlib import Path

import pytest

from base.config import Settings, load_settings
from events import EventLog


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh install root (NANOCLAW_ROOT) and HOME, set for this process and children."""
    install = tmp_path / "install"
    home = tmp_path / "home"
    install.mkdir()
    home.mkdir()
    monkeypatch.setenv("NANOCLAW_ROOT", str(install))
    monkeypatch.setenv("HOME", str(home))
    for key in ("TZ", "ASSISTANT_NAME", "ASSISTANT_HAS_OWN_NUMBER", "LOG_LEVEL", "CONTAINER_TIMEOUT", "IDLE_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    # A ready agent follows every run that ends well and starts with the service: the tests of
    # ready agents (tests/test_ready_agents.py) turn them on; elsewhere they would add runs to count.
    monkeypatch.setenv("READY_AGENTS", "0")
    return install


@pytest.fixture
def settings(root: Path) -> Settings:
    result = load_settings()
    result.ensure_dirs()
    return result


@pytest.fixture
def log(settings: Settings):
    event_log = EventLog(settings.db_path)
    yield event_log
    event_log.close()


BROWSER_IMAGE_TAG = "nanoclaw-agent:browser-test"


@pytest.fixture(scope="session")
def agent_image() -> str:
    """The `test` target of the agent image, rebuilt when its sources changed (a digest label)."""
    from jobs import image

    tag = image.IMAGE_TEST_TAG
    if not image.image_exists(tag) or image.image_is_stale(tag):
        image.build_image(target="test", tag=tag, on_progress=lambda line: None)
    return tag


@pytest.fixture(scope="session")
def browser_image() -> str:
    """The `full` target (the test image plus Chromium), rebuilt when its sources changed."""
    from jobs import image

    tag = BROWSER_IMAGE_TAG
    if not image.image_exists(tag) or image.image_is_stale(tag):
        image.build_image(target="full", tag=tag, on_progress=lambda line: None)
    return tag


@pytest.fixture
def scripted_env(root: Path, agent_image: str, monkeypatch: pytest.MonkeyPatch):
    """The scripted provider in the test image with no network; call it (with scripts, settings) for Settings."""
    import json

    def setup(*, idle_timeout_ms: int = 1000, scripts: dict | None = None, **env: str) -> Settings:
        for key, value in {"CONTAINER_IMAGE": agent_image, "CONTAINER_NETWORK": "none", "AGENT_PROVIDER": "scripted",
                           "IDLE_TIMEOUT": str(idle_timeout_ms), **env}.items():
            monkeypatch.setenv(key, value)
        if scripts is not None:
            (root / "scripts.json").write_text(json.dumps(scripts))
            monkeypatch.setenv("SCRIPTED_AGENT_FILE", str(root / "scripts.json"))
        result = load_settings()
        result.ensure_dirs()
        return result

    return setup
