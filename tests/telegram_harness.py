"""Fixtures for the Telegram tests: the stand-in Bot API, settings pointing at it, a live router.

The router is the real `RouterApp` (event log in the test's root, the real
python-telegram-bot client talking HTTP to the stand-in); tests run their
steps inside `live_router` and wait with `until`.
"""

from __future__ import annotations

import pytest

from events import EventLog
from tests.live_router import fresh_settings  # noqa: F401  (the Telegram tests import them from here)
from tests.live_router import keys_of, live_router, until
from tests.observe import of_type  # noqa: F401  (the Telegram tests import it from here)
from tests.telegram_stub_api import TelegramStub

ALICE = TelegramStub.user(42, "Alice", "Smith", username="alice")
BOB = TelegramStub.user(43, "Bob")


@pytest.fixture
def stub():
    server = TelegramStub().start()
    yield server
    server.stop()


@pytest.fixture
def tg_settings(root, stub, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", stub.token)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", stub.url)
    return fresh_settings()


@pytest.fixture
def tg_log(tg_settings):
    log = EventLog(tg_settings.db_path)
    yield log
    log.close()
