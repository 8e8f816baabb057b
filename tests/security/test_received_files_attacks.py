"""A person's file is saved into the group's folder while the agent plants links there: nothing escapes.

From inside a real container (uid 1000) the agent makes `inbox` a link to a
victim folder, plants a link at the very name the next file will get, or
flips `inbox` between a folder and a link while the host saves files; the
host's saving step (the one every channel uses) runs as root and as the
user uid 1000. The victim must never change, and every saved file must be
in a real `inbox` folder of the group.
"""

from __future__ import annotations

import time

import pytest

from tests.security.conftest import tree_state
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

G = "/workspace/group"


def _saved(line: str) -> str:
    assert line.startswith("[Document: /workspace/group/inbox/"), line
    return line.split("/workspace/group/")[1].split(" (")[0]


def test_inbox_planted_as_a_link_is_replaced_by_a_real_folder_and_the_victim_is_untouched(host, agent):
    before = tree_state(host.victim)
    agent.must(f"ln -s {host.victim}/folder {G}/inbox")
    [line] = host.run("receive_file", folder="family", message_id="m1", name="notes.txt", text="hello\n")["lines"]
    assert agent.must(f"test -d {G}/inbox && ! test -L {G}/inbox && cat {G}/{_saved(line)}") == "hello\n"
    assert tree_state(host.victim) == before


def test_a_link_planted_at_the_next_files_name_is_replaced_not_written_through(host, agent):
    before = tree_state(host.victim)
    agent.must(f"mkdir -p {G}/inbox && ln -s {host.victim}/canary.txt {G}/inbox/m2-1-notes.txt")
    [line] = host.run("receive_file", folder="family", message_id="m2", name="notes.txt", text="mine\n")["lines"]
    assert _saved(line) == "inbox/m2-1-notes.txt"
    assert agent.must(f"! test -L {G}/inbox/m2-1-notes.txt && cat {G}/inbox/m2-1-notes.txt") == "mine\n"
    assert tree_state(host.victim) == before


def test_inbox_flipped_between_a_folder_and_a_link_while_files_are_saved_never_leads_out(host, agent):
    before = tree_state(host.victim)
    flips = (f"mkdir -p {G}/real; ln -sfn real {G}/inbox.d; mv -Tf {G}/inbox.d {G}/inbox 2>/dev/null; "
             f"ln -sfn {host.victim}/folder {G}/inbox.l; mv -Tf {G}/inbox.l {G}/inbox 2>/dev/null;")
    agent.background(f"i=0; while [ ! -e {G}/.stop ] && [ $i -lt 20000 ]; do i=$((i+1)); {flips} done; "
                     f"echo $i > {G}/.flipped")
    time.sleep(0.3)
    lines = host.run("receive_file", folder="family", message_id="m3", name="notes.txt", text="flip\n",
                     times=200)["lines"]
    agent.must(f"touch {G}/.stop")
    wait_for(lambda: agent.sh(f"test -e {G}/.flipped")[0] == 0, timeout=60)
    assert int(agent.must(f"cat {G}/.flipped")) > 1  # the flipping really ran alongside
    assert all(line.startswith("[Document: ") for line in lines)
    assert tree_state(host.victim) == before
