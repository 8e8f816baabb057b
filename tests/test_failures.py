"""How a failed run is classified and what the person is told (rules/failures.py, rules/notices.py)."""

from __future__ import annotations

import time

import pytest

from base.config import load_settings
from events import types as t
from jobs.message_run import MAX_RETRIES, MessageRun
from rules.failures import classify, notice, retryable
from tests.observe import of_type
from tests.test_agent_job import say, scripted, world  # noqa: F401  (fixtures)

GATEWAY_401 = ("Failed to authenticate. API Error: 401 nanoclaw gateway: no Claude credentials are configured "
               "on the host (set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in .env, ...)")


@pytest.mark.parametrize("error, kind", [
    (GATEWAY_401, "credentials"),
    ("Invalid API key · Please run /login", "credentials"),
    ("API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}", "rate_limit"),
    ("API Error: 429 rate_limit_error", "rate_limit"),
    ("API Error: 500 Internal server error", "api_error"),
    ("nanoclaw gateway: the model API at https://api.anthropic.com failed: ClientConnectorError", "api_error"),
    ("Container exited with code 137: ", "container"),
    ("Container spawn error: image x not found: build it", "container"),
    ("No conversation found with session ID 0b3f", "stale_session"),
    ("an agent output could not be recorded: database or disk is full", "storage"),
    ("API Error: 403 {\"type\":\"error\",\"error\":{\"type\":\"permission_error\"}}", "credentials"),
    ("request failed with status code 503", "api_error"),
    ("API Error: Request rejected (429) · slow down", "rate_limit"),
    ("ENOENT: no such file or directory, open '/home/node/.claude/projects/-workspace-group/0b3f.jsonl'",
     "stale_session"),
    ("tool blew up", "internal"),
    (None, "internal"),
])
def test_errors_are_sorted_into_kinds(error, kind):
    assert classify(error) == kind


@pytest.mark.parametrize("error", [
    "ENOENT: no such file or directory, open '/workspace/group/invoice-401.pdf'",
    "Tool failed at line 401 of report.py",
    "open /workspace/group/403.txt: permission denied",
    "Error: could not parse /workspace/group/errors-503.log",
    "ENOENT: no such file or directory, open '/workspace/group/diary.jsonl'",
    "tmux session 'build' not found",
])
def test_a_number_or_a_file_name_in_the_agents_error_is_not_mistaken_for_the_api(error):
    """Only the API's status (API Error: 401) or its error types name a kind; a file the agent mentions does not."""
    assert classify(error) == "internal"


def test_a_timeout_is_a_timeout_whatever_the_text_and_only_credentials_are_not_retried():
    assert classify("API Error: 500", timed_out=True) == "timeout"
    assert [k for k in ("credentials", "rate_limit", "api_error", "timeout", "container", "stale_session",
                        "internal") if not retryable(k)] == ["credentials"]


def test_notices_say_what_happened_and_only_the_main_groups_say_what_to_do():
    first = notice("rate_limit", final=False, retry_in_s=5)
    assert first == "I could not answer yet: the model's API is busy or rate-limited. I will try again in 5 s."
    final = notice("credentials", final=True, for_main=True, folder="family")
    assert final.startswith("In family: I could not answer: the model's API refused the assistant's credentials.")
    assert "ANTHROPIC_API_KEY" in final and "ANTHROPIC_API_KEY" not in notice("credentials", final=True)


# --- runs, with real containers ---------------------------------------------------------------


def notices(log) -> list[t.OutboundQueued]:
    return [o for o in of_type(log, t.OutboundQueued) if o.origin == "notice"]


@pytest.mark.docker
def test_an_agent_error_ends_the_turn_at_once_and_the_chat_is_told_it_will_be_retried(world, scripted, monkeypatch):
    _, log, inbound = world
    monkeypatch.setenv("IDLE_TIMEOUT", "60000")  # the container would otherwise wait a minute for input
    settings = scripted({"main": {"turns": [[{"error": "API Error: 529 overloaded_error"}]]}})
    say(inbound, "local:me", "please answer")
    started = time.monotonic()
    MessageRun(settings, log).run("main")
    assert time.monotonic() - started < 15
    [finished] = of_type(log, t.AgentRunFinished)
    assert (finished.status, finished.error_kind) == ("error", "rate_limit")
    [told] = notices(log)
    assert told.chat_jid == "local:me" and "busy or rate-limited" in told.text and "try again in 5 s" in told.text
    assert of_type(log, t.AgentRunRequested)[-1].reason == "retry"


@pytest.mark.docker
def test_refused_credentials_are_not_retried_and_both_chats_are_told_once(world, scripted):
    _, log, inbound = world
    settings = scripted({"family": {"turns": [[{"error": GATEWAY_401}]]}})
    say(inbound, "tg:fam", "@Andy hello")
    MessageRun(settings, log).run("family")
    assert of_type(log, t.AgentRunFinished)[0].error_kind == "credentials"
    assert [r.reason for r in of_type(log, t.AgentRunRequested)] == []  # no retry can fix a refused key
    told = {o.chat_jid: o.text for o in notices(log)}
    assert told["tg:fam"].startswith("I could not answer: the model's API refused") and "What to do" not in told["tg:fam"]
    assert told["local:me"].startswith("In family: I could not answer") and "ANTHROPIC_API_KEY" in told["local:me"]


@pytest.mark.docker
def test_the_retries_in_between_are_silent_and_the_last_one_tells_that_it_gave_up(world, scripted, monkeypatch):
    _, log, inbound = world
    monkeypatch.setattr("rules.notices.NOTICE_INTERVAL_S", 0)
    settings = scripted({"main": {"turns": [[{"crash": 3}]]}})
    say(inbound, "local:me", "please answer")
    for _ in range(MAX_RETRIES + 1):
        MessageRun(settings, log).run("main")
    assert len(of_type(log, t.AgentRunFinished)) == MAX_RETRIES + 1
    texts = [o.text for o in notices(log)]
    assert len(texts) == 2 and "try again in 5 s" in texts[0] and "Your message is kept" in texts[1]


@pytest.mark.docker
def test_notices_are_at_most_one_a_minute_per_chat_and_can_be_turned_off(world, scripted, monkeypatch):
    _, log, inbound = world
    settings = scripted({"main": {"turns": [[{"error": GATEWAY_401}]]}})
    for text in ("first", "second"):
        say(inbound, "local:me", text)
        MessageRun(settings, log).run("main")
    assert len(notices(log)) == 1
    monkeypatch.setenv("FAILURE_NOTICES", "off")
    monkeypatch.setattr("rules.notices.NOTICE_INTERVAL_S", 0)
    say(inbound, "local:me", "third")
    MessageRun(load_settings(), log).run("main")
    assert len(notices(log)) == 1


@pytest.mark.docker
def test_the_notice_that_it_gave_up_is_sent_even_within_a_minute_of_the_promise_to_try_again(world, scripted):
    """First a busy API (told: I will try again), then refused credentials on the retry, seconds later."""
    _, log, inbound = world
    settings = scripted({"main": [{"turns": [[{"error": "API Error: 529 overloaded_error"}]]},
                                  {"turns": [[{"error": GATEWAY_401}]]}]})
    say(inbound, "local:me", "please answer")
    MessageRun(settings, log).run("main")
    MessageRun(settings, log).run("main")
    assert [f.error_kind for f in of_type(log, t.AgentRunFinished)] == ["rate_limit", "credentials"]
    texts = [o.text for o in notices(log)]
    assert len(texts) == 2 and "I will try again in 5 s" in texts[0]
    assert texts[1].startswith("I could not answer: the model's API refused")


@pytest.mark.docker
def test_a_failed_task_run_is_sorted_into_its_kind_like_a_message_run(world, scripted):
    from base.timefmt import iso_now
    from jobs.task_run import TaskRun

    _, log, _ = world
    settings = scripted({"main": {"turns": [[{"error": GATEWAY_401}]]}})
    log.append(t.TaskScheduled(task_id="t1", group_folder="main", chat_jid="local:me", prompt="Summarise my day.",
                               schedule_type="once", schedule_value="2026-01-01T09:00:00", next_run=iso_now()))
    TaskRun(settings, log).run("t1")
    [finished] = of_type(log, t.AgentRunFinished)
    assert (finished.status, finished.error_kind) == ("error", "credentials")
