"""The browser's thread, without a browser: a call given up never runs later, a stuck browser is set aside.

`_Session.run` is replaced by one that runs the action with no page, so these
run anywhere; tests/test_browser.py drives the real Chromium.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from tests.agent_stub_api import AGENT_CONTAINER_DIR

sys.path.insert(0, str(AGENT_CONTAINER_DIR))
from agent_runner import browser as browser_module  # noqa: E402
from agent_runner.browser import Browser, BrowserConfig, BrowserError  # noqa: E402


@pytest.fixture
def browser(monkeypatch, tmp_path: Path) -> Browser:
    monkeypatch.setattr(browser_module._Session, "run", lambda self, action: action(None))
    made = Browser(BrowserConfig("/usr/bin/chromium", tmp_path, None))
    yield made
    made.close()


def test_a_call_that_outlasts_its_timeout_is_given_up_and_the_next_call_gets_a_fresh_browser(browser):
    release = threading.Event()
    ran: list[str] = []

    def stuck(page):
        release.wait(10)
        return "stuck"

    def later(page):
        ran.append(threading.current_thread().name)
        return "later"

    with pytest.raises(BrowserError, match="did not finish within 0.2 s"):
        browser.call(stuck, timeout_s=0.2)
    assert browser._worker is None  # set aside: it is busy for who knows how long
    assert browser.call(later, timeout_s=5) == "later"
    release.set()
    assert ran == ["browser"]


def test_a_call_given_up_before_it_began_never_runs(browser):
    release = threading.Event()
    ran: list[str] = []
    waiter = threading.Thread(target=lambda: browser.call(lambda page: release.wait(10) and "slow", timeout_s=10))
    waiter.start()
    time.sleep(0.1)  # the slow one is running; the next one waits behind it
    with pytest.raises(BrowserError):
        browser.call(lambda page: ran.append("late") or "late", timeout_s=0.2)
    release.set()
    waiter.join(5)
    time.sleep(0.2)
    assert ran == []


def test_an_action_that_raises_comes_back_to_its_caller_and_the_browser_goes_on(browser):
    def broken(page):
        raise ValueError("the page said no")

    with pytest.raises(ValueError, match="the page said no"):
        browser.call(broken)
    assert browser.call(lambda page: "fine") == "fine"


def test_closing_a_browser_that_never_started_starts_nothing(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(browser_module._Session, "_start", lambda self: started.append(1))
    Browser(BrowserConfig("/usr/bin/chromium", tmp_path, None)).close()
    assert started == []
