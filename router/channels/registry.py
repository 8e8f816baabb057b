"""Channels join this registry when their module is imported.

A factory returns None when its credentials are missing; the router then
skips that channel with a warning. The order of
registration is the order channels are tried when finding a JID's owner.
Each channel also declares the settings it needs and the JID prefix it
owns, so `nanoclaw doctor` can say which groups a missing key leaves
unreachable without knowing any channel itself.
"""

from __future__ import annotations

import importlib
from typing import Callable

from loguru import logger

from base.config import Settings
from router.channels.base import Channel, ChannelContext, ChannelFactory

_factories: dict[str, ChannelFactory] = {}
_needs: dict[str, tuple[tuple[str, ...], str | None]] = {}  # name -> (credential keys, JID prefix)
_set_up_by: dict[str, tuple[Callable[[Settings], bool], str]] = {}  # name -> (is it set up?, how to set it up)


class NoChannelsError(Exception):
    """Every channel was skipped: the router would have nobody to talk to."""


def register(name: str, factory: ChannelFactory, *, credentials: tuple[str, ...] = (),
             jid_prefix: str | None = None) -> None:
    """Add or replace a channel factory (a replacement keeps its position)."""
    _factories[name] = factory
    _needs[name] = (credentials, jid_prefix)


def declare(name: str, module: str, *, credentials: tuple[str, ...] = (), jid_prefix: str,
            present: Callable[[Settings], bool] | None = None, how: str = "") -> None:
    """A channel whose module is imported only when it is set up (its client library is big).

    Set up means one of its credentials is set, or `present(settings)` says so
    (WhatsApp's linked device is a session file, not a key). Importing the
    module registers its real factory in this one's place.
    """
    def factory(ctx: ChannelContext) -> Channel | None:
        if present is not None and not present(ctx.settings):
            return None
        if present is None and not any(ctx.settings.secret(key) for key in credentials):
            return None
        importlib.import_module(module)
        real = _factories[name]
        if real is factory:
            raise RuntimeError(f"{module} did not register the channel {name!r}")
        return real(ctx)
    register(name, factory, credentials=credentials, jid_prefix=jid_prefix)
    if present is not None:
        _set_up_by[name] = (present, how)


def is_set_up(name: str, settings: Settings) -> bool:
    """Whether the channel has what it needs to start: all its credentials, or its own test (`declare`)."""
    if name in _set_up_by:
        return _set_up_by[name][0](settings)
    return all(settings.secret(key) for key in credentials_of(name))


def missing_for(name: str, settings: Settings) -> str:
    """What the channel lacks, in words: the keys not set, or how to set it up."""
    if name in _set_up_by:
        return _set_up_by[name][1]
    return f"{', '.join(k for k in credentials_of(name) if not settings.secret(k))} not set"


def credentials_of(name: str) -> tuple[str, ...]:
    """The settings the channel cannot start without."""
    return _needs.get(name, ((), None))[0]


def channel_for_jid(jid: str) -> str | None:
    """The registered channel whose JIDs start like this one, if any."""
    return next((name for name, (_, prefix) in _needs.items() if prefix and jid.startswith(prefix)), None)


def get(name: str) -> ChannelFactory | None:
    return _factories.get(name)


def names() -> list[str]:
    return list(_factories)


def create_channels(ctx: ChannelContext) -> list[Channel]:
    """Instantiate every registered channel that has what it needs."""
    channels: list[Channel] = []
    for name, factory in _factories.items():
        channel = factory(ctx)
        if channel is None:
            logger.warning("channel {}: credentials missing, skipping it", name)
            continue
        channels.append(channel)
    if not channels:
        raise NoChannelsError(
            "no channel could start: set a channel's credentials (for example TELEGRAM_BOT_TOKEN in .env)"
        )
    return channels


def owner_of(channels: list[Channel], jid: str) -> Channel | None:
    """The first channel that owns the JID."""
    return next((c for c in channels if c.owns_jid(jid)), None)
