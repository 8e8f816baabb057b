"""Settings: v1's `.env` rules, environment first, and clear errors for bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger

from base.config import ConfigError, load_settings, parse_dotenv
from base.logs import setup_logging


def env_for(root: Path, **values: str) -> dict[str, str]:
    return {"NANOCLAW_ROOT": str(root), "HOME": str(root), **values}


def test_dotenv_follows_v1s_parsing_rules():
    text = "\n".join([
        "# comment", "", "A=1", " B = two words ", "C=\"quoted\"", "D='single'", "E=", "F=b # c",
        "G=x=y", "A=2", "noequals", "H=\"unbalanced",
    ])
    assert parse_dotenv(text) == {
        "A": "2", "B": "two words", "C": "quoted", "D": "single", "F": "b # c", "G": "x=y", "H": "\"unbalanced",
    }


def test_defaults_match_the_spec(tmp_path):
    s = load_settings(env_for(tmp_path))
    assert (s.assistant_name, s.trigger, s.container_image) == ("Andy", "@Andy", "nanoclaw-agent:latest")
    assert (s.container_timeout_ms, s.idle_timeout_ms) == (1_800_000, 1_800_000)
    assert (s.max_messages_per_prompt, s.max_concurrent_containers) == (10, 5)
    assert s.container_max_output_bytes == 10_485_760
    assert s.db_path == tmp_path / "store" / "messages.db"
    assert s.mount_allowlist_path == tmp_path / ".config" / "nanoclaw" / "mount-allowlist.json"


def test_the_environment_wins_over_dotenv(tmp_path):
    (tmp_path / ".env").write_text("ASSISTANT_NAME=Claw\nMAX_CONCURRENT_CONTAINERS=3\nTZ=Asia/Tokyo\n")
    s = load_settings(env_for(tmp_path, MAX_CONCURRENT_CONTAINERS="7"))
    assert (s.assistant_name, s.max_concurrent_containers, s.timezone) == ("Claw", 7, "Asia/Tokyo")


def test_an_empty_environment_value_falls_back_to_dotenv(tmp_path):
    (tmp_path / ".env").write_text("ASSISTANT_NAME=Claw\n")
    assert load_settings(env_for(tmp_path, ASSISTANT_NAME="")).assistant_name == "Claw"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("CONTAINER_TIMEOUT", "300000ms", "not a whole number"),
        ("CONTAINER_TIMEOUT", "1e3", "not a whole number"),
        ("IDLE_TIMEOUT", "abc", "not a whole number"),
        ("IDLE_TIMEOUT", "5", "out of range"),
        ("MAX_CONCURRENT_CONTAINERS", "0", "out of range"),
        ("MAX_MESSAGES_PER_PROMPT", "-3", "out of range"),
        ("CONTAINER_MAX_OUTPUT_SIZE", "10", "out of range"),
        ("LOG_LEVEL", "loud", "not one of"),
        ("AGENT_PROVIDER", "gpt", "not one of"),
        ("TZ", "Mars/Olympus", "not an IANA time zone"),
        ("ASSISTANT_NAME", "Andy Bot", "not usable"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key_and_what_is_accepted(tmp_path, key, value, expected):
    with pytest.raises(ConfigError) as err:
        load_settings(env_for(tmp_path, **{key: value}))
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert expected in str(err.value)


def test_bad_values_in_dotenv_are_reported_too(tmp_path):
    (tmp_path / ".env").write_text("IDLE_TIMEOUT=soon\n")
    with pytest.raises(ConfigError, match="IDLE_TIMEOUT"):
        load_settings(env_for(tmp_path))


def test_numbers_accept_underscores_and_spaces(tmp_path):
    s = load_settings(env_for(tmp_path, CONTAINER_TIMEOUT=" 60_000 "))
    assert s.container_timeout_ms == 60_000


def test_secrets_from_dotenv_stay_out_of_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-secret-value\n")
    s = load_settings(env_for(tmp_path))
    assert s.secret("ANTHROPIC_API_KEY") == "sk-ant-secret-value"
    assert "ANTHROPIC_API_KEY" not in os.environ
    assert "sk-ant-secret-value" not in repr(s)


def test_secrets_are_masked_in_every_log_line(tmp_path):
    (tmp_path / ".env").write_text("CLAUDE_CODE_OAUTH_TOKEN=oauth-token-123456\n")
    s = load_settings(env_for(tmp_path))
    setup_logging(s, to_files=True, stderr_level="CRITICAL")
    logger.warning("talking to the API with oauth-token-123456")
    logger.complete()
    for name in ("nanoclaw.log", "nanoclaw.error.log"):
        text = (tmp_path / "logs" / name).read_text()
        assert "talking to the API with ****" in text
        assert "oauth-token-123456" not in text
    logger.remove()


def test_the_error_log_holds_only_warnings_and_worse(tmp_path):
    s = load_settings(env_for(tmp_path, LOG_LEVEL="debug"))
    setup_logging(s, to_files=True, stderr_level="CRITICAL")
    logger.debug("a debug line")
    logger.error("an error line")
    logger.remove()
    assert "a debug line" in (tmp_path / "logs" / "nanoclaw.log").read_text()
    errors = (tmp_path / "logs" / "nanoclaw.error.log").read_text()
    assert "an error line" in errors and "a debug line" not in errors


def test_the_command_line_stops_with_one_clear_line_on_a_bad_setting(tmp_path):
    env = {**os.environ, **env_for(tmp_path, MAX_CONCURRENT_CONTAINERS="lots")}
    result = subprocess.run([sys.executable, "-m", "nanoclaw.cli", "groups", "list"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nanoclaw: configuration error: MAX_CONCURRENT_CONTAINERS: 'lots' is not a whole number "
        "(accepted: a whole number of containers from 1 to 64)"
    ]


def test_failure_notices_are_on_by_default_and_off_or_a_clear_error(root, monkeypatch):
    from base.config import ConfigError, load_settings

    assert load_settings().failure_notices is True
    monkeypatch.setenv("FAILURE_NOTICES", "off")
    assert load_settings().failure_notices is False
    monkeypatch.setenv("FAILURE_NOTICES", "sometimes")
    with pytest.raises(ConfigError, match="FAILURE_NOTICES"):
        load_settings()
