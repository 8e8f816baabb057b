"""Start `nanoclaw run` as a real subprocess for end-to-end tests.

With `own_group=True` the service leads a process group of its own (its
worker child joins it), so `kill_group` ends the whole service at once, as
systemd does to a unit's control group, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from base.config import Settings
from router.channels.local import socket_path


class RouterProcess:
    def __init__(self, settings: Settings, *, worker: bool = False, own_group: bool = False,
                 as_user: list[str] | None = None, python: str = sys.executable, module: str = "nanoclaw.cli",
                 **env: str):
        """`as_user`: a command prefix that runs the service as another user (e.g. setpriv ...).

        `module`: the entry point, `nanoclaw.cli` unless a test wraps it (tests/whatsapp_service.py).
        """
        self.settings = settings
        self.stderr_path = settings.logs_dir / f"router-{time.monotonic_ns()}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [*(as_user or []), python, "-m", module, "run", *([] if worker else ["--no-worker"])],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=settings.root, start_new_session=own_group)
        self.own_group = own_group

    def wait_ready(self, timeout: float = 20, *, worker_too: bool = False) -> "RouterProcess":
        """Until the router is live (and, if asked, its worker consumes the queue)."""
        marks = ["router live", *(["worker consuming"] if worker_too else [])]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited with {self.proc.returncode}: {self.stderr()}")
            if all(mark in self.stderr() for mark in marks):
                return self
            time.sleep(0.05)
        raise AssertionError(f"router not ready after {timeout} s: {self.stderr()}")

    def worker_pid(self) -> int:
        """The pid of the worker the service started first (from its "worker started (pid N)" line)."""
        line = next(line for line in self.stderr().splitlines() if "worker started (pid" in line)
        return int(line.split("pid ")[1].rstrip(")"))

    @property
    def socket(self) -> Path:
        return socket_path(self.settings)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return Path(self.stderr_path).read_text()

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> "RouterProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.stop(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self._stderr.closed:
            self._stderr.close()

    def kill_group(self, timeout: float = 20) -> None:
        """SIGKILL the router and its worker together (needs `own_group`), then wait until both are gone."""
        if not self.own_group:
            raise ValueError("kill_group needs a service started with own_group=True")
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait_group_gone(timeout)

    def wait_group_gone(self, timeout: float = 20) -> int:
        """Wait until no live process is left in the service's group; returns the router's exit code."""
        code = self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = group_members(self.proc.pid)
        if left:
            raise AssertionError(f"processes {left} of the service's group outlived it")
        if not self._stderr.closed:
            self._stderr.close()
        return code


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members
