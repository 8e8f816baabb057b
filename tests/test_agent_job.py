"""The agent-run job over a real log and real containers (scripted provider, network none)."""

from __future__ import annotations

import threading
import time

import pytest

from base.config import load_settings
from events import types as t
from jobs.message_run import MessageRun
from jobs.recovery import reconcile
from router.channels.base import InboundMessage
from router.inbound import Inbound
from rules.allowlist import AllowlistFile
from rules.groups import register_group
from tests.observe import of_type

pytestmark = pytest.mark.docker


@pytest.fixture
def world(scripted_env, log):
    settings = scripted_env()
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    inbound = Inbound(log, AllowlistFile(settings.sender_allowlist_path))
    return settings, log, inbound


counter = iter(range(10**6))


def say(inbound, jid: str, text: str) -> int:
    n = next(counter)
    return inbound.message("test", InboundMessage(chat_jid=jid, message_id=f"m{n}", sender="alice",
                                                  sender_name="Alice", content=text,
                                                  timestamp="2026-01-01T10:00:00.000Z"))


def test_pending_messages_become_one_prompt_and_the_reply_is_queued(world):
    settings, log, inbound = world
    say(inbound, "local:me", "hello <there>")
    last = say(inbound, "local:me", "second & last")
    outcome = MessageRun(settings, log).run("main")
    assert outcome == "success: ok"
    started = of_type(log, t.AgentRunStarted)[0]
    assert (started.from_seq, started.through_seq, started.message_count) == (0, last, 2)
    replies = of_type(log, t.OutboundQueued)
    assert len(replies) == 1
    assert "hello &lt;there&gt;</message>" in replies[0].text and "second &amp; last" in replies[0].text
    assert replies[0].text.startswith('<context timezone="')
    finished = of_type(log, t.AgentRunFinished)[0]
    assert (finished.status, finished.had_output, finished.cursor_rollback_to) == ("ok", True, None)
    assert log.query("SELECT seq FROM cursors WHERE chat_jid = 'local:me'")[0][0] == last
    assert of_type(log, t.SessionUpdated)[0].session_id.startswith("scripted-")


def test_a_second_job_for_a_busy_group_leaves_the_work_to_the_running_one(world):
    settings, log, inbound = world
    say(inbound, "local:me", "one")
    first = threading.Thread(target=MessageRun(settings, log).run, args=("main",))
    first.start()
    deadline = time.monotonic() + 60
    while not of_type(log, t.AgentRunStarted) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert MessageRun(settings, log).run("main") == "busy: the running agent takes these messages"
    first.join(90)
    assert len(of_type(log, t.AgentRunStarted)) == 1


def test_nothing_pending_and_no_trigger_mean_no_container(world):
    settings, log, inbound = world
    assert MessageRun(settings, log).run("main") == "nothing pending"
    say(inbound, "tg:fam", "just chatting")
    assert MessageRun(settings, log).run("family") == "no trigger in the pending messages"
    assert of_type(log, t.AgentRunStarted) == []


def test_stale_input_files_from_an_earlier_container_are_removed_before_a_run(world):
    settings, log, inbound = world
    inbox = settings.ipc_dir / "main" / "input"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1-old.json").write_text('{"type": "message", "text": "stale"}')
    (inbox / "_close").touch()
    say(inbound, "local:me", "fresh")
    MessageRun(settings, log).run("main")
    assert "stale" not in of_type(log, t.OutboundQueued)[0].text


@pytest.fixture
def scripted(world, monkeypatch):
    settings, log, inbound = world
    path = settings.root / "scripts.json"
    monkeypatch.setenv("SCRIPTED_AGENT_FILE", str(path))

    def use(scripts: dict):
        import json

        path.write_text(json.dumps(scripts))
        return load_settings()

    return use


def test_an_error_before_any_reply_rolls_the_cursor_back_and_schedules_a_retry(world, scripted):
    _, log, inbound = world
    settings = scripted({"main": {"turns": [[{"stderr": "model overloaded"}, {"crash": 2}]]}})
    say(inbound, "local:me", "please answer")
    before = time.time()
    assert MessageRun(settings, log).run("main").startswith("error")
    finished = of_type(log, t.AgentRunFinished)[0]
    assert (finished.status, finished.had_output, finished.cursor_rollback_to) == ("error", False, 0)
    assert log.query("SELECT seq FROM cursors WHERE chat_jid = 'local:me'")[0][0] == 0
    retry = of_type(log, t.AgentRunRequested)[-1]
    assert (retry.reason, retry.attempt) == ("retry", 1)
    from base.timefmt import parse_iso
    assert 4 <= parse_iso(retry.not_before).timestamp() - before <= 8  # 5 s for the first retry


def test_the_retry_answers_the_same_messages(world, scripted):
    _, log, inbound = world
    settings = scripted({"main": [{"turns": [[{"crash": 2}]]}, {"turns": [[{"reply": "second time lucky"}]]}]})
    say(inbound, "local:me", "please answer")
    MessageRun(settings, log).run("main")
    assert MessageRun(settings, log).run("main") == "success: ok"
    assert [o.text for o in of_type(log, t.OutboundQueued) if o.origin == "agent"] == ["second time lucky"]
    runs = of_type(log, t.AgentRunStarted)
    assert [r.attempt for r in runs] == [0, 1] and runs[0].through_seq == runs[1].through_seq


def test_an_error_after_a_reply_is_not_retried_so_nothing_is_answered_twice(world, scripted):
    _, log, inbound = world
    settings = scripted({"main": {"turns": [[{"reply": "partial answer"}, {"raise": "tool blew up"}]]}})
    say(inbound, "local:me", "please answer")
    MessageRun(settings, log).run("main")
    finished = of_type(log, t.AgentRunFinished)[0]
    assert (finished.status, finished.had_output, finished.cursor_rollback_to) == ("error", True, None)
    assert [r.reason for r in of_type(log, t.AgentRunRequested)] == []
    assert [o.text for o in of_type(log, t.OutboundQueued)] == ["partial answer"]


def test_a_stale_session_is_cleared_when_the_resume_fails(world, scripted):
    _, log, inbound = world
    log.append(t.SessionUpdated(folder="main", session_id="scripted-gone"))
    settings = scripted({"main": {"turns": [[{"raise": "No conversation found with session ID scripted-gone"}]]}})
    say(inbound, "local:me", "hi")
    MessageRun(settings, log).run("main")
    assert [c.reason[:14] for c in of_type(log, t.SessionCleared)] == ["stale session:"]
    assert log.query("SELECT count(*) FROM sessions")[0][0] == 0


def test_internal_blocks_are_removed_and_empty_replies_are_not_sent(world, scripted):
    _, log, inbound = world
    settings = scripted({"main": {"turns": [[{"reply": "<internal>thinking</internal>"},
                                             {"reply": "<internal>x</internal>Visible."}]]}})
    say(inbound, "local:me", "hi")
    MessageRun(settings, log).run("main")
    assert [o.text for o in of_type(log, t.OutboundQueued)] == ["Visible."]
    assert len(of_type(log, t.AgentOutput)) >= 2


def test_recovery_finishes_a_run_whose_worker_died_and_asks_again(world):
    settings, log, inbound = world
    seq = say(inbound, "local:me", "are you there?")
    log.append(t.AgentRunStarted(run_id="dead", folder="main", chat_jid="local:me", container="gone",
                                 from_seq=0, through_seq=seq))
    counts = reconcile(settings, log)
    assert counts["runs_interrupted"] == 1 and counts["runs_requested"] == 1
    finished = of_type(log, t.AgentRunFinished)[0]
    assert (finished.status, finished.cursor_rollback_to) == ("interrupted", 0)
    assert of_type(log, t.AgentRunRequested)[-1].reason == "recovery"
    assert reconcile(settings, log)["runs_requested"] == 0  # exactly one request


def test_recovery_does_not_repeat_a_run_that_had_replied(world):
    settings, log, inbound = world
    seq = say(inbound, "local:me", "hi")
    log.append(t.AgentRunStarted(run_id="r1", folder="main", chat_jid="local:me", container="gone",
                                 from_seq=0, through_seq=seq))
    log.append(t.OutboundQueued(outbound_id="r1-0", chat_jid="local:me", text="hello", run_id="r1"))
    counts = reconcile(settings, log)
    assert counts["runs_interrupted"] == 1 and counts["runs_requested"] == 0
    assert of_type(log, t.AgentRunFinished)[0].cursor_rollback_to is None


def test_recovery_answers_again_what_was_piped_after_a_dead_runs_last_reply(world):
    settings, log, inbound = world
    first = say(inbound, "local:me", "hi")
    log.append(t.AgentRunStarted(run_id="r2", folder="main", chat_jid="local:me", container="gone",
                                 from_seq=0, through_seq=first))
    log.append(t.OutboundQueued(outbound_id="r2-0", chat_jid="local:me", text="hello", run_id="r2"))
    second = say(inbound, "local:me", "and this?")
    log.append(t.MessagesPiped(run_id="r2", folder="main", chat_jid="local:me", through_seq=second,
                               message_count=1, file="x.json"))
    counts = reconcile(settings, log)
    assert counts["runs_interrupted"] == 1 and counts["runs_requested"] == 1
    assert of_type(log, t.AgentRunFinished)[0].cursor_rollback_to == first  # "hi" was answered, "and this?" not


def test_a_follow_up_piped_the_moment_the_lease_shows_is_answered_not_swept_away(world):
    """The run clears leftover input before its lease commits; a pipe right after the commit must survive."""
    from events import consumer
    from router.trigger_stage import TriggerStage

    settings, log, inbound = world
    say(inbound, "local:me", "first question")
    consumer.drain(log, TriggerStage(settings, AllowlistFile(settings.sender_allowlist_path)))  # the request
    piped = threading.Event()

    def pipe_at_once(seq: int) -> None:  # the trigger stage at its fastest, in the committing thread
        if not piped.is_set() and of_type(log, t.AgentRunStarted):
            piped.set()
            say(inbound, "local:me", "and a follow-up")
            consumer.drain(log, TriggerStage(settings, AllowlistFile(settings.sender_allowlist_path)))

    log.waker.add_listener(pipe_at_once)
    try:
        MessageRun(settings, log).run("main")
    finally:
        log.waker.remove_listener(pipe_at_once)
    assert len(of_type(log, t.MessagesPiped)) == 1
    replies = [o.text for o in of_type(log, t.OutboundQueued)]
    assert "first question" in replies[0]
    assert sum("and a follow-up" in reply for reply in replies) == 1  # the agent read the piped file


def _run_with_a_pipe(log, inbound, handled: list[str]) -> tuple[int, int]:
    """A run that replied once after a follow-up was piped; the reply read `handled`. Returns the two seqs."""
    first = say(inbound, "local:me", "hi")
    log.append(t.AgentRunStarted(run_id="r3", folder="main", chat_jid="local:me", container="gone",
                                 from_seq=0, through_seq=first))
    second = say(inbound, "local:me", "and this?")
    log.append(t.MessagesPiped(run_id="r3", folder="main", chat_jid="local:me", through_seq=second,
                               message_count=1, file="piped-1.json"))
    log.append(t.AgentOutput(run_id="r3", folder="main", index=0, status="success", result="hello",
                             inputs=handled))
    log.append(t.OutboundQueued(outbound_id="r3-0", chat_jid="local:me", text="hello", run_id="r3"))
    return first, second


def test_recovery_answers_again_a_follow_up_the_agent_never_read_though_a_reply_came_after_it(world):
    settings, log, inbound = world
    first, _ = _run_with_a_pipe(log, inbound, handled=[])  # the reply answered "hi" only
    assert reconcile(settings, log)["runs_interrupted"] == 1
    assert of_type(log, t.AgentRunFinished)[0].cursor_rollback_to == first


def test_recovery_does_not_repeat_a_follow_up_the_agent_read_and_answered(world):
    settings, log, inbound = world
    _run_with_a_pipe(log, inbound, handled=["piped-1.json"])
    counts = reconcile(settings, log)
    assert counts["runs_interrupted"] == 1 and counts["runs_requested"] == 0
    assert of_type(log, t.AgentRunFinished)[0].cursor_rollback_to is None


def test_a_session_of_the_other_provider_is_cleared_once_and_the_run_starts_fresh(world):
    """After AGENT_PROVIDER changes, the saved id cannot be resumed: cleared before the run, not after five failures."""
    settings, log, inbound = world
    log.append(t.SessionUpdated(folder="main", session_id="0b3f7c1e-1111-4222-8333-944455556666"))  # Claude's
    say(inbound, "local:me", "hi")
    assert MessageRun(settings, log).run("main") == "success: ok"
    [cleared] = of_type(log, t.SessionCleared)
    assert "not the scripted provider's" in cleared.reason
    assert of_type(log, t.AgentRunStarted)[0].session_id is None
    fresh = of_type(log, t.SessionUpdated)[-1].session_id
    assert fresh.startswith("scripted-")
    say(inbound, "local:me", "again")
    MessageRun(settings, log).run("main")
    assert len(of_type(log, t.SessionCleared)) == 1 and of_type(log, t.AgentRunStarted)[1].session_id == fresh
