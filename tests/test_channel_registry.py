"""Channels join the registry on import; missing credentials skip one, none at all is fatal."""

from __future__ import annotations

import pytest

from router.channels import registry
from router.channels.base import ChannelContext
from router.channels.local import LocalChannel, jid_name


@pytest.fixture
def isolated_registry(monkeypatch):
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_needs", {})
    return registry


def _context(settings) -> ChannelContext:
    async def nothing(*_):
        return None

    return ChannelContext(settings, nothing, nothing, dict)


def test_importing_the_channels_package_registers_the_local_chat():
    import router.channels  # noqa: F401

    assert "local" in registry.names()


def test_a_channel_without_credentials_is_skipped_with_a_warning(isolated_registry, settings, caplog):
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        isolated_registry.register("telegram", lambda ctx: None)
        isolated_registry.register("local", LocalChannel)
        channels = isolated_registry.create_channels(_context(settings))
    finally:
        logger.remove(sink)
    assert [c.name for c in channels] == ["local"]
    assert any("channel telegram: credentials missing, skipping it" in m for m in messages)


def test_no_channel_at_all_is_a_clear_error(isolated_registry, settings):
    isolated_registry.register("telegram", lambda ctx: None)
    with pytest.raises(registry.NoChannelsError, match="no channel could start"):
        isolated_registry.create_channels(_context(settings))


def test_registering_again_replaces_the_factory_but_keeps_its_place(isolated_registry):
    isolated_registry.register("a", lambda ctx: None)
    isolated_registry.register("b", lambda ctx: None)
    isolated_registry.register("a", lambda ctx: None)
    assert isolated_registry.names() == ["a", "b"]


def test_the_first_channel_that_owns_a_jid_gets_it(settings):
    local = LocalChannel(_context(settings))
    assert registry.owner_of([local], "local:me") is local
    assert registry.owner_of([local], "tg:1") is None


@pytest.mark.parametrize(("jid", "name"), [("local:me", "me"), ("local:a.b-c_d", "a.b-c_d"), ("local:", None),
                                           ("local:../x", None), ("local:a b", None), ("tg:1", None)])
def test_local_jids(jid, name):
    assert jid_name(jid) == name
