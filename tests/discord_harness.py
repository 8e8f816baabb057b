"""Fixtures for the Discord tests: the stand-in (REST and the gateway) with a guild, and settings pointing at it.

The guild has a text channel (`FAMILY`) with a thread (`PLANS`) the gateway
lists as active, and Alice has a DM with the bot (`DM_CHANNEL`).
"""

from __future__ import annotations

import pytest

from events import EventLog
from tests import discord_stub_api as dc
from tests.live_router import fresh_settings

FAMILY, PLANS, DM_CHANNEL = "810000000000000001", "810000000000000009", "820000000000000001"
ALICE, BOB = dc.user("700000000000000001", "Alice"), dc.user("700000000000000002", "Bob")


@pytest.fixture
def stub():
    server = dc.DiscordStub().start()
    server.text_channel(FAMILY, "family")
    server.thread(PLANS, FAMILY, "holiday plans")
    server.dm(DM_CHANNEL, ALICE)
    yield server
    server.stop()


@pytest.fixture
def settings(root, stub, monkeypatch):
    monkeypatch.setenv("DISCORD_BOT_TOKEN", stub.token)
    monkeypatch.setenv("DISCORD_API_BASE_URL", stub.url)
    return fresh_settings()


@pytest.fixture
def log(settings):
    events = EventLog(settings.db_path)
    yield events
    events.close()
