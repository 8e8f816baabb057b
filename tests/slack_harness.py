"""Fixtures for the Slack tests: the stand-in (Web API and Socket Mode) and settings pointing at it."""

from __future__ import annotations

import pytest

from events import EventLog
from tests.live_router import fresh_settings
from tests.slack_stub_api import SlackStub

ALICE = "U0ALICE"
BOB = "U0BOB"
GENERAL = "C0GENERAL"
DM = "D0ALICE"


@pytest.fixture
def slack():
    server = SlackStub().start()
    server.user(ALICE, "Alice", real_name="Alice Smith")
    server.user(BOB, "Bob")
    server.channel(GENERAL, "general")
    server.channel(DM, ALICE, kind="im")
    yield server
    server.stop()


def point_at(stub: SlackStub, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", stub.bot_token)
    monkeypatch.setenv("SLACK_APP_TOKEN", stub.app_token)
    monkeypatch.setenv("SLACK_API_BASE_URL", stub.url)


@pytest.fixture
def slack_settings(root, slack, monkeypatch):
    point_at(slack, monkeypatch)
    return fresh_settings()


@pytest.fixture
def slack_log(slack_settings):
    log = EventLog(slack_settings.db_path)
    yield log
    log.close()
