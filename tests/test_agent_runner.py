"""The agent runner's contract, run as a host process with the scripted provider.

The same program runs in the container; here its workspace is a temporary
directory (NANOCLAW_WORKSPACE), so stdin/stdout framing, the inbox, the
close sentinel, exit codes and the task-script phase are checked without
Docker.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from tests.agent_stub_api import RunnerProcess, make_workspace, parse_outputs, pipe_message, request_close

BANNER = (
    "[SCHEDULED TASK - The following message was sent automatically and is not "
    "coming directly from the user or group.]"
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "workspace")


def request(prompt: str = "hello there", **fields) -> dict:
    base = {"prompt": prompt, "groupFolder": "team", "chatJid": "team@g.us", "isMain": False,
            "assistantName": "Andy", "provider": "scripted"}
    base.update(fields)
    return base


def script(*turns, default: str = "echo") -> dict:
    return {"turns": [list(turn) for turn in turns], "default": default}


def test_scripted_provider_replies_with_the_prompt_verbatim(workspace):
    prompt = 'multi-line\n<messages>\n  "quoted" & <tagged>\n</messages>'
    runner = RunnerProcess(workspace, request(prompt))
    output = runner.next_output()
    assert output["status"] == "success"
    assert output["result"] == prompt
    assert output["newSessionId"].startswith("scripted-")
    runner.close()
    assert runner.wait() == 0


def test_an_input_session_id_is_reported_back(workspace):
    runner = RunnerProcess(workspace, request(sessionId="sess-42"))
    assert runner.next_output()["newSessionId"] == "sess-42"
    runner.close()
    assert runner.wait() == 0


def test_several_replies_in_one_turn_are_separate_outputs(workspace):
    steps = [{"reply": "one"}, {"session": "s-2"}, {"reply": "two"}]
    runner = RunnerProcess(workspace, request(scripted=script(steps)))
    first, second = runner.next_output(), runner.next_output()
    assert (first["result"], second["result"]) == ("one", "two")
    assert second["newSessionId"] == "s-2"
    runner.close()
    assert runner.wait() == 0
    assert len(parse_outputs(runner.stdout)) == 2


def test_a_piped_follow_up_is_read_within_milliseconds_and_echoed(workspace):
    runner = RunnerProcess(workspace, request("first"))
    assert runner.next_output()["result"] == "first"
    time.sleep(0.2)  # the runner is now waiting on the inbox
    started = time.monotonic()
    runner.send("second message")
    output = runner.next_output(timeout=5)
    latency = time.monotonic() - started
    assert output["result"] == "second message"
    assert latency < 0.5, f"follow-up took {latency * 1000:.0f} ms"
    assert not list((workspace / "ipc" / "input").glob("*.json"))
    runner.close()
    assert runner.wait() == 0


def test_close_ends_the_runner_with_exit_zero_and_consumes_the_sentinel(workspace):
    runner = RunnerProcess(workspace, request())
    runner.next_output()
    runner.close()
    assert runner.wait() == 0
    assert not (workspace / "ipc" / "input" / "_close").exists()


def test_follow_ups_arriving_during_a_turn_become_the_next_turn_joined_by_newlines(workspace):
    runner = RunnerProcess(workspace, request("p", scripted=script([{"sleep": 0.6}, {"reply_prompt": True}])))
    time.sleep(0.2)
    pipe_message(workspace / "ipc", "a", name="0001.json")
    pipe_message(workspace / "ipc", "b", name="0002.json")
    assert runner.next_output()["result"] == "p"
    assert runner.next_output()["result"] == "a\nb"
    runner.close()
    assert runner.wait() == 0


def test_close_is_checked_before_pending_messages(workspace):
    runner = RunnerProcess(workspace, request("p", scripted=script([{"sleep": 0.6}, {"reply": "done"}])))
    time.sleep(0.2)
    pipe_message(workspace / "ipc", "too late")
    request_close(workspace / "ipc")
    assert runner.next_output()["result"] == "done"
    assert runner.wait() == 0
    assert [o["result"] for o in parse_outputs(runner.stdout)] == ["done"]


def test_messages_waiting_at_start_are_appended_to_the_prompt_in_name_order(workspace):
    pipe_message(workspace / "ipc", "later", name="0002.json")
    pipe_message(workspace / "ipc", "earlier", name="0001.json")
    (workspace / "ipc" / "input" / "0003.json").write_text("{not json")
    (workspace / "ipc" / "input" / "0004.json").write_text(json.dumps({"type": "other", "text": "x"}))
    runner = RunnerProcess(workspace, request("base"))
    assert runner.next_output()["result"] == "base\nearlier\nlater"
    assert not list((workspace / "ipc" / "input").glob("*.json"))
    assert "0003.json" in runner.stderr
    runner.close()
    assert runner.wait() == 0


def test_a_close_written_before_the_runner_started_ends_it_after_its_prompt(workspace):
    request_close(workspace / "ipc")  # the host clears the folder before a run: this one is for this run
    runner = RunnerProcess(workspace, request("still runs"))
    assert runner.next_output()["result"] == "still runs"
    assert runner.wait() == 0  # no follow-up awaited: the close was seen at the first wait
    assert not (workspace / "ipc" / "input" / "_close").exists()


def test_the_input_directory_is_created_when_missing(tmp_path):
    workspace = tmp_path / "bare"
    workspace.mkdir()
    runner = RunnerProcess(workspace, request())
    runner.next_output()
    assert (workspace / "ipc" / "input").is_dir()
    runner.close()
    assert runner.wait() == 0


def test_scheduled_tasks_get_the_banner_and_a_blank_line(workspace):
    runner = RunnerProcess(workspace, request("check the news", isScheduledTask=True))
    assert runner.next_output()["result"] == f"{BANNER}\n\ncheck the news"
    runner.close()
    assert runner.wait() == 0


def test_a_turn_without_a_reply_ends_with_a_null_result(workspace):
    runner = RunnerProcess(workspace, request(scripted=script([{"sleep": 0.01}], default="silent")))
    assert runner.next_output() == {"status": "success", "result": None,
                                    "newSessionId": runner.outputs[0]["newSessionId"]}
    runner.send("anyone?")
    assert runner.next_output()["result"] is None
    runner.close()
    assert runner.wait() == 0


def test_turns_beyond_the_script_echo_by_default(workspace):
    runner = RunnerProcess(workspace, request("p", scripted=script([{"reply": "scripted"}])))
    assert runner.next_output()["result"] == "scripted"
    runner.send("echo me")
    assert runner.next_output()["result"] == "echo me"
    runner.close()
    assert runner.wait() == 0


def test_an_error_step_emits_an_error_marker_and_the_turn_goes_on(workspace):
    runner = RunnerProcess(workspace, request(scripted=script([{"error": "bad thing"}, {"reply": "after"}])))
    error = runner.next_output()
    assert error["status"] == "error" and error["error"] == "bad thing" and error["result"] is None
    assert runner.next_output()["result"] == "after"
    runner.close()
    assert runner.wait() == 0


def test_a_raise_step_emits_an_error_with_the_session_and_exits_one(workspace):
    runner = RunnerProcess(workspace, request(sessionId="s-1", scripted=script([{"raise": "kaboom"}])))
    output = runner.next_output()
    assert output == {"status": "error", "result": None, "newSessionId": "s-1", "error": "kaboom"}
    assert runner.wait() == 1


def test_a_crash_step_exits_with_its_code_and_no_marker(workspace):
    runner = RunnerProcess(workspace, request(scripted=script([{"stderr": "dying now"}, {"crash": 3}])))
    assert runner.wait() == 3
    assert parse_outputs(runner.stdout) == []
    assert "dying now" in runner.stderr


def test_garbage_on_stdout_stays_outside_the_markers(workspace):
    steps = [{"stdout": "noise before\n"}, {"reply": "clean"}, {"stdout": "noise after\n"}]
    runner = RunnerProcess(workspace, request(scripted=script(steps)))
    assert runner.next_output()["result"] == "clean"
    runner.close()
    assert runner.wait() == 0
    assert "noise before" in runner.stdout and "noise after" in runner.stdout


def test_a_large_reply_arrives_whole_on_one_line(workspace):
    runner = RunnerProcess(workspace, request(scripted=script([{"reply_size": 3_000_000}])))
    result = runner.next_output(timeout=60)["result"]
    assert len(result) == 3_000_000
    runner.close()
    assert runner.wait() == 0


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "Failed to parse input: "),
    (b"[1, 2]", "Failed to parse input: expected a JSON object"),
    (json.dumps({"prompt": "x", "chatJid": "c", "isMain": False}).encode(), "missing field 'groupFolder'"),
    (json.dumps({"prompt": 5, "groupFolder": "g", "chatJid": "c", "isMain": False}).encode(), "'prompt'"),
    (json.dumps(request(provider="gpt")).encode(), "unknown provider"),
])
def test_bad_input_gives_an_error_marker_and_exit_one(workspace, payload, reason):
    runner = RunnerProcess(workspace, payload)
    assert runner.wait() == 1
    [output] = parse_outputs(runner.stdout)
    assert output["status"] == "error" and output["result"] is None
    assert output["error"].startswith("Failed to parse input: ") and reason in output["error"]


def test_unknown_input_fields_are_ignored(workspace):
    runner = RunnerProcess(workspace, request("p", somethingNew={"x": 1}))
    assert runner.next_output()["result"] == "p"
    runner.close()
    assert runner.wait() == 0


# --- task scripts ---------------------------------------------------

def test_a_task_script_that_says_no_ends_the_run_without_waking_the_agent(workspace):
    task = request("summarise", isScheduledTask=True, script='echo \'{"wakeAgent": false}\'')
    runner = RunnerProcess(workspace, task)
    assert runner.wait() == 0
    assert parse_outputs(runner.stdout) == [{"status": "success", "result": None}]


def test_a_task_script_that_wakes_replaces_the_prompt_with_its_data(workspace):
    body = 'echo "checking"; echo \'{"wakeAgent": true, "data": {"new": 3}}\''
    runner = RunnerProcess(workspace, request("summarise", isScheduledTask=True, script=body))
    expected = '[SCHEDULED TASK]\n\nScript output:\n{\n  "new": 3\n}\n\nInstructions:\nsummarise'
    assert runner.next_output()["result"] == expected
    runner.close()
    assert runner.wait() == 0


@pytest.mark.parametrize("body", [
    "exit 2",
    "echo not-json",
    "echo '{\"wakeAgent\": \"yes\"}'",
    "true",
])
def test_a_failing_or_unclear_task_script_does_not_wake(workspace, body):
    runner = RunnerProcess(workspace, request("t", isScheduledTask=True, script=body))
    assert runner.wait() == 0
    assert parse_outputs(runner.stdout) == [{"status": "success", "result": None}]


def test_a_script_is_ignored_outside_scheduled_tasks(workspace):
    runner = RunnerProcess(workspace, request("plain", script="exit 1"))
    assert runner.next_output()["result"] == "plain"
    runner.close()
    assert runner.wait() == 0


# --- the gateway token ------------------------------------------------------------

TOKEN = "gw-token-never-print-me-0123456789"


def gateway(workspace: Path) -> dict:
    """A gateway field pointing at a folder with no sockets: the runner still starts."""
    return {"token": TOKEN, "socketDir": str(workspace / "no-gateway"), "apiPort": 38129, "proxyPort": 38128}


def test_the_gateway_token_never_reaches_stdout_or_stderr(workspace):
    steps = [{"reply": "ok"}, {"tool": "send_message", "args": {"text": "hi"}},
             {"raise": f"failure mentioning {TOKEN}"}]
    runner = RunnerProcess(workspace, request(gateway=gateway(workspace), verbose=True, scripted=script(steps)))
    assert runner.wait() == 1
    assert TOKEN not in runner.stdout and TOKEN not in runner.stderr
    assert parse_outputs(runner.stdout)[-1]["error"] == "failure mentioning ***"


def test_the_gateway_token_is_not_in_the_runner_environment(workspace):
    # The task script inherits the runner's environment: it must not see it.
    body = 'printf \'{"wakeAgent": true, "data": "%s"}\\n\' "$(env | base64 -w0)"'
    runner = RunnerProcess(workspace, request("t", isScheduledTask=True, script=body, gateway=gateway(workspace)))
    result = runner.next_output()["result"]
    runner.close()
    assert runner.wait() == 0
    encoded = json.loads(result.split("Script output:\n", 1)[1].split("\n\nInstructions:")[0])
    environment = base64.b64decode(encoded).decode()
    assert "NANOCLAW_WORKSPACE=" in environment
    assert TOKEN not in environment and "ANTHROPIC_API_KEY=" not in environment


def test_a_ready_runner_with_no_prompt_says_nothing_until_its_first_input_and_answers_that(workspace):
    """A ready agent: started ahead of need, its first turn is the first message the host pipes in."""
    runner = RunnerProcess(workspace, request(""))
    with pytest.raises(AssertionError):
        runner.next_output(timeout=1.0)  # up and waiting: no empty turn, no output
    name = runner.send("the first real message")
    first = runner.next_output(timeout=5)
    assert (first["status"], first["result"], first["inputs"]) == ("success", "the first real message", [name])
    runner.send("a follow-up")
    assert runner.next_output(timeout=5)["result"] == "a follow-up"
    runner.close()
    assert runner.wait() == 0


def test_a_ready_runner_closed_before_any_input_exits_cleanly_with_no_output(workspace):
    runner = RunnerProcess(workspace, request(""))
    time.sleep(0.3)
    runner.close()
    assert runner.wait() == 0
    assert parse_outputs(runner.stdout) == []
