"""Group registration rules: validated folders, one main group, no silent replacement."""

from __future__ import annotations

import json
import os

import pytest

from base.config import load_settings
from events import types as t
from events.queries import list_groups
from nanoclaw.cli import main
from rules.groups import GroupError, register_group, remove_group, validate_folder


@pytest.mark.parametrize("folder", ["main", "telegram_family", "a", "A-1_b", "x" * 64])
def test_valid_folder_names(folder):
    validate_folder(folder)


@pytest.mark.parametrize(
    "folder",
    ["", " main", "main ", "-lead", "_lead", "a/b", "a\\b", "..", "../x", "x" * 65, "global", "GLOBAL",
     "errors", "Errors", "caf\u00e9", "a.b", "a b"],
)
def test_invalid_or_reserved_folder_names_are_refused(folder):
    with pytest.raises(GroupError, match="invalid folder"):
        validate_folder(folder)


def test_registration_creates_the_folder_and_memory_from_the_template(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    group = register_group(log, settings, jid="tg:-100", name="Family", folder="tg_family")
    assert group.trigger == "@Andy" and group.requires_trigger and not group.is_main
    memory = settings.groups_dir / "tg_family" / "CLAUDE.md"
    assert memory.read_text().startswith("# Andy\n")
    assert os.listdir(settings.groups_dir / "tg_family") == ["CLAUDE.md"]  # run logs live outside it
    assert (settings.groups_dir / "global" / "CLAUDE.md").is_file()
    assert "register_group" in (settings.groups_dir / "main" / "CLAUDE.md").read_text()


def test_templates_carry_the_configured_assistant_name(root, monkeypatch, log):
    monkeypatch.setenv("ASSISTANT_NAME", "Claw")
    settings = load_settings()
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    text = (settings.groups_dir / "family" / "CLAUDE.md").read_text()
    assert text.startswith("# Claw\n") and "You are Claw" in text and "Andy" not in text
    assert register_group(log, settings, jid="tg:-101", name="B", folder="b").trigger == "@Claw"


def test_an_existing_memory_file_is_never_overwritten(settings, log):
    folder = settings.groups_dir / "family"
    folder.mkdir(parents=True)
    (folder / "CLAUDE.md").write_text("my notes\n")
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    assert (folder / "CLAUDE.md").read_text() == "my notes\n"


def test_a_folder_in_use_by_another_jid_is_an_error_and_nothing_is_replaced(settings, log):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    with pytest.raises(GroupError, match="already used by tg:-100"):
        register_group(log, settings, jid="tg:-200", name="Other", folder="family")
    assert [(g.jid, g.folder) for g in list_groups(log)] == [("tg:-100", "family")]
    assert log.last_seq() == 1


def test_a_jid_cannot_be_registered_twice(settings, log):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    with pytest.raises(GroupError, match="already registered"):
        register_group(log, settings, jid="tg:-100", name="Family", folder="family2")


def test_there_is_exactly_one_main_group(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    with pytest.raises(GroupError, match="already the main group"):
        register_group(log, settings, jid="tg:1", name="Phone", folder="phone", is_main=True)
    remove_group(log, "main")
    register_group(log, settings, jid="tg:1", name="Phone", folder="phone", is_main=True)
    assert [g.jid for g in list_groups(log) if g.is_main] == ["tg:1"]


def test_an_empty_trigger_means_the_default_and_a_custom_one_is_kept_literally(settings, log):
    assert register_group(log, settings, jid="a:1", name="A", folder="a", trigger="  ").trigger == "@Andy"
    assert register_group(log, settings, jid="a:2", name="B", folder="b", trigger="@C.L.A.U.D.E").trigger == "@C.L.A.U.D.E"


def test_removing_keeps_the_folder_and_frees_the_jid_and_folder(settings, log):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    removed = remove_group(log, "tg:-100")
    assert removed.folder == "family"
    assert (settings.groups_dir / "family" / "CLAUDE.md").exists()
    assert list_groups(log) == []
    register_group(log, settings, jid="tg:-300", name="New", folder="family")
    types = [r.type for r in log.read_since(0)]
    assert types == ["GroupRegistered", "GroupRemoved", "GroupRegistered"]


def test_removing_an_unknown_group_is_a_clear_error(log):
    with pytest.raises(GroupError, match="no registered group"):
        remove_group(log, "nope")


def test_the_cli_adds_lists_and_removes_groups(settings, capsys):
    assert main(["groups", "add", "local:me", "--name", "Me", "--folder", "main", "--main"]) == 0
    assert main(["groups", "add", "tg:-1", "--name", "Fam", "--folder", "fam", "--trigger", "@Bot"]) == 0
    assert main(["groups", "add", "tg:-2", "--name", "Quiet", "--folder", "quiet", "--no-trigger"]) == 0
    capsys.readouterr()
    assert main(["groups", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(g["folder"], g["is_main"], g["trigger"], g["requires_trigger"]) for g in listed] == [
        ("main", True, "@Andy", True), ("fam", False, "@Bot", True), ("quiet", False, "@Andy", False)
    ]
    assert main(["groups", "list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["FOLDER", "JID", "ROLE", "TRIGGER", "EGRESS", "NAME"]
    assert main(["groups", "remove", "fam"]) == 0
    assert "kept" in capsys.readouterr().out
    assert main(["groups", "add", "tg:-3", "--name", "X", "--folder", "quiet"]) == 1
    assert "already used by tg:-2" in capsys.readouterr().err


def test_group_changes_are_events_in_the_log(settings, log):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family", requires_trigger=False)
    record = log.read_since(0)[0]
    assert isinstance(record.event, t.GroupRegistered)
    assert (record.stream, record.event.requires_trigger, record.event.registered_by) == ("tg:-100", False, "cli")


def test_groups_set_records_mounts_timeout_and_trigger_as_one_update(settings, log, capsys):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    project = settings.home / "projects" / "site"
    project.mkdir(parents=True)
    settings.config_dir.mkdir(parents=True)
    settings.mount_allowlist_path.write_text(json.dumps(
        {"allowedRoots": [{"path": "~/projects", "allowReadWrite": True}], "blockedPatterns": [],
         "nonMainReadOnly": True}))
    assert main(["groups", "set", "family", "--mount", "~/projects/site:site:rw", "--mount", "~/.ssh",
                 "--timeout", "90", "--trigger", "@Bot", "--no-trigger"]) == 0
    out, err = capsys.readouterr()
    assert f"mount {project} -> /workspace/extra/site (read-only)" in out  # non-main: forced read-only
    assert "~/.ssh will be refused" in err
    update = log.read_since(0, types=[t.GroupUpdated])[-1].event
    assert update.trigger == "@Bot" and update.requires_trigger is False
    assert update.container_config == t.ContainerConfig(
        additional_mounts=[t.MountRequest(host_path="~/projects/site", container_path="site", readonly=False),
                           t.MountRequest(host_path="~/.ssh")], timeout_ms=90_000)
    group = list_groups(log)[0]
    assert (group.trigger, group.requires_trigger, group.container_config.timeout_ms) == ("@Bot", False, 90_000)


def test_groups_set_refuses_a_bad_mount_spec_and_a_bad_timeout(settings, log, capsys):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    assert main(["groups", "set", "family", "--mount", "a:b:c:d"]) == 1
    assert main(["groups", "set", "family", "--timeout", "0.5"]) == 1
    assert "invalid timeout" in capsys.readouterr().err
    assert log.read_since(0, types=[t.GroupUpdated]) == []


def test_groups_set_egress_records_the_canonical_policy_and_keeps_the_rest(settings, log, capsys):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    assert main(["groups", "set", "family", "--timeout", "90"]) == 0
    assert main(["groups", "set", "family", "--egress", "allow:Example.COM,docs.python.org"]) == 0
    assert "egress allow:example.com,docs.python.org" in capsys.readouterr().out
    config = list_groups(log)[0].container_config
    assert (config.egress, config.timeout_ms) == ("allow:example.com,docs.python.org", 90_000)
    assert main(["groups", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["egress"] == "allow:example.com,docs.python.org"


def test_a_group_without_a_policy_gets_the_default_and_a_bad_one_is_refused(settings, log, capsys):
    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    assert main(["groups", "list"]) == 0
    assert " open " in capsys.readouterr().out
    assert main(["groups", "set", "family", "--egress", "everything"]) == 1
    assert "model-only" in capsys.readouterr().err  # the message names the accepted forms
    assert log.read_since(0, types=[t.GroupUpdated]) == []
def test_registration_never_writes_the_memory_file_through_a_planted_link(settings, log, tmp_path):
    victim = tmp_path / "victim.md"
    (settings.groups_dir / "family").mkdir(parents=True)
    (settings.groups_dir / "family" / "CLAUDE.md").symlink_to(victim)  # dangling: a write would create it
    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    assert not victim.exists()
    [refusal] = [r.event for r in log.read_since(0, types=[t.HostPathRefused])]
    assert (refusal.folder, refusal.operation) == ("family", "create the memory file")
    assert "symbolic link" in refusal.reason


def test_a_memory_template_planted_as_a_link_is_not_read_through(settings, log, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    (settings.groups_dir / "global").mkdir(parents=True)
    (settings.groups_dir / "global" / "CLAUDE.md").symlink_to(secret)  # main's agent can write global/
    register_group(log, settings, jid="tg:fam", name="Family", folder="family")
    assert "the host's secret" not in (settings.groups_dir / "family" / "CLAUDE.md").read_text()
