"""The README's promises: two set-up commands, and sqlite-utils queries that work."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from events import types as t
from rules.groups import register_group

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SQLITE_UTILS = Path(sys.executable).parent / "sqlite-utils"


def _queries() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if "sqlite-utils query" in line]


def test_the_readme_opens_with_exactly_two_setup_commands():
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["./scripts/install.sh", "./scripts/test.sh"]
    assert "exec bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_the_readme_queries_run_and_find_what_they_promise(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    log.append(t.MessageReceived(chat_jid="local:me", message_id="1", sender="u", sender_name="Alice",
                                 content="hello from today", timestamp="2026-01-01T00:00:00.000Z"))
    log.append(t.AgentRunFinished(run_id="r1", folder="main", chat_jid="local:me", status="timeout",
                                  error="Container timed out after 1800000ms"))
    log.append(t.OutboundQueued(outbound_id="o1", chat_jid="local:me", text="a reply"))
    log.append(t.OutboundSent(outbound_id="o1", chat_jid="local:me"))
    queries = _queries()
    assert len(queries) == 3
    outputs = []
    for line in queries:
        argv = shlex.split(line)
        argv[0] = str(SQLITE_UTILS)
        argv[2] = str(settings.db_path)
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert "hello from today" in outputs[0]
    assert "Container timed out" in outputs[1]
    assert "a reply" in outputs[2]
