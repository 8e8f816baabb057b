"""`nanoclaw channels login|logout whatsapp`: the QR flow's output, pairing by code, unlinking.

The real neonize client runs on the stand-in for its Go core
(tests/whatsapp_core_stub.py), which shows QR codes and accepts the link
as WhatsApp's servers would through the library's callbacks.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import threading

import pytest
import segno

from base.config import load_settings
from nanoclaw import cli_channels
from router.channels import whatsapp, whatsapp_link as link
from router.channels.whatsapp_login import LoginFailed, login, logout
from tests import whatsapp_core_stub as wa
from tests.waiting import wait_for


@pytest.fixture
def core(root, monkeypatch):
    found = wa.Core(linked=False)
    monkeypatch.setattr(whatsapp, "new_client", wa.client_on(found))
    monkeypatch.setattr(whatsapp, "linked_devices", wa.devices_of(found))
    return found


def _drawn(code: str) -> str:
    out = io.StringIO()
    segno.make_qr(code.encode()).terminal(out=out, compact=True)
    return out.getvalue()


def _accept_when(condition, core) -> threading.Thread:
    """The person, on the phone: accepts the link once the terminal shows what they need."""
    def phone():
        wait_for(condition, timeout=20, what="the terminal to show the code")
        core.link_phone()
    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    return thread


def test_login_draws_each_qr_code_whatsapp_offers_and_keeps_the_linked_account(core):
    settings = load_settings()
    out = io.StringIO()
    phone = _accept_when(lambda: out.getvalue().count("Scan this") == 2, core)
    account = asyncio.run(login(settings, out, timeout_s=30))
    phone.join(5)
    shown = out.getvalue()
    assert account == wa.BOT_NUMBER
    assert "Settings, Linked devices, Link a device" in shown
    assert _drawn(core.qr_codes[0]) in shown and _drawn(core.qr_codes[1]) in shown  # exactly the codes offered
    assert "a new code; the last one expired" in shown
    state = link.read_state(settings)
    assert (state.state, state.account) == ("linked", f"+{wa.BOT_NUMBER}")
    assert link.folder(settings).stat().st_mode & 0o777 == 0o700
    assert not core.running()  # the login's connection is closed: the service makes its own


def test_login_by_phone_number_shows_the_pairing_code_instead_of_qr_codes(core):
    settings = load_settings()
    out = io.StringIO()
    phone = _accept_when(lambda: core.pairing_code in out.getvalue(), core)
    asyncio.run(login(settings, out, phone="+44 7700 900077", timeout_s=30))
    phone.join(5)
    assert core.paired_phone == "447700900077"
    assert "Link with phone number instead" in out.getvalue() and "Scan this" not in out.getvalue()


def test_login_refuses_a_number_that_is_not_one_and_an_already_linked_machine(core):
    settings = load_settings()
    with pytest.raises(LoginFailed, match="international form"):
        asyncio.run(login(settings, io.StringIO(), phone="call me"))
    core.linked = True
    with pytest.raises(LoginFailed, match="already linked to \\+447700900077.*logout"):
        asyncio.run(login(settings, io.StringIO()))


def test_login_gives_up_when_nobody_scans_and_says_so(core):
    settings = load_settings()
    with pytest.raises(LoginFailed, match="nothing was linked within 1 s"):
        asyncio.run(login(settings, io.StringIO(), timeout_s=1))
    assert link.read_state(settings) is None
    assert not core.running()


def test_the_command_prints_the_own_chat_and_what_to_run_next(core, capsys):
    settings = load_settings()
    settings.ensure_dirs()
    _accept_when(core.running, core)
    code = cli_channels.cmd_login(settings, argparse.Namespace(phone=None, timeout=30))
    shown = capsys.readouterr().out
    assert code == 0
    assert f"Linked to +{wa.BOT_NUMBER}" in shown
    assert f"nanoclaw groups add wa:{wa.BOT_NUMBER}@s.whatsapp.net --name \"Me\" --folder main --main" in shown
    assert "service restart" in shown


def test_logout_unlinks_at_whatsapp_and_removes_the_local_session(core):
    settings = load_settings()
    link.ensure_folder(settings)
    session = link.session_path(settings)
    session.write_bytes(b"keys")
    session.with_name(session.name + "-wal").write_bytes(b"more keys")
    core.linked = True
    said = asyncio.run(logout(settings))
    assert said.startswith("WhatsApp removed the device")
    assert not core.linked
    assert list(link.folder(settings).glob("session.db*")) == []
    assert link.read_state(settings).state == "logged_out"
    assert link.describe(settings) is None  # nothing linked: the channel does not start


def test_logout_without_reaching_whatsapp_still_removes_the_session_and_says_to_check_the_phone(core):
    settings = load_settings()
    link.ensure_folder(settings)
    link.session_path(settings).write_bytes(b"keys")
    core.linked = True
    core.Neonize = lambda *args: None  # the connection never comes up
    said = asyncio.run(logout(settings, timeout_s=0.5))
    assert "could not be told" in said and "Linked devices" in said
    assert not link.session_path(settings).exists()
