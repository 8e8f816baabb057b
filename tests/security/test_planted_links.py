"""An agent plants links in every folder it can write; the host never acts on their targets.

From inside a real container (uid 1000) each path the host touches is made a
link to a file, a link to a folder, a dangling link, or a hard link, or is
flipped between a real entry and a link while the host works; then the host
prepares the next run, pipes a message, asks the agent to finish, clears its
input, writes a run log and the snapshots, and runs the clean-up. Nothing
outside the group's folders may change, as root or as the user uid 1000.
"""

from __future__ import annotations

import time

import pytest

from tests.security.conftest import tree_state
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

G, C, I = "/workspace/group", "/home/node/.claude", "/workspace/ipc/input"
PIPED = "1000-guess.json"  # the agent predicted the name of the next piped message
FILE_TARGETS = (f"{G}/CLAUDE.md", f"{C}/settings.json", f"{I}/_close", f"{I}/{PIPED}", f"{I}/leftover.json",
                f"{I}/leftover.tmp")
DIR_TARGETS = (f"{G}/logs", f"{C}/debug", f"{C}/todos", f"{C}/telemetry", f"{C}/projects/-workspace-group")
OLD = "-d '30 days ago'"


def expected_refusals(host) -> set[tuple[str, str]]:
    """(operation, host path) the host must record when every target is a link."""
    claude = host.root / "data" / "sessions" / "family" / ".claude"
    found = {("write the agent's settings", str(claude / "settings.json"))}
    found |= {("clean up", str(claude / sub)) for sub in ("debug", "todos", "telemetry", "projects/-workspace-group")}
    if host.mode == "root":  # only a root service hands files to uid 1000
        found.add(("hand the file to the agent's user", str(host.root / "groups" / "family" / "CLAUDE.md")))
    return found


def link_everything(agent, target_of) -> None:
    for path in FILE_TARGETS + DIR_TARGETS:
        agent.must(f"mkdir -p $(dirname {path}) && rm -rf {path} && ln -s {target_of(path)} {path}")


def run_host(host, times: int = 1) -> None:
    host.run("everything", folder="family", times=times, name=PIPED)


@pytest.mark.parametrize("kind", ["file", "folder", "dangling"])
def test_links_planted_at_every_host_path_are_never_followed(host, agent, kind):
    targets = {"file": lambda p: host.victim / "canary.txt", "folder": lambda p: host.victim / "folder",
               "dangling": lambda p: host.victim / "missing" / p.rsplit("/", 1)[1]}
    before = tree_state(host.victim)
    link_everything(agent, targets[kind])
    run_host(host)
    assert tree_state(host.victim) == before
    recorded = {(operation, path) for folder, path, operation, _ in host.refusals() if folder == "family"}
    assert expected_refusals(host) <= recorded
    assert agent.must(f"ls -A {I}") == ""  # the links in input/ were removed themselves


def test_hard_links_are_renamed_over_or_unlinked_never_written_through(host, agent):
    before = tree_state(host.victim)
    for n, path in enumerate(FILE_TARGETS):
        folder = path.rsplit("/", 1)[0]
        agent.must(f"echo mine > {folder}/mine-{n} && rm -f {path} && ln {folder}/mine-{n} {path}")
    for n, path in enumerate(DIR_TARGETS):
        agent.must(f"mkdir -p {path} && echo mine > {C}/dmine-{n} && ln {C}/dmine-{n} {path}/old-{n}.jsonl"
                   if path.startswith(C) else f"mkdir -p {path}")
        agent.must(f"touch {OLD} {path}/* 2>/dev/null || true")
    run_host(host)
    assert tree_state(host.victim) == before
    for n, path in enumerate(FILE_TARGETS):
        assert agent.must(f"cat {path.rsplit('/', 1)[0]}/mine-{n}") == "mine\n"
    assert agent.must(f"cat {C}/dmine-*") == "mine\n" * 4
    assert agent.must(f"ls -A {C}/debug {C}/todos {C}/telemetry {C}/projects/-workspace-group").count("old-") == 0


def test_links_inside_the_cleaned_folders_are_deleted_themselves(host, agent):
    before = tree_state(host.victim)
    for path in DIR_TARGETS:
        agent.must(f"mkdir -p {path} && ln -s {host.victim}/canary.txt {path}/a.jsonl && "
                   f"ln -s {host.victim}/folder {path}/b.jsonl && ln -s {host.victim}/missing {path}/c.jsonl && "
                   f"ln -s {host.victim}/folder {path}/b && touch -h {OLD} {path}/*")
    run_host(host)
    assert tree_state(host.victim) == before
    for path in DIR_TARGETS[1:]:  # the clean-up's folders: every old link gone, the folder kept
        assert agent.must(f"ls -A {path}").split() in ([], ["b"])
    assert agent.must(f"ls -A {G}/logs").split() == ["a.jsonl", "b", "b.jsonl", "c.jsonl"]  # not the host's


def test_links_swapped_in_while_the_host_works_are_never_followed(host, agent):
    before = tree_state(host.victim)
    flips = " ".join(f'rm -rf {p}; echo mine > {p}; ln -sfn {host.victim}/canary.txt {p}.l; mv -Tf {p}.l {p};'
                     for p in FILE_TARGETS)
    flops = " ".join(f"rm -rf {p}; mkdir -p {p}; echo x > {p}/old.txt; touch {OLD} {p}/old.txt {p}; rm -rf {p}; "
                     f"ln -sfn {host.victim}/folder {p};" for p in DIR_TARGETS)
    agent.must(f"mkdir -p {C}/projects")
    agent.background(f"i=0; while [ ! -e {G}/.stop ] && [ $i -lt 5000 ]; do i=$((i+1)); {flips} {flops} done; "
                     f"echo $i > {G}/.flipped")
    time.sleep(0.5)
    run_host(host, times=40)
    agent.must(f"touch {G}/.stop")
    wait_for(lambda: agent.sh(f"test -e {G}/.flipped")[0] == 0, timeout=60)
    assert int(agent.must(f"cat {G}/.flipped")) > 1  # the flipping really ran alongside
    assert tree_state(host.victim) == before
    assert all(folder == "family" and path.startswith(str(host.root)) for folder, path, _, _ in host.refusals())
