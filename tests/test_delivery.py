"""Delivery: retries with backoff, failures recorded, no chat stalls another."""

from __future__ import annotations

import asyncio
import time

import pytest

from events import types as t
from router.channels.base import Channel
from router.delivery import Delivery


class RecordingChannel(Channel):
    """A channel whose sends fail or hang on request, recording what got through."""

    name = "test"

    def __init__(self, failures: dict[str, int] | None = None, hang: set[str] | None = None):
        self.failures = dict(failures or {})
        self.hang = hang or set()
        self.sent: list[tuple[str, str, float]] = []
        self.attempts: dict[str, int] = {}

    async def connect(self):
        pass

    async def disconnect(self):
        pass

    def owns_jid(self, jid):
        return jid.startswith("test:")

    async def send(self, jid, text, *, outbound_id, thread_id=None):
        self.attempts[outbound_id] = self.attempts.get(outbound_id, 0) + 1
        if jid in self.hang:
            await asyncio.sleep(3600)
        if self.failures.get(outbound_id, 0) > 0:
            self.failures[outbound_id] -= 1
            raise ConnectionError("platform said no")
        self.sent.append((jid, text, time.monotonic()))


async def on_db(fn, *args):
    return fn(*args)


def queue(log, outbound_id: str, jid: str, text: str) -> None:
    log.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=jid, text=text), key=f"out:{outbound_id}")


async def deliver_all(delivery: Delivery, log, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await delivery.dispatch()
        if not log.query("SELECT 1 FROM outbound WHERE state = 'queued'"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("deliveries did not finish")


def states(log) -> dict[str, tuple[str, int, str | None]]:
    return {r["outbound_id"]: (r["state"], r["attempts"], r["reason"]) for r in log.query("SELECT * FROM outbound")}


def test_replies_to_one_chat_arrive_in_order_and_are_recorded(log, tmp_path):
    channel = RecordingChannel()
    for n in range(5):
        queue(log, f"o{n}", "test:a", f"reply {n}")
    asyncio.run(deliver_all(Delivery(log, [channel], on_db, data_dir=tmp_path), log))
    assert [text for _, text, _ in channel.sent] == [f"reply {n}" for n in range(5)]
    assert set(states(log).values()) == {("sent", 1, None)}


def test_a_failing_send_is_retried_with_backoff_then_succeeds(log, tmp_path):
    channel = RecordingChannel(failures={"o1": 2})
    queue(log, "o1", "test:a", "hello")
    started = time.monotonic()
    asyncio.run(deliver_all(Delivery(log, [channel], on_db, data_dir=tmp_path, backoff_s=0.1), log))
    assert channel.attempts["o1"] == 3
    assert time.monotonic() - started >= 0.1 + 0.2  # 0.1 s, then doubled
    assert states(log)["o1"] == ("sent", 3, None)


def test_after_three_failed_attempts_the_reply_is_recorded_as_failed_with_the_reason(log, tmp_path):
    channel = RecordingChannel(failures={"o1": 99})
    queue(log, "o1", "test:a", "hello")
    queue(log, "o2", "test:a", "next one still goes")
    asyncio.run(deliver_all(Delivery(log, [channel], on_db, data_dir=tmp_path, backoff_s=0.01), log))
    assert channel.attempts["o1"] == 3
    assert states(log)["o1"] == ("failed", 3, "ConnectionError: platform said no")
    assert states(log)["o2"] == ("sent", 1, None)
    failed = log.read_since(0, types=[t.OutboundFailed])
    assert [r.key for r in failed] == ["failed:o1"]


def test_a_hanging_chat_does_not_stall_the_others(log, tmp_path):
    channel = RecordingChannel(hang={"test:stuck"})
    queue(log, "o1", "test:stuck", "never arrives")
    queue(log, "o2", "test:b", "arrives at once")

    async def scenario():
        delivery = Delivery(log, [channel], on_db, data_dir=tmp_path, backoff_s=0.01, send_timeout_s=0.2)
        started = time.monotonic()
        await delivery.dispatch()
        while not channel.sent:
            await asyncio.sleep(0.005)
        arrived = time.monotonic() - started
        await deliver_all(delivery, log)
        return arrived

    arrived = asyncio.run(scenario())
    assert arrived < 0.2  # did not wait for the stuck chat's timeout
    assert states(log)["o1"] == ("failed", 3, "TimeoutError")
    assert states(log)["o2"][0] == "sent"


def test_a_reply_to_a_chat_no_channel_owns_fails_at_once(log, tmp_path):
    queue(log, "o1", "nowhere:1", "lost?")
    asyncio.run(deliver_all(Delivery(log, [RecordingChannel()], on_db, data_dir=tmp_path), log))
    assert states(log)["o1"] == ("failed", 0, "no channel owns nowhere:1")


@pytest.mark.parametrize("outcome", [t.OutboundSent, t.OutboundFailed])
def test_recording_the_outcome_twice_is_harmless(log, outcome):
    queue(log, "o1", "test:a", "x")
    kwargs = {"reason": "r", "attempts": 3} if outcome is t.OutboundFailed else {}
    key = f"{'sent' if outcome is t.OutboundSent else 'failed'}:o1"
    first = log.append(outcome(outbound_id="o1", chat_jid="test:a", **kwargs), key=key)
    again = log.append(outcome(outbound_id="o1", chat_jid="test:a", **kwargs), key=key)
    assert first.seq == again.seq and not again.created


def test_a_stop_lets_a_send_under_way_finish_and_be_recorded_and_starts_nothing_new(log, tmp_path):
    class SlowChannel(RecordingChannel):
        async def send(self, jid, text, *, outbound_id, thread_id=None):
            await asyncio.sleep(0.3)
            await super().send(jid, text, outbound_id=outbound_id)

    channel = SlowChannel(hang={"test:stuck"})
    queue(log, "a1", "test:a", "under way at the stop")
    queue(log, "a2", "test:a", "not begun at the stop")
    queue(log, "s1", "test:stuck", "hangs past the grace")

    async def scenario():
        delivery = Delivery(log, [channel], on_db, data_dir=tmp_path)
        await delivery.dispatch()
        await asyncio.sleep(0.1)  # a1 and s1 are being sent
        await delivery.stop()

    asyncio.run(scenario())
    assert [text for _, text, _ in channel.sent] == ["under way at the stop"]
    assert states(log) == {"a1": ("sent", 1, None), "a2": ("queued", 0, None), "s1": ("queued", 0, None)}
