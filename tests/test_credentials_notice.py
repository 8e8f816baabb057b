"""Without Claude credentials `nanoclaw run` starts anyway and says once what to set; a dry run says nothing."""

from __future__ import annotations

import pytest

from jobs.credentials import AUTH_KEYS
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker  # `nanoclaw run` checks the container runtime first

NOTICE = "no Claude credentials"


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    for key in (*AUTH_KEYS, "AGENT_PROVIDER"):
        monkeypatch.delenv(key, raising=False)


def started_and_stopped(settings, **env: str) -> str:
    with RouterProcess(settings, **env).wait_ready() as service:
        assert service.stop(timeout=60) == 0
        return service.stderr()


def test_without_credentials_the_service_starts_and_says_once_what_to_set(settings):
    stderr = started_and_stopped(settings)
    notices = [line for line in stderr.splitlines() if NOTICE in line]
    assert len(notices) == 1, stderr
    for what in ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", str(settings.root / ".env"), "'claude'",
                 "AGENT_PROVIDER=scripted"):
        assert what in notices[0]
    assert "WARNING" in notices[0] and "router live" in stderr
    error_log = (settings.logs_dir / "nanoclaw.error.log").read_text()
    assert error_log.count(NOTICE) == 1


def test_a_scripted_dry_run_says_nothing_about_credentials(settings):
    stderr = started_and_stopped(settings, AGENT_PROVIDER="scripted")
    assert NOTICE not in stderr and "router live" in stderr


def test_a_key_in_dotenv_silences_the_notice_and_is_never_logged(settings):
    secret = "sk-ant-api03-notice-test-secret-value"
    (settings.root / ".env").write_text(f"ANTHROPIC_API_KEY={secret}\n")
    stderr = started_and_stopped(settings)
    assert NOTICE not in stderr and secret not in stderr
