"""`nanoclaw why`: one message's story, told from a real log of real events."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from base.timefmt import iso_now, to_iso
from events import types as t
from nanoclaw import why
from nanoclaw.cli import main
from router.channels.local_client import LocalChatClient
from rules.groups import register_group
from tests.test_service_e2e import chatting, replies, service_env, use_script  # noqa: F401  (a fixture)

ME, FAM = "local:me", "local:fam"


@pytest.fixture
def groups(settings, log):
    register_group(log, settings, jid=ME, name="Me", folder="main", is_main=True)
    register_group(log, settings, jid=FAM, name="Family", folder="family")
    return log


def say(log, jid: str, text: str, *, sender: str = "alice", msg_id: str | None = None, **extra) -> int:
    """A chat message as the inbound stage records it (its key: chat and message id)."""
    msg_id = msg_id or f"m{log.last_seq() + 1}"
    event = t.MessageReceived(chat_jid=jid, message_id=msg_id, sender=sender, sender_name=sender.title(),
                              content=text, timestamp=iso_now(), channel="local", **extra)
    return log.append(event, key=f"{jid}:{msg_id}").seq


def start(log, run_id: str, folder: str, jid: str, from_seq: int, through_seq: int, count: int = 1,
          attempt: int = 0) -> int:
    return log.append(t.AgentRunStarted(run_id=run_id, folder=folder, chat_jid=jid, container=f"nanoclaw-{folder}-1",
                                        from_seq=from_seq, through_seq=through_seq, message_count=count,
                                        attempt=attempt)).seq


def answer(log, run_id: str, folder: str, jid: str, index: int, text: str, inputs: list[str] | None = None) -> str:
    """A successful output and its queued reply, in one transaction as the agent-run job writes them."""
    outbound_id = f"{run_id}-{index}"
    with log.transaction() as tx:
        tx.append(t.AgentOutput(run_id=run_id, folder=folder, index=index, status="success", result=text,
                                inputs=inputs or []))
        tx.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=jid, text=text, run_id=run_id),
                  key=f"out:{outbound_id}")
    return outbound_id


def finish(log, run_id: str, folder: str, jid: str, status: str = "ok", error: str | None = None,
           had_output: bool = True, rollback: int | None = None, then: t.AgentRunRequested | None = None) -> None:
    with log.transaction() as tx:
        tx.append(t.AgentRunFinished(run_id=run_id, folder=folder, chat_jid=jid, status=status, error=error,
                                     duration_ms=1500, had_output=had_output, cursor_rollback_to=rollback))
        if then is not None:
            tx.append(then)


def sent(log, jid: str, outbound_id: str) -> None:
    log.append(t.OutboundSent(outbound_id=outbound_id, chat_jid=jid, channel="local"), key=f"sent:{outbound_id}")


def model_call(log, run_id: str, folder: str, inp: int, out: int, read: int = 0, status: int = 200) -> None:
    log.append(t.ModelCalled(run_id=run_id, folder=folder, method="POST", path="/v1/messages", status=status,
                             duration_ms=80.0, model="claude-sonnet-4", input_tokens=inp, output_tokens=out,
                             cache_read_input_tokens=read))


def later(seconds: float) -> str:
    return to_iso(datetime.now(timezone.utc) + timedelta(seconds=seconds))


# --- what happened to it ---------------------------------------------------------------


def test_a_message_answered_by_a_run_shows_the_run_its_sent_reply_and_its_model_calls_tokens(settings, groups):
    log = groups
    seq = say(log, ME, "what is on today?")
    start(log, "r1", "main", ME, 0, seq)
    model_call(log, "r1", "main", 1200, 300, read=500)
    model_call(log, "r1", "main", 800, 40, status=529)
    reply = answer(log, "r1", "main", ME, 0, "Nothing but a dentist at 3.")
    sent(log, ME, reply)
    finish(log, "r1", "main", ME)
    say(log, ME, "a later question")
    log.append(t.AgentRunRequested(folder="main", chat_jid=ME))  # for the later one: not this run's doing
    story = why.tell(log, settings, str(seq))
    assert story.wake.woke and "main group" in story.wake.reason
    [run] = story.runs
    assert run.then is None
    assert (run.run_id, run.reached, run.status, run.retry, run.shown) == ("r1", "window", "ok", 0, True)
    assert [(o.index, o.text) for o in run.outputs] == [(0, "Nothing but a dentist at 3.")]
    assert [(r.outbound_id, r.state, r.attempts) for r in run.replies] == [("r1-0", "sent", 1)]
    assert (run.model.calls, run.model.failed, run.model.input_tokens, run.model.output_tokens,
            run.model.cache_read_input_tokens) == (2, 1, 2000, 340, 500)
    assert story.model == run.model
    assert story.outcome == "answered: 1 repl(ies) sent" and not story.waiting


def test_a_message_without_the_trigger_in_a_trigger_group_did_not_wake_the_agent(settings, groups):
    seq = say(groups, FAM, "we need milk")
    story = why.tell(groups, settings, str(seq))
    assert not story.wake.woke
    assert story.wake.reason == "no trigger word: in this group only a message starting with @Andy wakes the agent"
    assert story.runs == [] and not story.waiting
    assert story.outcome == "not answered: it waits as context for the next message that wakes the agent"


def test_a_message_that_came_along_with_a_triggering_one_is_context_only_and_names_the_one_that_woke(settings,
                                                                                                    groups):
    log = groups
    quiet = say(log, FAM, "we need milk")
    loud = say(log, FAM, "@Andy add it to the list")
    start(log, "r1", "family", FAM, 0, loud, count=2)
    sent(log, FAM, answer(log, "r1", "family", FAM, 0, "Added milk."))
    finish(log, "r1", "family", FAM)
    story = why.tell(log, settings, str(quiet))
    assert not story.wake.woke and story.wake.woken_by == loud
    assert story.wake.reason.startswith("no trigger word") and f"Context only: seq {loud}" in story.wake.reason
    assert [r.window for r in story.runs] == [(quiet, loud)]
    assert story.outcome == "answered: 1 repl(ies) sent"
    assert why.tell(log, settings, str(loud)).wake.reason == "it starts with the trigger @Andy"


def test_a_sender_the_allowlist_does_not_let_trigger_did_not_wake_the_agent(settings, groups):
    settings.sender_allowlist_path.parent.mkdir(parents=True, exist_ok=True)
    settings.sender_allowlist_path.write_text(json.dumps(
        {"default": {"allow": "*", "mode": "trigger"}, "chats": {FAM: {"allow": ["bob"], "mode": "trigger"}}}))
    seq = say(groups, FAM, "@Andy order pizza", sender="mallory")
    story = why.tell(groups, settings, str(seq))
    assert not story.wake.woke
    assert story.wake.reason.startswith("sender mallory (Mallory) may not trigger the assistant in this chat")
    allowed = say(groups, FAM, "@Andy order pizza", sender="bob")
    assert why.tell(groups, settings, str(allowed)).wake.woke


def test_a_message_piped_into_a_running_agent_is_answered_by_the_later_output_that_names_its_file(settings,
                                                                                               groups):
    log = groups
    first = say(log, ME, "first question")
    start(log, "r1", "main", ME, 0, first)
    sent(log, ME, answer(log, "r1", "main", ME, 0, "first answer"))
    follow = say(log, ME, "and a follow-up")
    piped = log.append(t.MessagesPiped(run_id="r1", folder="main", chat_jid=ME, through_seq=follow,
                                       message_count=1, file="1700000000000-abcd.json")).seq
    answer(log, "r1", "main", ME, 1, "the follow-up's answer", inputs=["1700000000000-abcd.json"])
    another = say(log, ME, "one more thing")
    log.append(t.MessagesPiped(run_id="r1", folder="main", chat_jid=ME, through_seq=another, message_count=1,
                               file="1700000000001-efgh.json"))
    answer(log, "r1", "main", ME, 2, "the next one's answer", inputs=["1700000000001-efgh.json"])
    story = why.tell(log, settings, str(follow))
    [run] = story.runs
    assert (run.reached, run.via_seq, run.window, run.status) == ("piped", piped, (follow, follow), "running")
    assert f"piped into run r1 at seq {piped}" in run.how
    assert [o.text for o in run.outputs] == ["the follow-up's answer"]  # not the first question's answer
    assert [(r.outbound_id, r.state) for r in run.replies] == [("r1-1", "queued")]
    assert story.outcome == "answered; 1 repl(ies) wait to be sent" and story.waiting
    assert [o.text for o in why.tell(log, settings, str(first)).runs[0].outputs] == ["first answer"]


def test_a_run_that_failed_then_retried_and_succeeded_shows_both_attempts(settings, groups):
    log = groups
    seq = say(log, ME, "summarise my inbox")
    start(log, "r1", "main", ME, 0, seq)
    retry_at = later(5)
    finish(log, "r1", "main", ME, status="error", error="Container exited with code 137", had_output=False,
           rollback=0, then=t.AgentRunRequested(folder="main", chat_jid=ME, reason="retry", attempt=1,
                                                not_before=retry_at))
    start(log, "r2", "main", ME, 0, seq, attempt=1)
    sent(log, ME, answer(log, "r2", "main", ME, 0, "Three new mails."))
    finish(log, "r2", "main", ME)
    story = why.tell(log, settings, str(seq))
    assert [(r.run_id, r.retry, r.status, r.error) for r in story.runs] == [
        ("r1", 0, "error", "Container exited with code 137"), ("r2", 1, "ok", None)]
    assert story.runs[0].then == f"retry 1 of 5 at {retry_at}" and story.runs[0].outputs == []
    assert story.outcome == "answered: 1 repl(ies) sent"


def test_a_run_its_dead_worker_left_unfinished_is_followed_by_the_run_recovery_asked_for(settings, groups):
    log = groups
    seq = say(log, ME, "slow question")
    start(log, "r1", "main", ME, 0, seq)
    with log.transaction() as tx:  # as recovery records it: the end, then a new request, in one transaction
        tx.append(t.AgentRunFinished(run_id="r1", folder="main", chat_jid=ME, status="interrupted",
                                     error="its worker stopped before the container finished", cursor_rollback_to=0))
        request = tx.append(t.AgentRunRequested(folder="main", chat_jid=ME, reason="recovery")).seq
    start(log, "r2", "main", ME, 0, seq)
    sent(log, ME, answer(log, "r2", "main", ME, 0, "finally"))
    finish(log, "r2", "main", ME)
    story = why.tell(log, settings, str(seq))
    assert [(r.run_id, r.status) for r in story.runs] == [("r1", "interrupted"), ("r2", "ok")]
    assert story.runs[0].then == f"another run was asked for (recovery, seq {request})"
    assert story.outcome == "answered: 1 repl(ies) sent"


def test_a_failed_run_whose_retry_is_not_due_yet_is_waiting_with_the_retry_and_its_time(settings, groups):
    log = groups
    seq = say(log, ME, "summarise my inbox")
    start(log, "r1", "main", ME, 0, seq, attempt=1)
    retry_at = later(600)
    finish(log, "r1", "main", ME, status="timeout", error="Container timed out", had_output=False, rollback=0,
           then=t.AgentRunRequested(folder="main", chat_jid=ME, reason="retry", attempt=2, not_before=retry_at))
    story = why.tell(log, settings, str(seq))
    assert story.outcome == f"waiting: retry 2 of 5 at {retry_at}" and story.waiting


def test_a_run_that_used_up_its_retries_says_so(settings, groups):
    log = groups
    seq = say(log, ME, "summarise my inbox")
    start(log, "r6", "main", ME, 0, seq, attempt=5)
    finish(log, "r6", "main", ME, status="error", error="boom", had_output=False, rollback=0)
    story = why.tell(log, settings, str(seq))
    assert story.runs[0].then == "no retry: all 5 retries are used up"
    assert story.outcome == "not answered: run r6 ended error (boom); no retry: all 5 retries are used up"
    assert not story.waiting


def test_a_reply_that_could_not_be_sent_shows_the_channels_error(settings, groups):
    log = groups
    seq = say(log, ME, "hello")
    start(log, "r1", "main", ME, 0, seq)
    reply = answer(log, "r1", "main", ME, 0, "hi!")
    log.append(t.OutboundFailed(outbound_id=reply, chat_jid=ME, attempts=3,
                                reason="TelegramError: Forbidden: bot was blocked by the user"),
               key=f"failed:{reply}")
    finish(log, "r1", "main", ME)
    story = why.tell(log, settings, str(seq))
    [failed] = story.runs[0].replies
    assert (failed.state, failed.attempts, failed.reason) == (
        "failed", 3, "TelegramError: Forbidden: bot was blocked by the user")
    assert story.outcome == ("answered, but 1 of 1 repl(ies) could not be sent: "
                             "TelegramError: Forbidden: bot was blocked by the user")


def test_a_message_no_run_has_taken_yet_is_waiting(settings, groups):
    seq = say(groups, ME, "are you there?")
    groups.append(t.AgentRunRequested(folder="main", chat_jid=ME))
    story = why.tell(groups, settings, str(seq))
    assert story.runs == [] and story.waiting
    assert story.outcome.startswith("waiting: no run has taken it yet (a run was asked for at seq")


def test_a_message_in_a_running_agents_window_is_in_progress_until_an_output_answers_it(settings, groups):
    seq = say(groups, ME, "think hard")
    start(groups, "r1", "main", ME, 0, seq)
    story = why.tell(groups, settings, str(seq))
    assert story.outcome.startswith("in progress: run r1 has it") and story.waiting


def test_an_older_message_the_prompt_had_no_room_for_was_never_shown_to_the_agent(settings, groups):
    log = groups
    old = say(log, ME, "an old message")
    newest = [say(log, ME, f"message {n}") for n in range(settings.max_messages_per_prompt)]
    start(log, "r1", "main", ME, 0, newest[-1], count=settings.max_messages_per_prompt)
    sent(log, ME, answer(log, "r1", "main", ME, 0, "answered the newest ten"))
    finish(log, "r1", "main", ME)
    story = why.tell(log, settings, str(old))
    assert not story.runs[0].shown and story.runs[0].outputs == []
    assert "not shown to the agent" in story.runs[0].how
    assert story.outcome == "not answered: newer messages filled the agent's prompt, so it never saw it"


def test_a_bots_message_never_wakes_the_agent(settings, groups):
    seq = say(groups, FAM, "@Andy I am a bot", is_bot_message=True)
    story = why.tell(groups, settings, str(seq))
    assert not story.wake.woke and story.wake.reason.startswith("a bot's message")
    assert story.outcome.startswith("not answered: a bot's message")


def test_a_message_from_before_its_chat_was_registered_was_not_a_registered_group(settings, log):
    seq = say(log, "local:later", "hello?")
    register_group(log, settings, jid="local:later", name="Later", folder="later", is_main=False)
    story = why.tell(log, settings, str(seq))
    assert story.group is None and not story.wake.woke
    assert story.wake.reason.startswith("local:later was not a registered group when it arrived")


# --- finding the message ----------------------------------------------------------------


def test_a_message_is_found_by_its_key(settings, groups):
    seq = say(groups, ME, "by key", msg_id="abc-123")
    assert why.tell(groups, settings, "local:me:abc-123").message.seq == seq


def test_text_finds_the_newest_match_and_counts_the_others(settings, groups):
    seqs = [say(groups, ME, f"Milk, round {n}") for n in range(3)]
    say(groups, ME, "bread")
    story = why.tell(groups, settings, "milk")
    assert story.message.seq == seqs[-1] and story.message.text == "Milk, round 2"
    assert (story.matches, story.other_matches) == (3, [seqs[1], seqs[0]])


def test_a_key_that_matches_no_message_is_searched_as_text(settings, groups):
    seq = say(groups, ME, "the meeting is at 10:30")
    assert why.tell(groups, settings, "10:30").message.seq == seq


def test_search_text_is_literal_not_a_pattern(settings, groups):
    percent = say(groups, ME, "100% sure")
    say(groups, ME, "1000 sure")
    say(groups, ME, "a_b")
    say(groups, ME, "axb")
    assert why.tell(groups, settings, "0% s").message.seq == percent
    assert why.tell(groups, settings, "0% s").matches == 1
    assert why.tell(groups, settings, "a_b").matches == 1
    with pytest.raises(why.WhyError):
        why.tell(groups, settings, "x'); DROP TABLE events; --")
    assert groups.get(percent) is not None


def test_a_reference_that_matches_nothing_is_an_error_naming_what_to_give(settings, groups):
    with pytest.raises(why.WhyError, match="no message has the key or contains the text 'nowhere'"):
        why.tell(groups, settings, "nowhere")
    with pytest.raises(why.WhyError, match="no event has seq 999999"):
        why.tell(groups, settings, "999999")
    with pytest.raises(why.WhyError, match="give a message"):
        why.tell(groups, settings, "   ")
    with pytest.raises(why.WhyError, match="no event has seq 99999999999999999999999"):
        why.tell(groups, settings, "99999999999999999999999")  # past SQLite's integers


def test_the_key_of_an_event_that_is_not_a_message_is_not_taken_for_one(settings, groups):
    seq = say(groups, ME, "hello")
    start(groups, "r1", "main", ME, 0, seq)
    answer(groups, "r1", "main", ME, 0, "hi")
    assert groups.by_key("out:r1-0") is not None
    with pytest.raises(why.WhyError, match="no message has the key or contains the text 'out:r1-0'"):
        why.tell(groups, settings, "out:r1-0")


def test_a_seq_that_is_not_a_message_says_what_it_is(settings, groups):
    seq = groups.append(t.SessionUpdated(folder="main", session_id="s1")).seq
    with pytest.raises(why.WhyError, match=f"seq {seq} is a SessionUpdated event, not a message"):
        why.tell(groups, settings, str(seq))


def test_when_nothing_is_found_and_a_chat_drops_senders_it_says_those_are_never_recorded(settings, groups):
    settings.sender_allowlist_path.parent.mkdir(parents=True, exist_ok=True)
    settings.sender_allowlist_path.write_text(json.dumps(
        {"default": {"allow": "*", "mode": "trigger"}, "chats": {FAM: {"allow": ["bob"], "mode": "drop"}}}))
    with pytest.raises(why.WhyError, match="drops messages from senders it does not allow in local:fam"):
        why.tell(groups, settings, "local:fam:lost-1")


# --- the command --------------------------------------------------------------------------


def test_the_command_prints_the_story_and_json_for_scripts(settings, groups, capsys):
    seq = say(groups, FAM, "we need milk")
    assert main(["why", "milk"]) == 0
    screen = capsys.readouterr().out
    assert f"message   seq {seq}" in screen and "woke      no: no trigger word" in screen
    assert "now       not answered" in screen
    assert main(["why", str(seq), "--json"]) == 0
    story = json.loads(capsys.readouterr().out)
    assert story["message"]["seq"] == seq and story["wake"]["woke"] is False and story["group"]["folder"] == "family"


def test_the_command_exits_1_with_one_line_when_nothing_matches(settings, groups, capsys):
    assert main(["why", "no such thing"]) == 1
    err = capsys.readouterr().err
    assert err == "nanoclaw why: no message has the key or contains the text 'no such thing'\n"


def test_a_message_with_no_run_and_a_full_prompt_after_it_will_never_be_shown(settings, groups):
    old = say(groups, FAM, "an old remark")
    for n in range(settings.max_messages_per_prompt):
        say(groups, FAM, f"chatter {n}")
    story = why.tell(groups, settings, str(old))
    assert story.outcome.startswith("not answered, and never to be shown: 10 newer messages came after it")


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.docker
def test_the_story_of_real_messages_through_the_service_is_read_with_the_command(service_env, monkeypatch, capsys):
    settings, log = service_env
    use_script(settings, monkeypatch, {"main": [{"turns": [[{"error": "the model is overloaded"}]]},
                                                {"turns": [[{"reply": "second time lucky"}]]}]})
    with chatting(settings) as (service, me):
        fam = LocalChatClient(service.socket, FAM)
        try:
            fam.send("we need milk")
            me.send("summarise my day")
            answer_text = replies(me, 2, timeout=120)
        finally:
            fam.close()
    told = "I could not answer yet: the model's API is busy or rate-limited. I will try again in 5 s."
    assert len(answer_text) == 2, service.stderr()
    assert answer_text[0].startswith(told) and answer_text[1] == "second time lucky", answer_text
    assert main(["why", "summarise my day", "--json"]) == 0
    story = json.loads(capsys.readouterr().out)
    first, second = story["runs"]
    assert (first["retry"], first["status"], first["then"][:15]) == (0, "error", "retry 1 of 5 at")
    assert [o["error"] for o in first["outputs"]] == ["the model is overloaded"]
    assert [n["text"][:len(told)] for n in first["notices"]] == [told]  # the chat was told, once
    assert (second["retry"], second["status"], [o["text"] for o in second["outputs"]]) == (
        1, "ok", ["second time lucky"])
    assert [r["state"] for r in second["replies"]] == ["sent"]
    assert story["outcome"] == "answered: 1 repl(ies) sent"
    assert main(["why", "milk"]) == 0
    screen = capsys.readouterr().out
    assert "woke      no: no trigger word: in this group only a message starting with @Andy" in screen
