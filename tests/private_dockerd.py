"""A Docker engine of a test's own, to stop and start while the service runs.

The shared engine serves every other test on the machine, so it is never
stopped. This one has its own socket, data root, exec root, pid file and an
empty config file, no iptables rules (agent containers in tests use
network `none`), and a bridge interface of its own: a dockerd started with
`--bridge=none` deletes the host's `docker0`, which would cut every other
container on the machine off the network. It runs under `tini -s` in a session of its own,
like scripts/lib.sh starts the shared one, so orphaned shims are reaped.
The agent image is copied in with `docker save | docker load`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# Tried in order, as scripts/lib.sh does for the shared engine: overlayfs, then the slow but universal vfs.
STORAGE_FLAGS = ([], ["--storage-driver=vfs"])


class PrivateDockerd:
    def __init__(self, base: Path | None = None):
        self.base = base or Path(tempfile.mkdtemp(prefix="ncd-", dir="/tmp"))  # short: socket paths live here
        self.host = f"unix://{self.base / 'docker.sock'}"
        self.log_path = self.base / "dockerd.log"
        self.proc: subprocess.Popen | None = None
        self._storage: list[str] | None = None
        self.bridge = f"ncd{os.getpid() % 100000}{int(time.time()) % 1000}"[:15]
        (self.base / "daemon.json").write_text("{}")

    def _command(self, storage: list[str]) -> list[str]:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        reaper = [shutil.which("tini"), "-s", "--"] if shutil.which("tini") else []
        return [*reaper, dockerd, "--host", self.host, "--data-root", str(self.base / "data"),
                "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "docker.pid"),
                "--config-file", str(self.base / "daemon.json"), f"--bridge={self.bridge}", "--iptables=false",
                "--ip6tables=false", "--shutdown-timeout=2", *storage]

    def _ensure_bridge(self) -> None:
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode == 0:
            return
        for command in (["ip", "link", "add", "name", self.bridge, "type", "bridge"],
                        ["ip", "addr", "add", "10.254.254.1/24", "dev", self.bridge],
                        ["ip", "link", "set", self.bridge, "up"]):
            subprocess.run(command, check=True, capture_output=True)

    def start(self) -> "PrivateDockerd":
        self._ensure_bridge()
        for storage in ([self._storage] if self._storage is not None else STORAGE_FLAGS):
            with open(self.log_path, "a") as log:
                self.proc = subprocess.Popen(self._command(storage), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_up():
                self._storage = storage
                return self
            self.stop()
        raise RuntimeError(f"the private dockerd did not start; see {self.log_path}:\n{self._log_tail()}")

    def _wait_up(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.answers():
                return True
            time.sleep(0.1)
        return False

    def answers(self) -> bool:
        try:
            engine = docker.DockerClient(base_url=self.host, timeout=5)
            try:
                return bool(engine.ping())
            finally:
                engine.close()
        except (DockerException, RequestException):
            return False

    def stop(self) -> None:
        """What `systemctl stop docker` does: SIGTERM, and the engine stops its containers and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # tini hands it to dockerd, which stops its containerd itself
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def load_image(self, tag: str) -> None:
        """Copy an image from the shared engine into this one."""
        shared = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE, env=shared)
        load = subprocess.run(["docker", "load", "-q"], stdin=save.stdout, capture_output=True, text=True,
                              env={**shared, "DOCKER_HOST": self.host})
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise RuntimeError(f"copying {tag} into the private dockerd failed: {load.stderr.strip()}")

    def remove(self) -> None:
        """Stop the engine and delete its files (after unmounting anything it left mounted)."""
        self.stop()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.base))]
        for target in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""
