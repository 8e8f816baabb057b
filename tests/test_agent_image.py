"""The agent image, for real: built from agent-container/, run under Docker.

The `test` target is built once per session (only when missing or older than
its sources). The runner then runs as uid 1000 without a network. The Claude
provider's bundled Claude Code CLI reaches a local stand-in of the Messages
API only through a real credential gateway (jobs/gateway.py) whose run
socket is mounted into the container, as in production: the CLI holds the
run's token, the stand-in sees the real key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest

from jobs.image import IMAGE_TEST_TAG, build_image, check_image, image_is_stale
from tests.agent_stub_api import (FAIL_MARKER, FINAL_TEXT, SEND_TOOL, SLOW_MARKER, TOOL_TEXT, RunnerContainer,
                                  StubAnthropicAPI, gateway_in_front, make_workspace, parse_outputs)

pytestmark = pytest.mark.docker

API_KEY = "sk-test-stand-in-key-5f3c9a1e"   # the host's real key: only the gateway has it
GLOBAL_MEMORY = "Global memory: always answer in haiku (marker 7d41)."


@pytest.fixture(scope="session")
def agent_image() -> str:
    if image_is_stale(IMAGE_TEST_TAG):
        build_image(target="test", tag=IMAGE_TEST_TAG, on_progress=lambda line: None)
    return IMAGE_TEST_TAG


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = make_workspace(tmp_path / "workspace")
    (ws / "global" / "CLAUDE.md").write_text(GLOBAL_MEMORY)
    return ws


@pytest.fixture
def claude_dir(tmp_path: Path) -> Path:
    path = tmp_path / "claude"
    path.mkdir()
    path.chmod(0o777)
    return path


@pytest.fixture
def api():
    with StubAnthropicAPI() as stand_in:
        yield stand_in


@pytest.fixture
def gateway_run(root, api):
    """A real gateway in front of the stand-in, holding the key; yields (request field, socket folder)."""
    with gateway_in_front(api, API_KEY) as access:
        yield access.runner_field(), access.directory


def claude_runner(image, workspace, claude_dir, gateway_run, prompt: str, **fields) -> RunnerContainer:
    field, directory = gateway_run
    return RunnerContainer(image, workspace, request(prompt, provider="claude", gateway=field, **fields),
                           claude_dir=claude_dir, gateway_dir=directory)


@pytest.fixture
def containers():
    started: list[RunnerContainer] = []
    yield started
    for runner in started:
        runner.remove()


def request(prompt: str, **fields) -> dict:
    base = {"prompt": prompt, "groupFolder": "family", "chatJid": "family@g.us", "isMain": False,
            "assistantName": "Andy", "provider": "scripted", "timezone": "Europe/Berlin"}
    base.update(fields)
    return base


def test_the_image_passes_its_own_check(agent_image):
    summary = check_image(agent_image)
    assert summary.startswith(f"{agent_image}: runner answered")


def test_the_image_runs_python_311_as_node_with_the_workspace_layout(agent_image):
    client = docker.from_env()
    try:
        output = client.containers.run(
            agent_image, entrypoint=["/bin/sh", "-c"], network_mode="none", remove=True,
            command=["id -u; id -g; /opt/agent/bin/python -V; stat -c '%U %a %n' /home/node "
                     "/workspace/group /workspace/ipc/input; echo $PYTHONPATH"],
        ).decode()
    finally:
        client.close()
    lines = output.split("\n")
    assert lines[:2] == ["1000", "1000"]
    assert lines[2].startswith("Python 3.11")
    assert "node 777 /home/node" in output and "node 755 /workspace/ipc/input" in output
    assert lines[6] == "/app"


def test_scripted_runner_in_a_container_echoes_pipes_and_closes(agent_image, workspace, claude_dir, containers):
    steps = [{"reply_prompt": True}, {"tool": "send_message", "args": {"text": "from the box"}}]
    runner = RunnerContainer(agent_image, workspace, request("hello box", scripted={"turns": [steps]}),
                             claude_dir=claude_dir)
    containers.append(runner)
    assert runner.next_output(timeout=60)["result"] == "hello box"
    time.sleep(0.2)
    started = time.monotonic()
    runner.send("a follow-up")
    assert runner.next_output(timeout=10)["result"] == "a follow-up"
    latency = time.monotonic() - started
    runner.close()
    assert runner.wait() == 0
    assert latency < 0.5, f"follow-up through the bind mount took {latency * 1000:.0f} ms"
    [message] = (workspace / "ipc" / "messages").glob("*.json")
    assert message.stat().st_uid == 1000
    assert json.loads(message.read_text())["text"] == "from the box"


def test_claude_provider_runs_a_tool_turn_against_the_stand_in_api(
        agent_image, workspace, claude_dir, containers, api, gateway_run):
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, "please say hello")
    containers.append(runner)
    first = runner.next_output(timeout=120)
    runner.send("and once more")
    second = runner.next_output(timeout=60)
    runner.close()
    code = runner.wait(timeout=60)
    inspected = runner.container.attrs
    assert code == 0, runner.stderr[-3000:]
    assert first["status"] == "success" and first["result"] == FINAL_TEXT
    assert second["result"] == FINAL_TEXT and second["newSessionId"] == first["newSessionId"]

    messages = [json.loads(p.read_text()) for p in sorted((workspace / "ipc" / "messages").glob("*.json"))]
    assert messages and set(messages[0]) == {"type", "chatJid", "text", "groupFolder", "timestamp"}
    assert messages[0] | {"timestamp": None} == {
        "type": "message", "chatJid": "family@g.us", "text": TOOL_TEXT, "groupFolder": "family", "timestamp": None,
    }

    calls = api.model_requests()
    assert calls, "the CLI never asked the stand-in for a completion"
    assert all(call.headers.get("x-api-key") == API_KEY for call in calls)  # added by the gateway
    assert SEND_TOOL in calls[0].tool_names and "mcp__nanoclaw__register_group" not in calls[0].tool_names
    assert GLOBAL_MEMORY in calls[0].system_text
    assert any(call.has_tool_result() for call in calls)
    assert calls[-1].last_user_text() == "and once more"

    for text in (runner.stdout, runner.stderr, json.dumps(inspected)):
        assert API_KEY not in text and gateway_run[0]["token"] not in text
    session = first["newSessionId"]
    assert (claude_dir / "projects" / "-workspace-group" / f"{session}.jsonl").is_file()


def test_main_group_is_offered_register_group_and_no_global_prompt(
        agent_image, workspace, claude_dir, containers, api, gateway_run):
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, "hi", isMain=True)
    containers.append(runner)
    assert runner.next_output(timeout=120)["result"] == FINAL_TEXT
    runner.close()
    assert runner.wait(timeout=60) == 0
    first = api.model_requests()[0]
    assert "mcp__nanoclaw__register_group" in first.tool_names
    assert GLOBAL_MEMORY not in first.system_text


def test_resuming_an_unknown_session_reports_it_for_the_host_to_clear(
        agent_image, workspace, claude_dir, containers, gateway_run):
    stale = "0b3f7c1e-1111-4222-8333-944455556666"
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, "hi", sessionId=stale)
    containers.append(runner)
    assert runner.wait(timeout=120) == 1
    [output] = parse_outputs(runner.stdout)
    assert output["status"] == "error"
    assert "no conversation found" in output["error"].lower()
    assert API_KEY not in runner.stdout + runner.stderr


def test_compaction_archives_the_conversation_into_the_group_folder(
        agent_image, workspace, claude_dir, containers, gateway_run):
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, "remember the milk", assistantName="Bob")
    containers.append(runner)
    assert runner.next_output(timeout=120)["result"] == FINAL_TEXT
    runner.send("/compact")
    runner.next_output(timeout=60)
    runner.close()
    assert runner.wait(timeout=60) == 0
    [archive] = (workspace / "group" / "conversations").glob("*.md")
    text = archive.read_text()
    assert text.startswith("# Conversation\n\nArchived: ")
    assert "**User**: remember the milk" in text and f"**Bob**: {FINAL_TEXT}" in text


def test_a_failed_turn_is_an_error_output_and_the_session_goes_on(
        agent_image, workspace, claude_dir, containers, gateway_run):
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, "hi")
    containers.append(runner)
    first = runner.next_output(timeout=120)
    breaking = runner.send(f"{FAIL_MARKER} this one breaks")
    failed = runner.next_output(timeout=60)
    asked = runner.send("and now?")
    recovered = runner.next_output(timeout=60)
    runner.close()
    assert runner.wait(timeout=60) == 0
    assert failed["status"] == "error" and "400" in failed["error"]
    assert failed["newSessionId"] == first["newSessionId"] == recovered["newSessionId"]
    assert failed["inputs"] == [breaking]  # an error output: the host does not count it as handled
    assert recovered == {"status": "success", "result": FINAL_TEXT, "newSessionId": first["newSessionId"],
                         "inputs": [asked]}


def test_a_follow_up_sent_mid_turn_joins_that_turn_and_its_result_names_it(
        agent_image, workspace, claude_dir, containers, api, gateway_run):
    """The CLI takes a message that arrives while it works into the running turn ("The user sent a new
    message while you were working"), so that turn's result is the one that answers it, and says so."""
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, f"{SLOW_MARKER} think hard")
    containers.append(runner)
    deadline = time.monotonic() + 60
    while not any(SLOW_MARKER in r.last_user_text() for r in api.requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    follow_up = runner.send("and meanwhile?")  # the first turn is still waiting for the model
    result = runner.next_output(timeout=60)
    runner.close()
    assert runner.wait(timeout=60) == 0
    asked = [r.last_user_text() for r in api.requests if r.path.startswith("/v1/messages")]
    assert any("and meanwhile?" in text for text in asked[1:])  # the model saw it within the same turn
    assert result["status"] == "success" and result["inputs"] == [follow_up]


def test_a_ready_claude_agent_starts_its_cli_without_a_prompt_and_answers_its_first_input(
        agent_image, workspace, claude_dir, containers, api, gateway_run):
    """The CLI of a ready agent is up before anyone writes; the first piped message is its first turn."""
    runner = claude_runner(agent_image, workspace, claude_dir, gateway_run, "", verbose=True)
    containers.append(runner)
    deadline = time.monotonic() + 60
    while "the CLI is up and waits for the first input" not in runner.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3)  # the CLI's start-up is done well within this; it must not ask the model anything yet
    assert api.model_requests() == []
    name = runner.send("hello from a person")
    first = runner.next_output(timeout=60)
    runner.close()
    assert runner.wait(timeout=60) == 0, runner.stderr[-3000:]
    assert first["status"] == "success" and first["inputs"] == [name]
    calls = api.model_requests()
    assert calls and calls[0].last_user_text() == "hello from a person"
