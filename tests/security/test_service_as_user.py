"""The whole service run as an ordinary user whose uid equals the container's (the desktop install).

Then the agent and the service share uid 1000, so nothing but the box keeps
them apart: no mount may show the service's files, no socket of the service
may be reachable, and the gateway must still be the only way out. The test
runs `nanoclaw run` under setpriv as uid 1000 (with the docker group), talks
to it in the local chat, and attacks from inside the agent's container.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import pytest

from base.config import load_settings
from events import EventLog
from rules.groups import register_group
from tests.observe import our_containers
from tests.router_process import RouterProcess
from tests.test_service_e2e import use_script
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

USER_UID = 1000
SECRET = "sk-ant-api03-user-install-key-never-in-the-box-51e0"


@pytest.fixture
def user_install(agent_image, monkeypatch):
    if os.geteuid() != 0:
        pytest.fail("starting the service as another user needs root: run the suite as root, as scripts/test.sh and CI do")
    base = Path(tempfile.mkdtemp(prefix="nc-user-", dir="/tmp"))
    base.chmod(0o755)
    root, home, run = base / "install", base / "home", base / "run"
    for folder in (root, home, run):
        folder.mkdir()
    run.chmod(0o700)
    env = dict(NANOCLAW_ROOT=str(root), HOME=str(home), CONTAINER_IMAGE=agent_image, AGENT_PROVIDER="scripted",
               IDLE_TIMEOUT="3000", LOCAL_CHAT_SOCKET=str(run / "chat.sock"), ANTHROPIC_API_KEY=SECRET)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    (root / ".env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
    settings = load_settings()
    settings.ensure_dirs()
    log = EventLog(settings.db_path)
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    log.close()
    use_script(settings, monkeypatch, {"main": {"turns": [[{"reply_prompt": True}, {"sleep": 40}]]}})
    subprocess.run(["chown", "-R", f"{USER_UID}:{USER_UID}", str(base)], check=True)
    as_user = ["setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}",
               f"--groups={grp.getgrnam('docker').gr_gid}", "--"]
    python, pythonpath = interpreter_for_others()
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    try:
        with RouterProcess(settings, worker=True, as_user=as_user, python=python) as service:
            yield settings, service.wait_ready(60, worker_too=True), [*as_user, python]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def interpreter_for_others() -> tuple[str, str]:
    """A Python 3.11 that uid 1000 may run, with this checkout and the venv's packages on its path.

    The venv's own interpreter may live in root's home (pyenv), which other users cannot enter.
    """
    import site
    import sys

    for candidate in (sys.executable, "/usr/bin/python3.11", "/usr/local/bin/python3.11"):
        # through a shell of that user: setpriv itself may reach a path the user's own children cannot
        probe = subprocess.run(["setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups", "sh", "-c",
                                'exec "$0" -c "import sys; print(sys.version_info[:2])"', candidate],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 11)":
            break
    else:
        raise AssertionError("no Python 3.11 that uid 1000 may run (install Debian's python3.11)")
    repo = str(Path(__file__).resolve().parents[2])
    return candidate, os.pathsep.join([repo, *site.getsitepackages()])


def running_box(settings):
    """This install's agent container once it runs (one being removed between listing and inspection is skipped)."""
    for container in our_containers(settings):
        try:
            container.reload()
        except docker.errors.NotFound:
            continue
        if container.status == "running":
            return container
    return None


def exec_sh(container, command: str) -> str:
    return container.exec_run(["sh", "-c", command], user=f"{USER_UID}:{USER_UID}").output.decode(errors="replace")


def test_a_service_run_by_the_containers_uid_answers_and_its_agent_stays_in_the_box(user_install):
    settings, service, as_user = user_install
    chat = subprocess.Popen([*as_user, "-m", "nanoclaw.cli", "chat", "--group", "main", "hello from the user install",
                             "--wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=settings.root)
    try:
        box = wait_for(lambda: running_box(settings), timeout=60, what="the agent's running container")
        assert box.attrs["Config"]["User"] == f"{USER_UID}:{USER_UID}"
        assert box.attrs["HostConfig"]["NetworkMode"] == "none"
        sockets = exec_sh(box, "find / -path /proc -prune -o -type s -print 2>/dev/null").split()
        assert sorted(sockets) == ["/run/nanoclaw/api.sock", "/run/nanoclaw/proxy.sock"]
        for hidden in ("data", "store", "logs"):  # other chats' transcripts, the event log, run logs
            assert exec_sh(box, f"ls -A /workspace/project/{hidden}") == ""
        assert exec_sh(box, "cat /workspace/project/.env") == ""
        assert exec_sh(box, f"grep -rl {SECRET} /workspace /home /run /tmp /etc 2>/dev/null; "
                            "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c sk-ant-") == "0\n"
        for target in ("http://127.0.0.1:9/", "http://172.17.0.1:2375/version"):  # the host, the Docker bridge
            assert exec_sh(box, f"curl -s -o /dev/null -w '%{{http_code}}' --noproxy '' --proxy "
                                f"http://127.0.0.1:3128 {target}") == "403"
        assert exec_sh(box, "curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:3129/v1/messages") == "401"
        out, err = chat.communicate(timeout=150)
        assert chat.returncode == 0 and "hello from the user install" in out, err
    finally:
        if chat.poll() is None:
            chat.kill()
