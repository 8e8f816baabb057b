"""Start `nanoclaw run` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nanoclaw.config import Settings
from router.channels.local import socket_path


class RouterProcess:
    def __init__(self, settings: Settings, *, worker: bool = False, **env: str):
        self.settings = settings
        self.stderr_path = settings.logs_dir / f"router-{time.monotonic_ns()}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nanoclaw.cli", "run", *([] if worker else ["--no-worker"])],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=settings.root)

    def wait_ready(self, timeout: float = 20) -> "RouterProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited with {self.proc.returncode}: {self.stderr()}")
            if "router live" in self.stderr():
                return self
            time.sleep(0.05)
        raise AssertionError(f"router not ready after {timeout} s: {self.stderr()}")

    @property
    def socket(self) -> Path:
        return socket_path(self.settings.data_dir)

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
