"""Spending caps (rules/budgets.py): a group whose budget is used up starts no run, and is told once."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from freezegun import freeze_time

from base.config import load_settings
from events import types as t
from events.queries import find_group
from jobs.message_run import MessageRun
from nanoclaw import cli
from rules.budgets import period_bounds, reached_cap
from rules.groups import update_group
from tests.observe import of_type
from tests.test_agent_job import say, world  # noqa: F401  (fixtures)

MILLION = 1_000_000


@pytest.fixture(autouse=True)
def away_from_midnight():
    """A test straddling a UTC midnight would record spend on one day and check it on the next."""
    now = datetime.now(timezone.utc)
    left = 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)
    if left < 20:
        import time

        time.sleep(left + 1)


def spend(log, folder: str, usd_of_sonnet_input: float) -> None:
    """A model call through the gateway worth this many USD (Sonnet input: $3 per million tokens)."""
    log.append(t.ModelCalled(run_id="r0", folder=folder, method="POST", path="/v1/messages", status=200,
                             duration_ms=1.0, model="claude-sonnet-4-5", input_tokens=int(usd_of_sonnet_input / 3 * MILLION)))


def test_a_period_ends_at_the_next_utc_midnight_or_first_of_the_month():
    now = datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc)
    assert period_bounds("day", now) == ("2026-12-31", "2027-01-01T00:00:00.000Z")
    assert period_bounds("month", now) == ("2026-12-01", "2027-01-01T00:00:00.000Z")


def test_a_group_cap_counts_that_group_and_the_global_cap_every_group(settings, log, monkeypatch):
    from rules.groups import register_group

    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    update_group(log, "family", container_config=t.ContainerConfig(daily_budget_usd=1.0))
    spend(log, "main", 1.5)
    with log.transaction() as tx:
        assert reached_cap(tx, settings, find_group(log, "family")) is None  # main's spend is not family's
    monkeypatch.setenv("MONTHLY_BUDGET_USD", "1.20")
    with log.transaction() as tx:
        reached = reached_cap(tx, load_settings(), find_group(log, "family"))
    assert (reached.scope, reached.period, reached.limit_usd) == ("all", "month", 1.2)
    assert reached.spent_usd == pytest.approx(1.5)


def test_yesterdays_spend_does_not_count_against_today(settings, log):
    from rules.groups import register_group

    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    update_group(log, "family", container_config=t.ContainerConfig(daily_budget_usd=1.0))
    with freeze_time("2026-11-30 12:00:00"):
        spend(log, "family", 5.0)
    with freeze_time("2026-12-01 08:00:00"), log.transaction() as tx:
        assert reached_cap(tx, settings, find_group(log, "family")) is None


@pytest.mark.docker
def test_a_group_over_its_budget_starts_no_run_is_told_once_and_runs_once_the_cap_is_raised(world, capsys):
    settings, log, inbound = world
    assert cli.main(["groups", "set", "family", "--daily-budget", "2"]) == 0
    spend(log, "family", 2.5)
    say(inbound, "tg:fam", "@Andy are you there?")
    for _ in range(2):  # the 60 s pass would ask again and again
        assert MessageRun(settings, log).run("family").startswith("budget reached: the day cap of $2.00 (group)")
    assert of_type(log, t.AgentRunStarted) == []
    [reached] = of_type(log, t.BudgetReached)
    assert (reached.folder, reached.scope, reached.period, reached.limit_usd) == ("family", "group", "day", 2.0)
    told = {o.chat_jid: o.text for o in of_type(log, t.OutboundQueued) if o.origin == "notice"}
    assert told["tg:fam"].startswith("I am not answering until ") and "this group's daily budget of $2.00" in told["tg:fam"]
    assert "nanoclaw groups set family --daily-budget USD" in told["local:me"]  # main learns how to raise it
    assert cli.main(["groups", "set", "family", "--daily-budget", "0"]) == 0  # no cap any more
    assert MessageRun(settings, log).run("family") == "success: ok"
    assert len(of_type(log, t.BudgetReached)) == 1


def test_groups_set_budget_refuses_a_negative_amount(settings, log, capsys):
    from rules.groups import register_group

    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    assert cli.main(["groups", "set", "family", "--monthly-budget", "-3"]) == 1
    assert "from 0" in capsys.readouterr().err
    assert cli.main(["groups", "set", "family", "--monthly-budget", "12.5"]) == 0
    assert find_group(log, "family").container_config.monthly_budget_usd == 12.5


@pytest.mark.docker
def test_a_due_task_of_a_group_over_budget_does_not_run_and_stays_due(world):
    from jobs.task_run import TaskRun

    settings, log, _ = world
    update_group(log, "main", container_config=t.ContainerConfig(monthly_budget_usd=1.0))
    spend(log, "main", 1.5)
    log.append(t.TaskScheduled(task_id="t1", group_folder="main", chat_jid="local:me", prompt="daily summary",
                               schedule_type="once", schedule_value="2026-01-01T09:00:00",
                               next_run="2026-01-01T09:00:00.000Z"))
    assert TaskRun(settings, log).run("t1").startswith("budget reached: the month cap of $1.00 (group)")
    assert of_type(log, t.AgentRunStarted) == [] and of_type(log, t.TaskRunFinished) == []
    assert log.query("SELECT status FROM tasks WHERE id = 't1'")[0][0] == "active"


def test_follow_ups_are_not_piped_into_a_running_agent_once_its_group_is_over_budget(settings, log):
    """A container kept busy by follow-ups would otherwise answer them past the cap for as long as they come."""
    from events import consumer
    from router.inbound import Inbound
    from router.trigger_stage import TriggerStage
    from rules.allowlist import AllowlistFile
    from rules.groups import register_group
    from tests.test_trigger_stage import say as say_in, start_run

    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    update_group(log, "family", container_config=t.ContainerConfig(daily_budget_usd=1.0))
    allowlist = AllowlistFile(settings.sender_allowlist_path)
    inbound, stage = Inbound(log, allowlist), TriggerStage(settings, allowlist)
    first = say_in(inbound, "tg:fam", "@Andy plan dinner")
    consumer.drain(log, stage)
    start_run(log, "family", "tg:fam", through=first)
    spend(log, "family", 1.5)  # the running agent's own calls cross the cap
    say_in(inbound, "tg:fam", "@Andy and dessert")
    consumer.drain(log, stage)
    assert of_type(log, t.MessagesPiped) == []
    assert list((settings.ipc_dir / "family" / "input").glob("*.json")) == []
    [reached] = of_type(log, t.BudgetReached)
    assert (reached.folder, reached.scope, reached.period) == ("family", "group", "day")
    assert [o.chat_jid for o in of_type(log, t.OutboundQueued) if o.origin == "notice"] == ["tg:fam", "local:me"]


def test_a_model_without_a_price_counts_at_the_dearest_price_so_it_is_no_way_past_a_cap(settings, log):
    from rules.groups import register_group

    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    update_group(log, "family", container_config=t.ContainerConfig(daily_budget_usd=5.0))
    log.append(t.ModelCalled(run_id="r0", folder="family", method="POST", path="/v1/messages", status=200,
                             duration_ms=1.0, model="claude-made-up-9", input_tokens=MILLION))  # Opus 4: $15 in
    with log.transaction() as tx:
        reached = reached_cap(tx, settings, find_group(log, "family"))
    assert reached is not None and reached.spent_usd == pytest.approx(15.0)


@pytest.mark.docker
def test_a_cap_for_every_group_tells_each_chat_but_main_only_once(world, monkeypatch):
    settings, log, inbound = world
    monkeypatch.setenv("DAILY_BUDGET_USD", "1")
    settings = load_settings()
    spend(log, "main", 1.5)
    from rules.groups import register_group

    register_group(log, settings, jid="tg:work", name="Work", folder="work")
    for jid, folder in (("tg:fam", "family"), ("tg:work", "work")):
        say(inbound, jid, "@Andy hello")
        assert MessageRun(settings, log).run(folder).startswith("budget reached")
    told = [o.chat_jid for o in of_type(log, t.OutboundQueued) if o.origin == "notice"]
    assert sorted(told) == ["local:me", "tg:fam", "tg:work"]  # main once, each group's chat once


def test_a_reached_cap_is_listed_by_status_with_the_failures(settings, log):
    from nanoclaw.status import recent_errors

    log.append(t.BudgetReached(folder="family", scope="group", period="day", limit_usd=2.0, spent_usd=2.5,
                               until="2026-12-02T00:00:00.000Z"))
    [error] = recent_errors(log)
    assert error.where == "family" and error.message == (
        "its own day budget of $2.00 is used up ($2.50); no runs until 2026-12-02T00:00:00.000Z")
