"""The safe file operations one by one, on real files: each refuses what an agent could plant."""

from __future__ import annotations

import os

import pytest

from base.agent_paths import (MAX_DEPTH, PathRefused, closing_fd, create_file, hand_over, open_under,
                              remove_entry, unlink_in, write_file)
from events import types as t
from jobs.workspace import prepare_claude_home, prepare_group_dir, prepare_ipc
from rules.refusals import recorder


@pytest.fixture
def victim(tmp_path):
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "canary.txt").write_text("canary")
    return folder


@pytest.fixture
def tree(tmp_path):
    base = tmp_path / "base"
    (base / "agent").mkdir(parents=True)
    return base


def test_a_link_anywhere_on_the_way_is_refused_and_a_missing_folder_is_none(tree, victim):
    (tree / "agent" / "input").symlink_to(victim)
    with pytest.raises(PathRefused, match="symbolic link"):
        open_under(tree, ("agent", "input"))
    with pytest.raises(PathRefused, match="symbolic link"):
        open_under(tree, ("agent", "input", "deeper"), create=True)
    assert open_under(tree, ("agent", "absent")) is None
    with pytest.raises(PathRefused, match="single folder name"):
        open_under(tree, ("agent", ".."))
    assert os.listdir(victim) == ["canary.txt"]


def test_a_written_file_replaces_a_planted_link_and_leaves_its_target(tree, victim):
    (tree / "agent" / "_close").symlink_to(victim / "canary.txt")
    with closing_fd(open_under(tree, ("agent",))) as fd:
        write_file(fd, "_close", b"")
    assert not (tree / "agent" / "_close").is_symlink() and (victim / "canary.txt").read_text() == "canary"


def test_a_folder_where_a_file_goes_is_refused_and_no_temporary_file_is_left(tree):
    (tree / "agent" / "_close").mkdir()
    with closing_fd(open_under(tree, ("agent",))) as fd, pytest.raises(PathRefused, match="a folder"):
        write_file(fd, "_close", b"")
    assert sorted(os.listdir(tree / "agent")) == ["_close"]


def test_create_leaves_a_regular_file_and_refuses_a_link(tree, victim):
    (tree / "agent" / "settings.json").write_text("the agent's")
    (tree / "agent" / "CLAUDE.md").symlink_to(victim / "new.md")
    with closing_fd(open_under(tree, ("agent",))) as fd:
        assert create_file(fd, "settings.json", b"ours") is False
        with pytest.raises(PathRefused, match="symbolic link"):
            create_file(fd, "CLAUDE.md", b"ours")
        assert create_file(fd, "fresh.md", b"ours") is True
    assert (tree / "agent" / "settings.json").read_text() == "the agent's" and not (victim / "new.md").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="changing an owner needs root")
def test_a_file_with_a_second_name_is_never_handed_over(tree, victim):
    os.link(victim / "canary.txt", tree / "agent" / "CLAUDE.md")
    fd = os.open(tree / "agent" / "CLAUDE.md", os.O_RDONLY)
    with closing_fd(fd), pytest.raises(PathRefused, match="2 hard links"):
        hand_over(fd, (1000, 1000), shown="CLAUDE.md")
    assert (victim / "canary.txt").stat().st_uid == 0


def test_removal_deletes_a_link_itself_and_a_tree_inside_its_folder(tree, victim):
    agent = tree / "agent"
    (agent / "debug").symlink_to(victim)
    (agent / "deep" / "a" / "b").mkdir(parents=True)
    (agent / "deep" / "a" / "b" / "link").symlink_to(victim / "canary.txt")
    (agent / "dir").mkdir()
    with closing_fd(open_under(tree, ("agent",))) as fd:
        remove_entry(fd, "debug")
        remove_entry(fd, "deep")
        with pytest.raises(PathRefused, match="a folder"):
            unlink_in(fd, "dir")  # unlink is for files and links; a folder is refused
    assert sorted(os.listdir(agent)) == ["dir"] and os.listdir(victim) == ["canary.txt"]


def test_removal_refuses_a_tree_deeper_than_the_limit(tree):
    path = tree / "agent" / "nest"
    path.joinpath(*["d"] * (MAX_DEPTH + 1)).mkdir(parents=True)
    with closing_fd(open_under(tree, ("agent",))) as fd, pytest.raises(PathRefused, match="nested"):
        remove_entry(fd, "nest")


def test_an_ipc_folder_left_as_a_link_by_the_old_layout_is_replaced_and_recorded(settings, log, victim):
    (settings.ipc_dir / "family").mkdir(parents=True)
    (settings.ipc_dir / "family" / "input").symlink_to(victim)
    prepare_ipc(settings, "family", chown=False, on_refused=recorder(log, "family"))
    assert (settings.ipc_dir / "family" / "input").is_dir() and not (settings.ipc_dir / "family" / "input").is_symlink()
    assert os.listdir(victim) == ["canary.txt"]
    [refusal] = [r.event for r in log.read_since(0, types=[t.HostPathRefused])]
    assert refusal.operation == "use the folder" and "replaced by a real folder" in refusal.reason


@pytest.mark.skipif(os.getuid() != 0, reason="handing files to uid 1000 happens only as root")
def test_as_root_only_what_the_host_made_is_handed_to_the_agent(settings, log, victim):
    group = settings.groups_dir / "family"
    group.mkdir(parents=True)
    (group / "CLAUDE.md").symlink_to(victim / "canary.txt")
    prepare_group_dir(settings, "family", chown=True, on_refused=recorder(log, "family"))
    home = prepare_claude_home(settings, "family", chown=True)
    assert (victim / "canary.txt").stat().st_uid == 0 and group.stat().st_uid == 1000
    assert (home / "settings.json").stat().st_uid == 1000 and home.parent.stat().st_uid == 0
    [refusal] = [r.event for r in log.read_since(0, types=[t.HostPathRefused])]
    assert refusal.operation == "hand the file to the agent's user" and "symbolic link" in refusal.reason
