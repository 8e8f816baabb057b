"""What the agent cannot reach at all: its mount points, the host's snapshots, and main's hidden folders."""

from __future__ import annotations

import pytest

from tests.security.conftest import start_agent

pytestmark = pytest.mark.docker

REPLACEMENTS = [
    "mv /workspace/ipc/input /workspace/ipc/gone", "rmdir /workspace/ipc/tasks",
    "ln -sfnT /tmp /workspace/ipc/messages", "mv /workspace/group /workspace/moved",
    "mv /home/node/.claude /home/node/moved", "touch /workspace/ipc/snapshots/x",
    "rm -f /workspace/ipc/snapshots/current_tasks.json", "ln -s /tmp /workspace/ipc/snapshots/link",
]


def test_the_agent_can_neither_replace_its_mount_points_nor_write_the_snapshots(host, agent):
    host.run("everything", folder="family")  # the snapshots exist
    succeeded = [command for command in REPLACEMENTS if agent.sh(command)[0] == 0]
    assert succeeded == []
    ipc = host.root / "data" / "ipc" / "family"
    assert sorted(p.name for p in ipc.iterdir() if not p.is_symlink() and p.is_dir()) == \
        ["input", "messages", "snapshots", "tasks"]
    assert (ipc / "snapshots" / "current_tasks.json").read_text() == "[]"


def test_main_sees_no_transcripts_event_log_run_logs_or_env(host, agent_image):
    host.run("register", folder="main", is_main=True)
    host.run("everything", folder="family")  # a run log and another group's files exist
    (host.root / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-secret\n")
    local = host.root / "data" / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / "alice.jsonl").write_text('{"text": "a private chat"}\n')
    whatsapp = host.root / "store" / "whatsapp"  # a linked device's keys speak for the owner's account
    whatsapp.mkdir(parents=True, exist_ok=True)
    (whatsapp / "session.db").write_text("wa-device-identity-key\n")
    main = start_agent(host, agent_image, "main", is_main=True)
    try:
        assert main.sh("cat /workspace/project/.env") == (0, "")
        for private in ("data", "store", "logs"):
            assert main.sh(f"ls -A /workspace/project/{private}") == (0, ""), private
            assert main.sh(f"touch /workspace/project/{private}/x")[0] != 0
        found = main.must("find /workspace/project /workspace/global /workspace/group -name '*.jsonl' "
                          "-o -name 'messages.db*' -o -name 'container-*.log' -o -name 'sk-ant*' "
                          "-o -name 'session.db*' -o -name whatsapp")
        assert found == ""
        assert main.sh("grep -r sk-ant-secret /workspace 2>/dev/null")[0] != 0
        assert main.sh("grep -r wa-device-identity-key /workspace 2>/dev/null")[0] != 0
    finally:
        main.container.remove(force=True)
