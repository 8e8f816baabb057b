"""The pre-check script of a scheduled task.

A task may carry a bash script that decides whether the agent is worth
waking at all (a cheap "anything new?" check). The script's last stdout
line is JSON with a boolean `wakeAgent`; anything else, including a crash,
a timeout or too much output, means "do not wake".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from agent_runner.protocol import log

SCRIPT_PATH = Path("/tmp/task-script.sh")
SCRIPT_TIMEOUT_S = 30.0
SCRIPT_MAX_OUTPUT_BYTES = 1024 * 1024
STDERR_LOG_CHARS = 500
READER_GRACE_S = 2.0


@dataclass(frozen=True)
class ScriptOutcome:
    wake: bool
    data: Any = None


class _CappedReader(threading.Thread):
    """Reads a pipe to EOF, keeping at most `cap` bytes; flags an overflow."""

    def __init__(self, pipe: IO[bytes], cap: int, on_overflow: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.pipe, self.cap, self.on_overflow = pipe, cap, on_overflow
        self.data = bytearray()
        self.overflow = threading.Event()

    def run(self) -> None:
        while chunk := self.pipe.read(65536):
            if len(self.data) + len(chunk) > self.cap:
                self.overflow.set()
                self.on_overflow()
                return
            self.data += chunk


def run_task_script(script: str, path: Path = SCRIPT_PATH) -> ScriptOutcome:
    """Write and run the script with bash; read its verdict from the last line."""
    path.write_text(script, encoding="utf-8")
    path.chmod(0o755)
    proc = subprocess.Popen(
        ["bash", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out = _CappedReader(proc.stdout, SCRIPT_MAX_OUTPUT_BYTES, lambda: _signal_group(proc))
    err = _CappedReader(proc.stderr, SCRIPT_MAX_OUTPUT_BYTES, lambda: _signal_group(proc))
    out.start()
    err.start()
    problem = _wait(proc, out, err)
    if err.data:
        log(f"task script stderr: {err.data.decode('utf-8', 'replace')[:STDERR_LOG_CHARS]}")
    if problem:
        log(f"task script failed ({problem}); not waking the agent")
        return ScriptOutcome(False)
    return parse_verdict(out.data.decode("utf-8", "replace"))


def _wait(proc: subprocess.Popen, out: _CappedReader, err: _CappedReader) -> str | None:
    """Wait for the script, then kill whatever it left behind. Returns a problem or None."""
    problem = None
    try:
        code = proc.wait(timeout=SCRIPT_TIMEOUT_S)
        if code != 0:
            problem = f"exit code {code}"
    except subprocess.TimeoutExpired:
        problem = f"timed out after {SCRIPT_TIMEOUT_S:.0f}s"
    # Background children may still hold the pipes open: give the readers a
    # moment to take what is buffered, then end the whole process group.
    out.join(READER_GRACE_S)
    _kill_group(proc)
    out.join(READER_GRACE_S)
    err.join(READER_GRACE_S)
    if out.overflow.is_set() or err.overflow.is_set():
        problem = f"more than {SCRIPT_MAX_OUTPUT_BYTES} bytes of output"
    return problem


def _signal_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    _signal_group(proc)
    proc.wait()


def parse_verdict(stdout: str) -> ScriptOutcome:
    """The last line of the trimmed output as `{"wakeAgent": bool, "data": ...}`."""
    lines = stdout.strip().splitlines()
    if not lines:
        log("task script printed nothing; not waking the agent")
        return ScriptOutcome(False)
    try:
        verdict = json.loads(lines[-1])
    except ValueError:
        log(f"task script's last line is not JSON: {lines[-1][:200]}")
        return ScriptOutcome(False)
    if not isinstance(verdict, dict) or not isinstance(verdict.get("wakeAgent"), bool):
        log("task script's verdict has no boolean wakeAgent; not waking the agent")
        return ScriptOutcome(False)
    return ScriptOutcome(verdict["wakeAgent"], verdict.get("data"))


def wake_prompt(data: Any, task_prompt: str) -> str:
    """The prompt that replaces the task's when the script wakes the agent."""
    return (
        "[SCHEDULED TASK]\n\nScript output:\n"
        f"{json.dumps(data, indent=2, ensure_ascii=False)}\n\n"
        f"Instructions:\n{task_prompt}"
    )
