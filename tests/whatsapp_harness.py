"""What the WhatsApp tests share: the stand-in core wired into the channel, an install sharing the owner's
number or with one of its own, and small helpers."""

from __future__ import annotations

import pytest

from events import EventLog
from router.channels import whatsapp, whatsapp_link as link
from rules.groups import register_group
from tests import whatsapp_core_stub as wa
from tests.live_router import fresh_settings, until

ME = f"{wa.BOT_NUMBER}@s.whatsapp.net"
ALICE, BOB = "447700900001@s.whatsapp.net", "447700900002@s.whatsapp.net"
SELF_CHAT, FAMILY = f"wa:{ME}", "wa:120363000000000001@g.us"


@pytest.fixture
def core(monkeypatch):
    found = wa.Core()
    monkeypatch.setattr(whatsapp, "new_client", wa.client_on(found))
    monkeypatch.setattr(whatsapp, "linked_devices", wa.devices_of(found))
    return found


def _install(monkeypatch, own_number: bool):
    monkeypatch.setenv("ASSISTANT_HAS_OWN_NUMBER", "true" if own_number else "false")
    settings = fresh_settings()
    link.ensure_folder(settings)
    link.session_path(settings).touch()
    log = EventLog(settings.db_path)
    return settings, log


@pytest.fixture
def shared(root, core, monkeypatch):
    """The owner's own number: main is their 'Message yourself' chat."""
    settings, log = _install(monkeypatch, own_number=False)
    register_group(log, settings, jid=SELF_CHAT, name="Me", folder="main", is_main=True)
    register_group(log, settings, jid=FAMILY, name="Family", folder="family")
    yield settings, log
    log.close()


@pytest.fixture
def own(root, core, monkeypatch):
    """A number of the assistant's own: main is Alice's chat with it."""
    settings, log = _install(monkeypatch, own_number=True)
    register_group(log, settings, jid=f"wa:{ALICE}", name="Alice", folder="main", is_main=True)
    register_group(log, settings, jid=FAMILY, name="Family", folder="family")
    yield settings, log
    log.close()


def say(core, chat: str, sender: str, text: str, id: str, **kw) -> None:
    core.deliver(wa.message(chat, sender, text, id=id, **kw))


def saved_file(settings, content: str):
    """The file a message names in main's inbox (`[Photo: /workspace/group/inbox/<name> (...)]`)."""
    name = content.split("/workspace/group/inbox/")[1].split(" (")[0]
    assert "/" not in name
    return settings.groups_dir / "main" / "inbox" / name


async def connected_channel(app) -> whatsapp.WhatsAppChannel:
    channel = next(c for c in app.channels if c.name == "whatsapp")
    await until(channel.is_connected, what="WhatsApp to connect")
    return channel
