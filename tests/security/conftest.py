"""Fixtures for the attack tests: an install run as root or as uid 1000, and a hostile agent.

`host` is a fresh install whose host operations run in a subprocess as the
service's user: root, or the ordinary user whose uid equals the container's
(then the install, and the victim files, belong to that user). `agent` is a
container of the test image with the mounts the runner gives a group, its
entrypoint a long sleep, so a test can plant links from inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.types import Mount as DockerMount

from jobs.runtime import LABEL_GROUP, LABEL_INSTALL

HELPER = Path(__file__).with_name("host_ops.py")
SERVICE_UID = 1000
OLD_S = 30 * 86_400
VICTIM_FILES = ("canary.txt", "folder/inner.txt", "folder/old.txt", "folder/old.json", "folder/old.jsonl",
                "folder/container-old.log", "folder/latest")


@dataclass
class Host:
    """One install and the user its service runs as."""

    mode: str
    base: Path
    root: Path
    home: Path
    victim: Path

    @property
    def uid(self) -> int:
        return 0 if self.mode == "root" else SERVICE_UID

    def run(self, operation: str, **arguments) -> dict:
        """One host operation, as the service's user; its JSON answer."""
        command = [sys.executable, str(HELPER), operation, json.dumps(arguments)]
        if self.mode == "user":
            command = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups", *command]
        env = {"PATH": os.environ["PATH"], "NANOCLAW_ROOT": str(self.root), "HOME": str(self.home),
               "PYTHONDONTWRITEBYTECODE": "1", "LOG_LEVEL": "warning"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{operation} failed as {self.mode}:\n{done.stderr[-3000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def refusals(self) -> list[tuple[str, str, str, str]]:
        return [tuple(r) for r in self.run("refusals")["refusals"]]


def _plant_victim(victim: Path, uid: int) -> None:
    for relative in VICTIM_FILES:
        path = victim / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"canary {relative}\n")
    then = time.time() - OLD_S
    for path in [victim, *victim.rglob("*")]:
        os.chown(path, uid, uid)
        os.utime(path, (then, then))


@pytest.fixture(params=["root", "user"])
def host(request) -> Host:
    if os.getuid() != 0:
        pytest.fail("the attack tests start the service as root and as uid 1000: run the suite as root, as scripts/test.sh and CI do")
    base = Path(tempfile.mkdtemp(prefix="nanoclaw-sec-", dir="/tmp"))
    base.chmod(0o755)
    made = Host(mode=request.param, base=base, root=base / "install", home=base / "home", victim=base / "victim")
    for path in (made.root, made.home):
        path.mkdir()
        os.chown(path, made.uid, made.uid)
    _plant_victim(made.victim, made.uid)
    made.run("register", folder="family")
    yield made
    shutil.rmtree(base, ignore_errors=True)


def tree_state(top: Path) -> dict[str, tuple]:
    """Owner, mode, times and content (or link target) of everything under `top`, links not followed."""
    state = {}
    for path in [top, *sorted(top.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content = "-> " + os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        state[str(path.relative_to(top))] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, content)
    return state


class Agent:
    """A running container of the group, as hostile as a test makes it."""

    def __init__(self, container, user: str):
        self.container = container
        self.user = user

    def sh(self, command: str) -> tuple[int, str]:
        code, out = self.container.exec_run(["sh", "-c", command], user=self.user)
        return code, out.decode(errors="replace")

    def must(self, command: str) -> str:
        code, out = self.sh(command)
        assert code == 0, f"{command!r} failed in the container: {out}"
        return out

    def background(self, command: str) -> None:
        self.container.exec_run(["sh", "-c", command], user=self.user, detach=True)


def start_agent(host: Host, image: str, folder: str = "family", is_main: bool = False) -> Agent:
    """The group's container as the runner makes it, but sleeping instead of running the agent."""
    prepared = host.run("prepare", folder=folder, is_main=is_main)
    engine = docker.from_env()
    container = engine.containers.create(
        image, entrypoint=["sleep"], command=["900"], user=prepared["user"], name=f"nanoclaw-sec-{time.time_ns()}",
        labels={LABEL_INSTALL: str(host.root), LABEL_GROUP: folder},
        mounts=[DockerMount(target, source, type="bind", read_only=ro) for source, target, ro in prepared["mounts"]],
        network_mode="none", init=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
        pids_limit=512, mem_limit="512m",
    )
    container.start()
    return Agent(container, prepared["user"])


@pytest.fixture
def agent(host: Host, agent_image: str):
    made = start_agent(host, agent_image)
    yield made
    made.container.remove(force=True)
