"""An agent asks the host to send "its" file after planting links: the host never reads what they point at.

From inside a real container (uid 1000) the file the agent names is made a
link to a victim file, its folder a link to a victim folder, a hard link, or
is flipped between a real file and a link while the host takes copies; the
host's copy step runs as root and as the user uid 1000. No copy may ever
hold a victim's content.
"""

from __future__ import annotations

import time

import pytest

from tests.security.conftest import tree_state
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

G = "/workspace/group"


def test_a_link_named_as_the_file_is_refused(host, agent):
    agent.must(f"mkdir -p {G}/browser && ln -s {host.victim}/canary.txt {G}/browser/shot.png")
    answer = host.run("send_file", folder="family", path="browser/shot.png")
    assert answer["taken"] == [] and "symbolic link" in answer["refused"][0]


def test_a_linked_folder_on_the_way_is_refused(host, agent):
    agent.must(f"ln -s {host.victim}/folder {G}/browser")
    answer = host.run("send_file", folder="family", path="browser/inner.txt")
    assert answer["taken"] == [] and "symbolic link" in answer["refused"][0]


def test_a_hard_link_is_refused(host, agent):
    agent.must(f"echo mine > {G}/mine.txt && ln {G}/mine.txt {G}/shot.png")
    answer = host.run("send_file", folder="family", path="shot.png")
    assert answer["taken"] == [] and "2 hard links" in answer["refused"][0]


def test_a_file_swapped_for_a_link_while_the_host_copies_is_never_read_through(host, agent):
    before = tree_state(host.victim)
    path = f"{G}/shot.png"
    flips = f"echo mine > {path}.f; mv -f {path}.f {path}; ln -sfn {host.victim}/canary.txt {path}.l; mv -Tf {path}.l {path};"
    agent.background(f"i=0; while [ ! -e {G}/.stop ] && [ $i -lt 20000 ]; do i=$((i+1)); {flips} done; "
                     f"echo $i > {G}/.flipped")
    time.sleep(0.3)
    taken, refused = [], []
    for _ in range(10):  # until the host has met both states (a loaded machine may need more rounds)
        answer = host.run("send_file", folder="family", path="shot.png", times=100)
        taken += answer["taken"]
        refused += answer["refused"]
        if taken and refused:
            break
    agent.must(f"touch {G}/.stop")
    wait_for(lambda: agent.sh(f"test -e {G}/.flipped")[0] == 0, timeout=60)
    assert int(agent.must(f"cat {G}/.flipped")) > 1  # the flipping really ran alongside
    assert taken and refused
    assert set(taken) == {"mine\n"}
    assert tree_state(host.victim) == before
