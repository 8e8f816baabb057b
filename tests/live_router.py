"""The real `RouterApp` in the test's own event loop, for channel tests against a stand-in server.

Tests run their steps inside `live_router` and wait with `until`, which
yields to the router's loop while it waits.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from base.config import Settings, load_settings
from events import EventLog, types as t
from router.app import RouterApp


def fresh_settings() -> Settings:
    """Settings from the test's environment (a stand-in's URL and tokens set), with their folders made."""
    settings = load_settings()
    settings.ensure_dirs()
    return settings


@asynccontextmanager
async def live_router(settings, log):
    app = RouterApp(settings, log)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def start_and_stop(settings, log) -> None:
    """Start the router and stop it again; what start-up raises (a refused token) is raised here."""
    async def scenario():
        app = RouterApp(settings, log)
        try:
            await app.start()
        finally:
            await app.stop()
    asyncio.run(scenario())


async def until(predicate, timeout: float = 30.0, what: str = "a condition"):
    """Wait (without blocking the router's loop) until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def keys_of(log: EventLog, cls) -> list[str | None]:
    return [r.key for r in log.read_since(0, types=[cls], limit=None)]


def queue_file(settings, log, outbound_id: str, name: str, data: bytes, media_type: str, caption: str,
               jid: str) -> None:
    """A file reply as the actions stage queues it: the host's copy in the outbox, then the event."""
    copy = settings.data_dir / "outbox" / outbound_id / name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(data)
    file = t.OutboundFile(name=name, path=f"outbox/{outbound_id}/{name}", size=len(data), media_type=media_type)
    log.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=jid, text=caption, origin="ipc", file=file),
               key=f"out:{outbound_id}")
