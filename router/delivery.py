"""Outbound delivery: queued replies reach their chats, in order, at most once more.

The `outbound` projection is the outbox: every row still `queued` is owed to
a chat, so a restart resumes exactly where delivery stopped. Each chat has
its own sender task, so a chat whose channel fails or hangs delays only its
own replies. A reply its channel splits is sent part by part, each recorded
as `OutboundPartSent` once accepted, so a restart resumes at the first part
not sent; the whole is recorded as `OutboundSent`. A crash between a send
and its record sends that part (or reply) once more, with the same outbound
id, which a deduplicating channel absorbs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Awaitable, Callable

from loguru import logger

from base.faults import fault_point
from events import EventLog, types as t
from events.queries import chats_with_queued_replies, next_queued_reply, outbound_file, queued_outbound_ids
from router.channels.base import Channel
from router.channels.registry import owner_of
from rules.outbox import file_path, release, sweep

DELIVERY_ATTEMPTS = 3
BACKOFF_S = 1.0
SEND_TIMEOUT_S = 30.0
FILE_SEND_TIMEOUT_S = 180.0
STOP_GRACE_S = 2.0  # at a stop, for a send under way to finish and be recorded  # a 20 MB upload on an ordinary uplink
READ_LIMIT = 1000

RunOnDb = Callable[..., Awaitable]


class Delivery:
    """Sends queued outbound messages through their owning channels."""

    def __init__(self, log: EventLog, channels: list[Channel], on_db: RunOnDb, *, data_dir: Path,
                 attempts: int = DELIVERY_ATTEMPTS, backoff_s: float = BACKOFF_S,
                 send_timeout_s: float = SEND_TIMEOUT_S):
        self.log = log
        self.channels = channels
        self.on_db = on_db
        self.data_dir = data_dir  # where the outbox copies of files lie (rules/outbox.py)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.send_timeout_s = send_timeout_s
        self._chats: dict[str, asyncio.Task] = {}
        self._seen_version: int | None = None
        self._stopping = False
        self._swept = False  # outbox copies left by a crash are removed at the first dispatch

    async def dispatch(self) -> None:
        """Start a sender for every chat that has queued replies and none running (none once stopping)."""
        if self._stopping:
            return
        if not self._swept:
            self._swept = True
            queued = await self.on_db(queued_outbound_ids, self.log)
            for outbound_id in sweep(self.data_dir, queued):
                logger.info("outbox: removed the copy of {}, whose reply was already sent or given up", outbound_id)
        version = self.log.table_version("outbound")
        finished = [chat for chat, task in self._chats.items() if task.done()]
        for chat in finished:
            del self._chats[chat]
        if version == self._seen_version and not finished:
            return  # nothing queued since the last look, and every sender is still at work
        self._seen_version = version
        chats = await self.on_db(chats_with_queued_replies, self.log)
        for chat in chats:
            if chat not in self._chats:
                task = asyncio.create_task(self._deliver_chat(chat), name=f"deliver {chat}")
                task.add_done_callback(lambda _: asyncio.ensure_future(self.dispatch()))
                self._chats[chat] = task

    async def stop(self) -> None:
        """Start nothing new; give the sends under way STOP_GRACE_S to finish and be recorded; cancel the rest.

        A part cut off (a 429 being waited out) is sent again after the restart.
        """
        self._stopping = True
        running = [task for task in self._chats.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=STOP_GRACE_S)
        for task in self._chats.values():
            task.cancel()
        await asyncio.gather(*self._chats.values(), return_exceptions=True)

    async def _deliver_chat(self, chat: str) -> None:
        while not self._stopping and (item := await self.on_db(next_queued_reply, self.log, chat)) is not None:
            await self._deliver(chat, item["outbound_id"], item["text"], outbound_file(item), item["parts_sent"],
                                item["thread_id"])

    async def _deliver(self, chat: str, outbound_id: str, text: str, file: t.OutboundFile | None = None,
                       parts_sent: int = 0, thread_id: str | None = None) -> None:
        """Send the reply, then release a file's outbox copy once the reply is recorded sent or failed."""
        ended = await self._send_reply(chat, outbound_id, text, file, parts_sent, thread_id)
        if ended and file is not None:
            release(self.data_dir, outbound_id)

    async def _send_reply(self, chat: str, outbound_id: str, text: str, file: t.OutboundFile | None,
                          parts_sent: int, thread_id: str | None) -> bool:
        """The reply's parts from the first not yet sent, each recorded; then the reply as sent or failed.

        Returns False when a stop cut it short: it stays queued for the next start.
        """
        channel = owner_of(self.channels, chat)
        if channel is None:
            await self._record_failure(chat, outbound_id, 0, f"no channel owns {chat}")
            return True
        parts = [text] if file is not None else channel.split(text)
        reason = "unknown"
        fault_point("delivery-before-send")
        for attempt in range(1, self.attempts + 1):
            try:
                while parts_sent < len(parts):
                    if self._stopping:
                        return False
                    await asyncio.wait_for(self._sending(channel, chat, outbound_id, parts[parts_sent], file,
                                                         thread_id),
                                           self.send_timeout_s if file is None else FILE_SEND_TIMEOUT_S)
                    parts_sent += 1
                    if len(parts) > 1:
                        fault_point("delivery-after-part")
                        await self.on_db(self._record_part, chat, outbound_id, parts_sent, len(parts))
                        fault_point("delivery-part-recorded")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a channel's failure must never stall delivery
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                logger.warning("sending to {} failed (attempt {}/{}): {}", chat, attempt, self.attempts, reason)
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            fault_point("delivery-after-send")
            await self.on_db(self._record_sent, chat, outbound_id, attempt, channel.name)
            return True
        await self._record_failure(chat, outbound_id, self.attempts, reason)
        return True

    def _sending(self, channel: Channel, chat: str, outbound_id: str, text: str,
                 file: t.OutboundFile | None, thread_id: str | None) -> Awaitable[None]:
        if file is None:
            return channel.send(chat, text, outbound_id=outbound_id, thread_id=thread_id)
        return channel.send_file(chat, file, file_path(self.data_dir, file), text, outbound_id=outbound_id,
                                 thread_id=thread_id)

    def _record_part(self, chat: str, outbound_id: str, part: int, parts: int) -> None:
        self.log.append(t.OutboundPartSent(outbound_id=outbound_id, chat_jid=chat, part=part, parts=parts),
                        key=f"part:{outbound_id}:{part}")

    def _record_sent(self, chat: str, outbound_id: str, attempts: int, channel: str) -> None:
        self.log.append(t.OutboundSent(outbound_id=outbound_id, chat_jid=chat, attempts=attempts, channel=channel),
                        key=f"sent:{outbound_id}")

    async def _record_failure(self, chat: str, outbound_id: str, attempts: int, reason: str) -> None:
        logger.error("gave up on a reply to {} after {} attempt(s): {}", chat, attempts, reason)
        await self.on_db(lambda: self.log.append(
            t.OutboundFailed(outbound_id=outbound_id, chat_jid=chat, attempts=attempts, reason=reason),
            key=f"failed:{outbound_id}"))


class Typing:
    """Typing indicators from run events: on at start and when piping, off at the end."""

    def __init__(self, log: EventLog, channels: list[Channel], on_db: RunOnDb):
        self.log = log
        self.channels = channels
        self.on_db = on_db
        self.after = log.last_seq()
        self._seen_version = log.table_version("runs")

    async def dispatch(self) -> None:
        version = self.log.table_version("runs")
        if version == self._seen_version:
            return
        self._seen_version = version
        high, records = await self.on_db(self._read)
        self.after = high if len(records) < READ_LIMIT else records[-1].seq
        for record in records:
            event = record.event
            if isinstance(event, t.AgentRunStarted) and event.task_id is not None:
                continue
            on = not isinstance(event, t.AgentRunFinished)
            channel = owner_of(self.channels, event.chat_jid)
            if channel is not None:
                try:
                    await channel.set_typing(event.chat_jid, on)
                except Exception as exc:  # typing is a courtesy; never let it break anything
                    logger.warning("typing indicator for {} failed: {}", event.chat_jid, exc)

    def _read(self):
        high = self.log.last_seq()
        records = self.log.read_since(self.after, types=[t.AgentRunStarted, t.MessagesPiped, t.AgentRunFinished],
                                      before_seq=high + 1, limit=READ_LIMIT)
        return high, records
