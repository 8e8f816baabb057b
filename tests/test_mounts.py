"""Mount security: the allowlist file, the places no mount may reach, each validation step, the mode.

Real folders and symlinks under tmp_path, which stands in for HOME; the
tables below read as "this path is mounted there" and "this one is refused".
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from loguru import logger

from events.types import MountRequest
from rules.mounts import (DEFAULT_BLOCKED_PATTERNS, AllowlistLoader, MountAllowlist, Rejection,
                          ValidatedMount, default_allowlist_path, parse_mount_spec, validate_mount,
                          validate_mounts)

CUSTOM_PATTERNS = ["secret", "password"]
PROJECTS = {"path": "~/projects", "allowReadWrite": True}
FOLDERS = ["apps/nanoclaw/store", "apps/nanoclaw2", "projects/site", "projects/site2", "projects/.envrc",
           "projects/my.environment", "projects/secrets-dir/notes", "projects/password-store", "projects2/x",
           "outside/inner", "outside/site2", ".ssh"]
LINKS = {"projects/link": "projects/site", "projects/innocent": ".ssh", "projects/escape": "outside",
         "projects/hop": "outside/inner", "proj-link": "projects"}


def install_of(home: Path) -> Path:
    """The install root of these tests: a folder of home's, as in a usual desktop install."""
    return home / "apps" / "nanoclaw"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME holding FOLDERS and the symlinks in LINKS."""
    home = tmp_path.resolve()
    # A pattern in pytest's own folder name would block every path in the test.
    assert not [p for p in (*DEFAULT_BLOCKED_PATTERNS, *CUSTOM_PATTERNS) if p in str(home)]
    for folder in FOLDERS:
        (home / folder).mkdir(parents=True)
    for link, target in LINKS.items():
        (home / link).symlink_to(home / target)
    return home


@pytest.fixture
def logged():
    """Every loguru message at WARNING or above while the test runs."""
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(sink)


def write_allowlist(home, *, roots=(PROJECTS,), blocked=CUSTOM_PATTERNS, non_main_read_only=False, raw=None):
    path = default_allowlist_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"allowedRoots": list(roots), "blockedPatterns": list(blocked), "nonMainReadOnly": non_main_read_only}
    path.write_text(raw if raw is not None else json.dumps(document))
    return path


def allowlist(home, **options) -> MountAllowlist:
    loaded = AllowlistLoader(write_allowlist(home, **options)).load()
    assert loaded is not None
    return loaded


def check(home, host_path, *, container_path=None, readonly=True, is_main=True, install_root=None,
          local_chat_socket=None, **options):
    request = MountRequest(host_path=host_path, container_path=container_path, readonly=readonly)
    return validate_mount(request, is_main=is_main, allowlist=allowlist(home, **options), home=home,
                          install_root=install_root or install_of(home), local_chat_socket=local_chat_socket)


def accepted(outcome) -> ValidatedMount:
    assert isinstance(outcome, ValidatedMount), outcome
    return outcome


def refused(outcome) -> str:
    assert isinstance(outcome, Rejection), outcome
    return outcome.reason


# --- the allowlist file ----------------------------------------------------------


def test_missing_allowlist_is_looked_for_again_and_warned_about_on_every_load(home, logged):
    loader = AllowlistLoader(default_allowlist_path(home))
    assert loader.load() is None and loader.load() is None
    assert len([m for m in logged if "not found" in m]) == 2
    write_allowlist(home)
    assert loader.load() is not None


def test_valid_allowlist_is_cached_for_the_life_of_the_loader(home):
    loader = AllowlistLoader(write_allowlist(home, non_main_read_only=False))
    first = loader.load()
    write_allowlist(home, non_main_read_only=True)
    assert loader.load() is first and first.non_main_read_only is False


def test_invalid_allowlist_is_cached_until_a_new_loader(home):
    loader = AllowlistLoader(write_allowlist(home, raw="{not json"))
    assert loader.load() is None
    write_allowlist(home)
    assert loader.load() is None
    assert AllowlistLoader(loader.path).load() is not None


def test_invalid_allowlist_is_logged_once_naming_the_file_and_the_problem(home, logged):
    loader = AllowlistLoader(write_allowlist(home, raw='{"allowedRoots": [], "blockedPatterns": []}'))
    loader.load()
    loader.load()
    assert len(logged) == 1 and str(loader.path) in logged[0] and "nonMainReadOnly" in logged[0]


@pytest.mark.parametrize("raw", [
    "{not json", "[]",
    '{"blockedPatterns": [], "nonMainReadOnly": true}',
    '{"allowedRoots": [], "nonMainReadOnly": true}',
    '{"allowedRoots": [], "blockedPatterns": []}',
    '{"allowedRoots": {}, "blockedPatterns": [], "nonMainReadOnly": true}',
    '{"allowedRoots": [], "blockedPatterns": "x", "nonMainReadOnly": true}',
    '{"allowedRoots": [], "blockedPatterns": [], "nonMainReadOnly": "true"}',
    '{"allowedRoots": [], "blockedPatterns": [1], "nonMainReadOnly": true}',
    '{"allowedRoots": [], "blockedPatterns": [""], "nonMainReadOnly": true}',
    '{"allowedRoots": [{"allowReadWrite": true}], "blockedPatterns": [], "nonMainReadOnly": true}',
    '{"allowedRoots": [{"path": "~/p"}], "blockedPatterns": [], "nonMainReadOnly": true}',
    '{"allowedRoots": [{"path": "~/p", "allowReadWrite": 1}], "blockedPatterns": [], "nonMainReadOnly": true}',
])
def test_allowlist_needs_all_three_keys_with_their_types(home, raw):
    assert AllowlistLoader(write_allowlist(home, raw=raw)).load() is None


def test_root_description_is_optional(home):
    loaded = allowlist(home, roots=[PROJECTS, {"path": "~/outside", "allowReadWrite": False, "description": "tmp"}])
    assert [r.description for r in loaded.allowed_roots] == [None, "tmp"]


def test_custom_blocked_patterns_are_merged_after_the_defaults_once(home):
    assert allowlist(home, blocked=["password", ".ssh", "password"]).blocked_patterns == (
        ".ssh", ".gnupg", ".gpg", ".aws", ".azure", ".gcloud", ".kube", ".docker", "credentials",
        ".env", ".netrc", ".npmrc", ".pypirc", "id_rsa", "id_ed25519", "private_key", ".secret", "password",
    )


# --- step 1: no allowlist ------------------------------------------------------------


def test_without_an_allowlist_every_mount_is_refused_naming_the_file(home):
    outcome = validate_mount(MountRequest(host_path="~/projects/site"), is_main=True, allowlist=None, home=home,
                             install_root=install_of(home))
    assert refused(outcome) == f"No mount allowlist configured at {default_allowlist_path(home)}"


def test_an_invalid_allowlist_refuses_every_mount(home):
    loader = AllowlistLoader(write_allowlist(home, raw="{not json"))
    mounts, rejections = validate_mounts([MountRequest(host_path="~/projects/site")], is_main=True,
                                         loader=loader, home=home, install_root=install_of(home))
    assert mounts == [] and rejections[0].reason.startswith("No mount allowlist configured at")


# --- step 2: container path ------------------------------------------------------------


@pytest.mark.parametrize("host_path,container_path,expected", [
    pytest.param("~/projects/site", None, "/workspace/extra/site", id="defaults_to_host_folder_name"),
    pytest.param("~/projects/site/", None, "/workspace/extra/site", id="trailing_slash_ignored"),
    pytest.param("~/projects/site", "", "/workspace/extra/site", id="empty_counts_as_not_given"),
    pytest.param("~/projects/site", "web", "/workspace/extra/web", id="given_name_used"),
    pytest.param("~/projects/site", "web/site", "/workspace/extra/web/site", id="nested_allowed"),
])
def test_container_path_accepted(home, host_path, container_path, expected):
    assert accepted(check(home, host_path, container_path=container_path)).container_path == expected


@pytest.mark.parametrize("container_path", ["..", "a/../b", "a..b", "/abs", "   ", "a:b", "site:rw"])
def test_container_path_with_dotdot_leading_slash_blank_or_colon_is_refused(home, container_path):
    assert "Invalid container path" in refused(check(home, "~/projects/site", container_path=container_path))


def test_empty_basename_as_container_path_is_refused(home):
    assert "it is empty" in refused(check(home, "/", roots=[{"path": "/", "allowReadWrite": False}]))


# --- steps 3 to 5: host path, blocked patterns, allowed roots -------------------------------


@pytest.mark.parametrize("host_path,real", [
    pytest.param("~/projects/site", "projects/site", id="tilde_slash_expands_against_home"),
    pytest.param("~//projects/site", "projects/site", id="tilde_double_slash_stays_under_home"),
    pytest.param("HOME/projects/site", "projects/site", id="absolute_path"),
    pytest.param("~/projects", "projects", id="root_itself"),
    pytest.param("~/projects/link", "projects/site", id="symlink_inside_root_mounts_its_target"),
    pytest.param("~/projects/site/../site2", "projects/site2", id="dotdot_staying_inside_root"),
])
def test_host_path_accepted(home, host_path, real):
    mount = accepted(check(home, host_path.replace("HOME", str(home)), container_path="x"))
    assert mount.host_path == str(home / real)


@pytest.mark.parametrize("host_path,reason", [
    pytest.param("~/projects/missing", "cannot be used", id="nonexistent_path"),
    pytest.param("~/projects/innocent", "blocked pattern '.ssh'", id="symlink_into_blocked_folder"),
    pytest.param("~/projects/.envrc", "blocked pattern '.env'", id="pattern_inside_a_name"),
    pytest.param("~/projects/my.environment", "blocked pattern '.env'", id="pattern_inside_a_longer_name"),
    pytest.param("~/projects/secrets-dir/notes", "blocked pattern 'secret'", id="parent_folder_contains_pattern"),
    pytest.param("~/projects/password-store", "blocked pattern 'password'", id="custom_pattern"),
    pytest.param("~/outside", "not under any allowed root", id="outside_every_root"),
    pytest.param("~/projects/escape", "not under any allowed root", id="symlink_out_of_the_roots"),
    pytest.param("~/projects/../outside", "not under any allowed root", id="dotdot_leaving_the_root"),
    pytest.param("~/projects/hop/../site2", "not under any allowed root", id="dotdot_after_symlink_follows_it"),
    pytest.param("~/projects2/x", "not under any allowed root", id="sibling_sharing_the_roots_prefix"),
])
def test_host_path_refused(home, host_path, reason):
    assert reason in refused(check(home, host_path, container_path="x"))


def test_relative_host_path_resolves_against_the_working_directory(home, monkeypatch):
    monkeypatch.chdir(home / "projects")
    assert accepted(check(home, "site")).host_path == str(home / "projects" / "site")
    monkeypatch.chdir(home)
    assert "not under any allowed root" in refused(check(home, "outside"))


def test_bare_tilde_is_home(home):
    reason = refused(check(home, "~", container_path="home", roots=[{"path": "~", "allowReadWrite": False}]))
    assert reason.startswith(f"Path {home} contains")  # home holds the install: never mountable


def test_refusal_outside_the_roots_lists_the_expanded_roots(home):
    roots = [PROJECTS, {"path": "~/missing", "allowReadWrite": False}]
    assert f"(allowed roots: {home}/projects, {home}/missing)" in refused(check(home, "~/outside", roots=roots))


def test_first_matching_root_wins(home):
    narrow_rw = {"path": "~/projects/site", "allowReadWrite": True}
    wide_ro = {"path": "~/projects", "allowReadWrite": False}
    assert accepted(check(home, "~/projects/site", readonly=False, roots=[wide_ro, narrow_rw])).readonly
    assert not accepted(check(home, "~/projects/site", readonly=False, roots=[narrow_rw, wide_ro])).readonly


def test_nonexistent_roots_are_skipped(home):
    missing = {"path": "~/missing", "allowReadWrite": True}
    assert accepted(check(home, "~/projects/site", roots=[missing, PROJECTS]))
    assert "not under any allowed root" in refused(check(home, "~/projects/site", roots=[missing]))


def test_root_given_through_a_symlink_is_resolved(home):
    assert accepted(check(home, "~/projects/site", roots=[{"path": "~/proj-link", "allowReadWrite": True}]))


# --- places no allowed root reaches -------------------------------------------------------

EVERYTHING = [{"path": "~", "allowReadWrite": True}, {"path": "/", "allowReadWrite": True}]
INSTALL_WHY = "an agent would read .env and the event log"


@pytest.mark.parametrize("host_path,relation", [
    pytest.param("~/apps/nanoclaw", "is", id="the_root_itself"),
    pytest.param("~/apps/nanoclaw/store", "is inside", id="a_folder_inside_it"),
    pytest.param("~/apps", "contains", id="a_folder_holding_it"),
    pytest.param("~/projects/../apps/nanoclaw/store/", "is inside", id="spelled_with_dotdot"),
])
def test_the_install_root_is_refused_whatever_the_allowlist_says(home, host_path, relation):
    reason = refused(check(home, host_path, container_path="x", roots=EVERYTHING))
    real = home / host_path[2:]
    assert reason == f"Path {real.resolve()} {relation} the install root {install_of(home)}: {INSTALL_WHY}"


def test_a_link_to_the_install_inside_an_allowed_root_is_refused(home):
    (home / "projects" / "tools").symlink_to(install_of(home))
    (home / "projects" / "db").symlink_to(install_of(home) / "store")
    assert f"is the install root {install_of(home)}" in refused(check(home, "~/projects/tools", container_path="x"))
    assert f"is inside the install root {install_of(home)}" in refused(check(home, "~/projects/db", container_path="x"))


def test_an_install_root_reached_through_a_link_is_compared_by_its_real_path(home):
    (home / "nc-link").symlink_to(install_of(home))
    reason = refused(check(home, "~/apps/nanoclaw/store", container_path="x", roots=EVERYTHING,
                           install_root=home / "nc-link"))
    assert f"is inside the install root {install_of(home)}" in reason


@pytest.mark.parametrize("host_path,relation", [
    pytest.param("~/.config/nanoclaw", "is", id="the_folder"),
    pytest.param("~/.config/nanoclaw/backup", "is inside", id="inside_it"),
    pytest.param("~/.config", "contains", id="holding_it"),
    pytest.param("~/projects/settings", "contains", id="through_a_link"),
])
def test_the_allowlists_folder_is_refused_whatever_the_allowlist_says(home, host_path, relation):
    (home / ".config" / "nanoclaw" / "backup").mkdir(parents=True)
    (home / "projects" / "settings").symlink_to(home / ".config")
    reason = refused(check(home, host_path, container_path="x", roots=EVERYTHING))
    assert f" {relation} the allowlists' folder {home}/.config/nanoclaw: an agent would read the allowlists" in reason


@pytest.mark.parametrize("host_path,relation", [
    pytest.param("~/.claude", "is", id="the_folder"),
    pytest.param("~/.claude/projects", "is inside", id="inside_it"),
    pytest.param("~", "contains", id="holding_it"),
    pytest.param("~/projects/notes", "is", id="through_a_link"),
])
def test_the_claude_login_folder_is_refused_whatever_the_allowlist_says(home, tmp_path_factory, host_path, relation):
    (home / ".claude" / "projects").mkdir(parents=True)
    (home / ".claude" / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "sk-ant-oat"}}')
    (home / "projects" / "notes").symlink_to(home / ".claude")
    elsewhere = tmp_path_factory.mktemp("install")  # the install and the allowlists outside home, so that
    config = tmp_path_factory.mktemp("config") / "mount-allowlist.json"  # `~` is refused for the login alone
    outcome = validate_mount(MountRequest(host_path=host_path, container_path="x"), is_main=True,
                             allowlist=allowlist(home, roots=EVERYTHING), home=home, install_root=elsewhere,
                             allowlist_path=config)
    assert refused(outcome) == (f"Path {(home / host_path[2:]).resolve()} {relation} "
                                f"the Claude login folder {home}/.claude: it holds the real OAuth token "
                                "(.credentials.json)")


def test_the_local_chat_sockets_folder_is_refused_inside_or_containing(home):
    sock = home / "run" / "nanoclaw" / "abc123" / "local-chat.sock"
    sock.parent.mkdir(parents=True)
    for host_path, relation in [("~/run/nanoclaw/abc123", "is"), ("~/run", "contains")]:
        reason = refused(check(home, host_path, container_path="x", roots=EVERYTHING, local_chat_socket=sock))
        assert f"{relation} the local chat socket's folder {sock.parent}: an agent could post" in reason


@pytest.mark.parametrize("host_path", [
    "~/apps/nanoclaw2", "~/.config/other", "~/.claude-notes", "~/.claudette/x", "~/projects/site",
])
def test_an_ordinary_folder_beside_the_protected_ones_is_still_mounted(home, host_path):
    for folder in ("~/.config/other", "~/.claude-notes", "~/.claudette/x"):
        (home / folder[2:]).mkdir(parents=True, exist_ok=True)
    (home / ".claude").mkdir(exist_ok=True)
    sock = home / "run" / "k" / "local-chat.sock"
    mount = accepted(check(home, host_path, container_path="x", roots=EVERYTHING, local_chat_socket=sock))
    assert mount.host_path == str(home / host_path[2:])


def test_validate_mounts_refuses_the_install_and_logs_why(home, logged):
    loader = AllowlistLoader(write_allowlist(home, roots=EVERYTHING))
    mounts, rejections = validate_mounts([MountRequest(host_path="~/apps"), MountRequest(host_path="~/projects/site")],
                                         is_main=True, loader=loader, home=home, install_root=install_of(home))
    assert [m.host_path for m in mounts] == [str(home / "projects" / "site")]
    assert "contains the install root" in rejections[0].reason and rejections[0].reason in logged[0]


def test_groups_set_says_a_mount_of_the_install_will_be_refused(settings, log, capsys):
    from nanoclaw.cli import main
    from rules.groups import register_group

    register_group(log, settings, jid="tg:-100", name="Family", folder="family")
    settings.config_dir.mkdir(parents=True)
    settings.mount_allowlist_path.write_text(json.dumps(
        {"allowedRoots": [{"path": "/", "allowReadWrite": True}], "blockedPatterns": [], "nonMainReadOnly": True}))
    (settings.home / "work").symlink_to(settings.root)
    assert main(["groups", "set", "family", "--mount", f"{settings.root}:all", "--mount", "~/work:work"]) == 0
    err = capsys.readouterr().err
    assert f"mount {settings.root}:all will be refused" not in err  # the spec is parsed into its host path
    assert f"mount {settings.root} will be refused: Path {settings.root} is the install root" in err
    assert f"mount ~/work will be refused: Path {settings.root} is the install root" in err


# --- step 6: read-only decision ------------------------------------------------------


@pytest.mark.parametrize("is_main,non_main_read_only,allow_read_write,requested",
                         list(itertools.product([True, False], [True, False], [True, False], [True, False, None])))
def test_read_only_decision_table(home, is_main, non_main_read_only, allow_read_write, requested):
    """Writable only when asked for explicitly, allowed by the root, and not a non-main group under nonMainReadOnly."""
    request = (MountRequest(host_path="~/projects/site") if requested is None
               else MountRequest(host_path="~/projects/site", readonly=requested))
    loaded = allowlist(home, roots=[{"path": "~/projects", "allowReadWrite": allow_read_write}],
                       non_main_read_only=non_main_read_only)
    writable = requested is False and allow_read_write and (is_main or not non_main_read_only)
    mount = accepted(validate_mount(request, is_main=is_main, allowlist=loaded, home=home,
                                    install_root=install_of(home)))
    assert mount.readonly is (not writable)


# --- validate_mounts --------------------------------------------------------------------


def test_rejected_mounts_are_logged_and_skipped_while_the_rest_are_mounted(home, logged):
    loader = AllowlistLoader(write_allowlist(home))
    requests = [MountRequest(host_path="~/projects/site"), MountRequest(host_path="~/outside"),
                MountRequest(host_path="~/projects/site2", readonly=False)]
    mounts, rejections = validate_mounts(requests, is_main=True, loader=loader, home=home,
                                         install_root=install_of(home), group="family")
    assert [(m.container_path, m.readonly) for m in mounts] == [
        ("/workspace/extra/site", True), ("/workspace/extra/site2", False)]
    assert [r.request.host_path for r in rejections] == ["~/outside"]
    assert logged == [f"Additional mount REJECTED for family: ~/outside: {rejections[0].reason}"]


def test_no_requests_leave_the_allowlist_unread(home, logged):
    loader = AllowlistLoader(default_allowlist_path(home))
    assert validate_mounts([], is_main=False, loader=loader, home=home, install_root=install_of(home)) == ([], [])
    assert logged == []


# --- parse_mount_spec ---------------------------------------------------------------------


@pytest.mark.parametrize("spec,container_path,readonly", [
    ("~/projects/site", None, True),
    ("~/projects/site:site", "site", True),
    ("~/projects/site:web/site", "web/site", True),
    ("~/projects/site:site:rw", "site", False),
    ("~/projects/site:site:ro", "site", True),
    ("~/projects/site:site:RW", "site", False),
    ("~/projects/site:rw", None, False),
    ("~/projects/site:ro", None, True),
    ("~/projects/site::rw", None, False),
    ("~/projects/site:", None, True),
    ("~/projects/site:rw:ro", "rw", True),
])
def test_mount_spec_is_host_then_container_path_then_mode(spec, container_path, readonly):
    expected = MountRequest(host_path="~/projects/site", container_path=container_path, readonly=readonly)
    assert parse_mount_spec(spec) == expected


@pytest.mark.parametrize("spec,problem", [
    ("", "host path is empty"), ("  ", "host path is empty"), (":site", "host path is empty"),
    ("::rw", "host path is empty"), ("~/x:site:rx", "'rx' is not rw or ro"),
    ("~/x:site:", "'' is not rw or ro"), ("~/x:a:b:rw", "too many ':'"),
])
def test_bad_mount_spec_is_a_clear_error(spec, problem):
    with pytest.raises(ValueError, match=problem):
        parse_mount_spec(spec)


def test_parsed_spec_goes_through_the_same_rules(home):
    loaded = allowlist(home)
    mount = accepted(validate_mount(parse_mount_spec("~/projects/site::rw"), is_main=True, allowlist=loaded,
                                    home=home, install_root=install_of(home)))
    assert (mount.host_path, mount.container_path, mount.readonly) == (
        str(home / "projects" / "site"), "/workspace/extra/site", False)
    assert "'..'" in refused(validate_mount(parse_mount_spec("~/projects/site:../x"), is_main=True,
                                            allowlist=loaded, home=home, install_root=install_of(home)))


def test_a_second_mount_at_the_same_container_path_is_refused(tmp_path):
    home = tmp_path
    (home / "a" / "site").mkdir(parents=True)
    (home / "b" / "site").mkdir(parents=True)
    config = home / ".config" / "nanoclaw"
    config.mkdir(parents=True)
    (config / "mount-allowlist.json").write_text(json.dumps(
        {"allowedRoots": [{"path": "~", "allowReadWrite": False}], "blockedPatterns": [], "nonMainReadOnly": True}))
    accepted, rejected = validate_mounts(
        [MountRequest(host_path="~/a/site"), MountRequest(host_path="~/b/site")],
        is_main=True, loader=AllowlistLoader(config / "mount-allowlist.json"), home=home, install_root=install_of(home))
    assert [m.container_path for m in accepted] == ["/workspace/extra/site"]
    assert "already used by an earlier mount" in rejected[0].reason
