"""The per-run log file, `logs/runs/<folder>/container-<timestamp>.log`.

Written once per container run with v1's sections, plus what Pro adds: every
secret value masked, so the file can be read and shared without leaking a
key. The prompt itself is written only when LOG_LEVEL is debug or trace. It
lives in the install's logs, which no container sees, so no agent can plant a
link where the host writes it or read another run's log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from base.agent_paths import closing_fd, create_file, open_under
from base.logs import mask_secrets

RUNS_DIR = "runs"
LOG_MODE = 0o600


@dataclass
class RunRecord:
    """What happened in one run, for the log file."""

    group_name: str
    container: str
    is_main: bool
    started_iso: str
    duration_ms: int
    exit_code: int | None
    timed_out: bool
    had_output: bool
    input_summary: dict
    prompt_length: int
    session_id: str | None
    args: list[str] = field(default_factory=list)
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False


def run_logs_dir(logs_dir: Path, folder: str) -> Path:
    """`logs/runs/<folder>`: the group's run logs."""
    return logs_dir / RUNS_DIR / folder


def log_name(started_iso: str) -> str:
    return f"container-{started_iso.replace(':', '-').replace('.', '-')}.log"


def render(record: RunRecord, *, verbose: bool, failed: bool) -> str:
    if record.timed_out:
        return "\n".join([
            "=== Container Run Log (TIMEOUT) ===", f"Timestamp: {record.started_iso}",
            f"Group: {record.group_name}", f"Container: {record.container}",
            f"Duration: {record.duration_ms}ms", f"Exit Code: {record.exit_code}",
            f"Had Streaming Output: {str(record.had_output).lower()}",
        ])
    lines = [
        "=== Container Run Log ===", f"Timestamp: {record.started_iso}", f"Group: {record.group_name}",
        f"IsMain: {str(record.is_main).lower()}", f"Duration: {record.duration_ms}ms",
        f"Exit Code: {record.exit_code}", f"Stdout Truncated: {str(record.stdout_truncated).lower()}",
        f"Stderr Truncated: {str(record.stderr_truncated).lower()}", "",
    ]
    if verbose:
        lines += ["=== Input ===", json.dumps(record.input_summary, indent=2), ""]
    else:
        lines += ["=== Input Summary ===", f"Prompt length: {record.prompt_length} chars",
                  f"Session ID: {record.session_id or 'new'}", ""]
    if verbose or failed:
        lines += ["=== Container Args ===", " ".join(record.args), "", "=== Mounts ==="]
        lines += [f"{host} -> {target}{' (ro)' if ro else ''}" for host, target, ro in record.mounts]
        lines += ["", f"=== Stderr{' (TRUNCATED)' if record.stderr_truncated else ''} ===", record.stderr, "",
                  f"=== Stdout{' (TRUNCATED)' if record.stdout_truncated else ''} ===", record.stdout]
    else:
        lines += ["=== Mounts ==="] + [f"{target}{' (ro)' if ro else ''}" for _, target, ro in record.mounts] + [""]
    return "\n".join(lines)


def write(logs_dir: Path, folder: str, record: RunRecord, *, verbose: bool, failed: bool,
          secrets: list[str]) -> Path:
    """Write the run's log as a new file (`-1`, `-2`... when two runs start in the same millisecond)."""
    directory = run_logs_dir(logs_dir, folder)
    data = mask_secrets(render(record, verbose=verbose, failed=failed), secrets).encode("utf-8")
    fd = open_under(logs_dir, (RUNS_DIR, folder), create=True, mode=0o700)
    assert fd is not None
    base = log_name(record.started_iso)
    with closing_fd(fd):
        name, number = base, 0
        while not create_file(fd, name, data, mode=LOG_MODE, shown=directory / name):
            number += 1
            name = base.replace(".log", f"-{number}.log")
    return directory / name
