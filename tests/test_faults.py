"""Fault points: the scope of a kill, and a clear error for a bad scope."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

HIT = "from base.faults import fault_point; fault_point('here'); print('survived')"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_an_unknown_scope_is_a_clear_error_naming_the_setting():
    result = _python(HIT, NANOCLAW_FAULT="here", NANOCLAW_FAULT_SCOPE="everything")
    assert result.returncode == 1
    assert "NANOCLAW_FAULT_SCOPE must be one of process, group, not 'everything'" in result.stderr


def test_the_process_scope_kills_only_the_process_at_the_point():
    result = _python(HIT, NANOCLAW_FAULT="here", NANOCLAW_FAULT_SCOPE="process")
    assert result.returncode == -signal.SIGKILL and "survived" not in result.stdout


def test_a_group_scope_fault_in_a_child_kills_its_parent_the_group_leader():
    parent = textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {HIT!r}])
        time.sleep(30)
        print("parent survived")
    """)
    proc = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60,
                          start_new_session=True,
                          env={**os.environ, "NANOCLAW_FAULT": "here", "NANOCLAW_FAULT_SCOPE": "group"})
    assert proc.returncode == -signal.SIGKILL and "survived" not in proc.stdout


def test_a_group_scope_fault_never_kills_a_group_its_process_and_parent_do_not_lead():
    # leader -> middle -> faulty: the faulty process's group is led by its grandparent, so it dies alone
    middle = f"import subprocess, sys; print(subprocess.run([sys.executable, '-c', {HIT!r}]).returncode)"
    leader = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {middle!r}]); print('leader survived')"
    proc = subprocess.run([sys.executable, "-c", leader], capture_output=True, text=True, timeout=60,
                          start_new_session=True,
                          env={**os.environ, "NANOCLAW_FAULT": "here", "NANOCLAW_FAULT_SCOPE": "group"})
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [str(-signal.SIGKILL), "leader survived"]
