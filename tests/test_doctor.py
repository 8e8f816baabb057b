"""`nanoclaw doctor`: every check says ok, warn or FAIL with a fix; a fresh install has no FAIL."""

from __future__ import annotations

import json
import os
import sqlite3

import msgspec
import pytest

from jobs.credentials import AUTH_KEYS
from nanoclaw import cli, doctor
from rules.groups import register_group
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker

SECRET = "sk-ant-api03-doctor-must-never-print-this-0123456789"
NOT_BUILT = "nanoclaw-agent:doctor-never-built"


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    for key in (*AUTH_KEYS, "TELEGRAM_BOT_TOKEN", "AGENT_PROVIDER", "CONTAINER_IMAGE"):
        monkeypatch.delenv(key, raising=False)


def run_doctor(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["doctor", *args])
    return code, capsys.readouterr().out


def by_name(report: doctor.Report) -> dict[str, doctor.Check]:
    return {check.name: check for check in report.checks}


def test_a_fresh_install_without_credentials_image_or_service_warns_but_does_not_fail(settings, capsys, monkeypatch):
    monkeypatch.setenv("CONTAINER_IMAGE", NOT_BUILT)
    code, out = run_doctor(capsys)
    assert code == 0, out
    for line in ("ok    runtime", "warn  image", "warn  credentials", "warn  service", "warn  systemd unit",
                 "ok    event log", "ok    folders", "ok    channels"):
        assert line in out, out
    assert f"-> nanoclaw image build --tag {NOT_BUILT}" in out
    assert "CLAUDE_CODE_OAUTH_TOKEN" in out and "ANTHROPIC_API_KEY" in out and "-> nanoclaw service install" in out
    assert "FAIL" not in out


def test_docker_down_is_a_failure_with_the_command_that_starts_it(settings, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, out = run_doctor(capsys, "--json")
    checks = by_name(msgspec.json.decode(out, type=doctor.Report))
    assert code == 1
    assert checks["runtime"].level == "fail" and "systemctl start docker" in checks["runtime"].fix
    assert checks["image"].level == "warn" and "runtime is down" in checks["image"].detail


def test_credentials_are_found_in_dotenv_and_never_printed(settings, capsys):
    (settings.root / ".env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
    for args in ((), ("--json",)):
        code, out = run_doctor(capsys, *args)
        assert "ANTHROPIC_API_KEY from .env" in out
        assert not any(SECRET[i:i + 8] in out for i in range(len(SECRET) - 8)), "a part of the secret was printed"


def test_credentials_from_a_claude_login_are_named_by_their_file(settings):
    path = settings.home / ".claude" / ".credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"claudeAiOauth": {"accessToken": SECRET}}))
    check = doctor.check_credentials(settings)
    assert check.level == "ok" and str(path) in check.detail and SECRET[:8] not in check.detail


def test_the_scripted_provider_needs_no_credentials(root, monkeypatch):
    from base.config import load_settings

    monkeypatch.setenv("AGENT_PROVIDER", "scripted")
    check = doctor.check_credentials(load_settings())
    assert check.level == "ok" and "AGENT_PROVIDER=scripted" in check.detail


def test_a_group_whose_channel_has_no_credentials_is_a_warning_naming_it(settings, log):
    register_group(log, settings, jid="tg:-1001234567890", name="Family", folder="family")
    check = doctor.check_channels(settings, log)
    assert check.level == "warn" and "family (tg:-1001234567890)" in check.detail and check.fix
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    assert "1 group(s) unreachable" in doctor.check_channels(settings, log).detail


def test_a_missing_runtime_folder_fails_with_how_to_create_it(settings):
    logs = settings.logs_dir
    for child in logs.iterdir():
        child.unlink()
    logs.rmdir()
    logs.write_text("not a folder")
    check = doctor.check_folders(settings)
    assert check.level == "fail" and str(logs) in check.detail and f"mkdir -p {logs}" in check.fix


def test_ipc_folders_not_handed_to_the_container_user_are_named_with_the_chown_that_fixes_them(settings):
    if os.getuid() != 0:  # a Docker test: it must fail, never be skipped
        pytest.fail("ownership by another uid needs root; as a user the runs use our uid: run the suite as root, as scripts/test.sh and CI do")
    folder = settings.ipc_dir / "family"
    for sub in ("messages", "tasks", "input"):
        (folder / sub).mkdir(parents=True)
    check = doctor.check_ipc_owners(settings)
    subs = " ".join(str(folder / sub) for sub in ("messages", "tasks", "input"))
    assert check.level == "warn" and str(folder / "input") in check.detail and check.fix == f"chown 1000:1000 {subs}"
    for path in folder.iterdir():
        os.chown(path, 1000, 1000)
    assert doctor.check_ipc_owners(settings).level == "ok"  # the group's folder itself stays the host's


def test_allowlists_that_do_not_parse_fail_and_a_bad_chat_entry_warns(settings):
    settings.config_dir.mkdir(parents=True)
    settings.mount_allowlist_path.write_text('{"allowedRoots": [{"path": "~/projects"}]}')
    check = doctor.check_mount_allowlist(settings)
    assert check.level == "fail" and "allowReadWrite" in check.detail and check.fix
    settings.mount_allowlist_path.write_text(
        '{"allowedRoots": [{"path": "~/projects", "allowReadWrite": true}], "blockedPatterns": [],'
        ' "nonMainReadOnly": true}')
    assert doctor.check_mount_allowlist(settings).detail.startswith("1 allowed root(s)")
    settings.sender_allowlist_path.write_text('{"default": {"allow": "*", "mode": "trigger"},')
    broken = doctor.check_sender_allowlist(settings)
    assert broken.level == "fail" and "not valid JSON" in broken.detail
    settings.sender_allowlist_path.write_text(
        '{"default": {"allow": "*", "mode": "trigger"}, "chats": {"tg:1": {"allow": "*", "mode": "mute"}}}')
    partial = doctor.check_sender_allowlist(settings)
    assert partial.level == "warn" and "tg:1" in partial.detail


def test_projections_that_differ_from_the_log_fail_with_the_rebuild_command(settings, log):
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    check, opened = doctor.check_event_log(settings)
    opened.close()
    assert check.level == "ok" and "projections match" in check.detail
    tamper = sqlite3.connect(settings.db_path)
    tamper.execute("UPDATE groups SET name = 'Someone else'")
    tamper.commit()
    tamper.close()
    check, opened = doctor.check_event_log(settings)
    opened.close()
    assert check.level == "fail" and "groups" in check.detail and check.fix.endswith("nanoclaw replay --rebuild")


def test_with_the_image_built_the_service_running_and_the_unit_installed_all_is_well(
        settings, log, agent_image, capsys, monkeypatch):
    monkeypatch.setenv("CONTAINER_IMAGE", agent_image)
    monkeypatch.setenv("AGENT_PROVIDER", "scripted")
    register_group(log, settings, jid="local:me", name="Me", folder="main", is_main=True)
    unit = settings.home / doctor.SYSTEMD_UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\nDescription=NanoClaw\n")
    with RouterProcess(settings).wait_ready() as service:
        code, out = run_doctor(capsys)
        assert service.stop(timeout=60) == 0
    assert code == 0 and "warn" not in out and "FAIL" not in out, out
    assert f"running (pid {service.proc.pid}" in out and "runner answered" in out and "all good" in out


def test_containment_shows_no_network_a_working_gateway_and_each_groups_egress(settings, log, monkeypatch):
    from base.config import load_settings
    from events import types as t
    from rules.groups import update_group

    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    register_group(log, settings, jid="local:fam", name="Fam", folder="family")
    update_group(log, "family", container_config=t.ContainerConfig(egress="allow:example.com"))
    checks = by_name(doctor.diagnose(load_settings()))
    assert checks["agent network"].level == "ok" and "only the credential gateway" in checks["agent network"].detail
    assert checks["gateway"].level == "ok" and "adds ANTHROPIC_API_KEY" in checks["gateway"].detail
    assert SECRET not in checks["gateway"].detail
    assert "family allow:example.com" in checks["egress"].detail
    assert checks["chat socket"].level == "ok" and str(settings.local_chat_socket) in checks["chat socket"].detail


def test_a_docker_network_for_agents_is_named_as_the_unsafe_opt_out(settings, monkeypatch):
    from base.config import load_settings

    monkeypatch.setenv("CONTAINER_NETWORK", "bridge")
    check = doctor.check_network(load_settings())
    assert check.level == "warn" and "unsafe opt-out" in check.detail and "CONTAINER_NETWORK" in check.fix


def test_a_token_in_the_wrong_key_or_without_its_partner_fails_naming_what_to_copy_again(root, monkeypatch):
    from tests.live_router import fresh_settings
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xapp-1-A111-pasted-into-the-wrong-key")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "MTEx.StandIn.Token")
    check = doctor.check_channels(fresh_settings(), None)
    assert check.level == "fail"
    assert "SLACK_BOT_TOKEN does not look like the Slack app's Bot User OAuth Token (xoxb-...)" in check.detail
    assert "SLACK_APP_TOKEN is not set" in check.detail and "DISCORD_BOT_TOKEN does not" not in check.detail
    assert "xapp-1-A111" not in check.detail
