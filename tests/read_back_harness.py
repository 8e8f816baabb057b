"""What the read-back tests share: the messages and notices in the log, warnings caught, a service away.

`away` runs one scenario: the router live while `before` is said
(`heard_then_stopped`), stopped (its connection closed) while `meanwhile`
is, then started again until the log holds `expected` messages.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Callable

from loguru import logger

from events import EventLog, types as t
from tests.live_router import live_router, until
from tests.observe import of_type

HOUR = 3600.0


def messages(log: EventLog) -> list[t.MessageReceived]:
    return of_type(log, t.MessageReceived)


def notices(log: EventLog, jid: str) -> list[str]:
    return [o.text for o in of_type(log, t.OutboundQueued) if o.origin == "notice" and o.chat_jid == jid]


@contextmanager
def warnings():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        yield lines
    finally:
        logger.remove(sink)


async def heard_then_stopped(settings, log: EventLog, connected: Callable[[], bool], before: Callable[[], object],
                             expected_before: int = 1) -> None:
    """The router live while `before` is said, until the log holds `expected_before` messages; then stopped."""
    async with live_router(settings, log):
        await until(connected, what="the connection")
        before()
        await until(lambda: len(messages(log)) >= expected_before, what="the messages before the stop")
    await until(lambda: not connected(), what="the connection to close")


def away(settings, log: EventLog, connected: Callable[[], bool], before: Callable[[], object],
         meanwhile: Callable[[], object], expected: int, expected_before: int = 1) -> None:
    async def scenario():
        await heard_then_stopped(settings, log, connected, before, expected_before)
        meanwhile()
        async with live_router(settings, log):
            await until(lambda: len(messages(log)) >= expected, timeout=60, what="what was said while it was stopped")
            await asyncio.sleep(0.5)
    asyncio.run(scenario())
