"""The real Claude CLI meeting a failing model API: how fast it gives up, and how its error is sorted.

Through a real gateway, a stand-in API answers every call with 401, 429,
529 or 500, or says nothing at all. The CLI's own retries are bounded
(CLAUDE_CODE_MAX_RETRIES), so each case ends in an error output within
seconds, and the host's classification (rules/failures.py) reads the CLI's
actual words: a refused key is `credentials` (never retried), the rest are
worth another attempt.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobs.gateway import container_environment
from rules.failures import classify, retryable
from tests.agent_stub_api import RunnerContainer, StubAnthropicAPI, gateway_in_front, make_workspace

pytestmark = pytest.mark.docker

KEY = "sk-ant-api03-failures-key-77c1"
GIVE_UP_S = 60  # the CLI's bounded retries, not its default minutes


def first_output(agent_image: str, tmp_path: Path, api: StubAnthropicAPI) -> tuple[dict, float, str]:
    workspace = make_workspace(tmp_path / "workspace")
    claude_dir = tmp_path / "claude"
    claude_dir.mkdir()
    claude_dir.chmod(0o777)
    with gateway_in_front(api, KEY, "failures") as access:
        request = {"prompt": "hello", "groupFolder": "family", "chatJid": "family@g.us", "isMain": False,
                   "provider": "claude", "gateway": access.runner_field()}
        runner = RunnerContainer(agent_image, workspace, request, claude_dir=claude_dir,
                                 gateway_dir=access.directory, environment=container_environment())
        started = time.monotonic()
        try:
            output = runner.next_output(timeout=GIVE_UP_S + 60)
            return output, time.monotonic() - started, runner.stderr
        finally:
            runner.close()
            runner.wait(30)
            runner.remove()


@pytest.mark.parametrize("status, kind", [(401, "credentials"), (429, "rate_limit"), (529, "rate_limit"),
                                          (500, "api_error")])
def test_the_cli_gives_up_in_seconds_and_its_error_is_sorted(agent_image, root, tmp_path, status, kind):
    with StubAnthropicAPI(fail_with=status) as api:
        output, took, stderr = first_output(agent_image, tmp_path, api)
    assert output["status"] == "error", stderr[-2000:]
    assert took < GIVE_UP_S, f"the CLI took {took:.0f} s to give up"
    assert classify(output["error"]) == kind, output["error"]
    assert retryable(kind) is (kind != "credentials")
    assert KEY not in output["error"]


def test_an_api_that_says_nothing_is_given_up_on_by_the_gateway(agent_image, root, tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_API_SILENCE_TIMEOUT", "2")
    with StubAnthropicAPI(hang_s=30) as api:
        output, took, stderr = first_output(agent_image, tmp_path, api)
    assert output["status"] == "error", stderr[-2000:]
    assert took < GIVE_UP_S and classify(output["error"]) == "api_error", output["error"]
