"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against the real router.

The router runs in the test's loop with the local chat and its event log;
the dashboard beside it, as `nanoclaw run` serves it. Each page is kept
as a screenshot in `test-artifacts/dashboard/` (the README's pictures are
copies of these).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from events import EventLog, types as t
from nanoclaw import dashboard_auth as auth
from router.heartbeat import read_beat, status_path
from rules.groups import register_group
from tests.channel_contract import LocalDriver
from tests.live_router import fresh_settings
from tests.router_process import RouterProcess
from tests.waiting import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # scripts/test.sh installs it
ARTIFACTS = Path(os.environ.get("NANOCLAW_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts")) / "dashboard"



@pytest.fixture
def settings(root, monkeypatch):
    monkeypatch.setenv("DASHBOARD_PORT", "0")
    monkeypatch.setenv("DAILY_BUDGET_USD", "2")
    return fresh_settings()


@pytest.fixture
def log(settings):
    events = EventLog(settings.db_path)
    register_group(events, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(events, settings, jid="local:family", name="Family", folder="family")
    yield events
    events.close()


def _history(log) -> None:
    """A day of an assistant's life: model calls, a run, a task, the network asked for."""
    for folder, tokens in (("main", 180_000), ("family", 420_000)):
        log.append(t.ModelCalled(run_id="r1", folder=folder, method="POST", path="/v1/messages", status=200,
                                 duration_ms=1200, model="claude-opus-4-5", input_tokens=tokens, output_tokens=9_000))
    log.append(t.AgentRunStarted(run_id="r1", folder="family", chat_jid="local:family", container="c"))
    log.append(t.AgentRunFinished(run_id="r1", folder="family", chat_jid="local:family", status="ok",
                                  duration_ms=5400, had_output=True))
    log.append(t.TaskScheduled(task_id="t1", group_folder="family", chat_jid="local:family",
                               prompt="Send the week's shopping list", schedule_type="cron", schedule_value="0 9 * * 1",
                               next_run="2026-12-07T09:00:00.000Z"))
    log.append(t.EgressChecked(run_id="r1", folder="family", host="pypi.org", port=443, allowed=True,
                               policy="allowlist", address="151.101.0.223"))
    log.append(t.EgressChecked(run_id="r1", folder="family", host="example.net", port=443, allowed=False,
                               policy="allowlist", reason="not in the group's allowlist"))


@pytest.mark.docker  # `nanoclaw run` checks the container runtime first
def test_the_dashboard_in_chromium_logs_in_stays_live_pauses_a_task_and_draws_usage(settings, log):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _history(log)
    chat = LocalDriver()
    chat.bind(settings)

    service = RouterProcess(settings).wait_ready()  # `nanoclaw run`: the router, its dashboard, its heartbeat
    try:
        beat = wait_for(lambda: (b := read_beat(status_path(settings))) and b.dashboard and b, timeout=20,
                        what="the heartbeat to name the dashboard")
        asyncio.run(_browse(settings, log, chat, beat.dashboard, service))
    finally:
        service.stop()
    chat.stop()
    assert sorted(p.name for p in ARTIFACTS.glob("*.png")) == sorted(
        f"{n}.png" for n in ("refused", "overview", "conversation", "tasks", "usage", "runs", "egress", "service-down"))


async def _browse(settings, log, chat, url: str, service) -> None:
    from playwright.async_api import async_playwright
    token = auth.login_token(settings)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(f"{url}/")
        assert await page.locator("h1").inner_text() == "Not logged in"
        await page.screenshot(path=ARTIFACTS / "refused.png")

        await page.goto(f"{url}/login?token={token}")
        await page.wait_for_selector("text=Overview")
        assert "up: pid" in await page.inner_text("dl.facts")
        await page.screenshot(path=ARTIFACTS / "overview.png", full_page=True)

        await page.goto(f"{url}/groups/family")
        await page.wait_for_selector("#connection[data-state=live]")
        chat.say("local:family", "@Andy what is for dinner?", sender="local:alice")
        await page.wait_for_selector("#conversation >> text=what is for dinner?", timeout=15_000)
        await page.screenshot(path=ARTIFACTS / "conversation.png", full_page=True)

        await page.goto(f"{url}/tasks")
        await page.click("tr[data-task=t1] button[value=pause]")
        await page.wait_for_selector("tr[data-task=t1][data-status=paused]")
        await page.screenshot(path=ARTIFACTS / "tasks.png", full_page=True)
        paused = [r.event for r in log.read_since(0, types=[t.TaskPaused], limit=None)]
        assert [(p.task_id, p.by) for p in paused] == [("t1", "dashboard")]

        await page.goto(f"{url}/usage")
        bars = page.locator("svg[data-chart=spend] rect")
        assert await bars.count() == 2
        box = await bars.first.bounding_box()
        assert box is not None and box["height"] > 10 and box["width"] > 5  # drawn, not just present
        await page.screenshot(path=ARTIFACTS / "usage.png", full_page=True)

        for name in ("runs", "egress"):
            await page.goto(f"{url}/{name}")
            await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        assert await page.locator("tr.refused").count() == 1

        await page.goto(f"{url}/")
        await page.wait_for_selector("#connection[data-state=live]")
        assert service.stop() == 0
        await page.wait_for_selector("#connection[data-state=down]", timeout=15_000)
        assert "Groups" in await page.inner_text("main")  # what was shown stays, marked down
        await page.screenshot(path=ARTIFACTS / "service-down.png", full_page=True)
        await browser.close()
    assert any(r.event.content == "@Andy what is for dinner?"
               for r in log.read_since(0, types=[t.MessageReceived], limit=None))
