"""The router process: wires channels and stages together; decides nothing itself.

Start-up order, after `nanoclaw run` has checked the container runtime and
removed orphans: channels connect (one without credentials is skipped; none
at all is fatal), every stage replays what lies past its
checkpoint, then the live loops wait for the log's wake-ups. Shutdown stops
the loops and disconnects the channels.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

from loguru import logger

import router.channels  # noqa: F401  (registers the installed channels)
from base.config import Settings
from events import EventLog, consumer, queries
from events.types import MessageReceived
from router.actions import ActionsStage
from router.channels import registry
from router.channels.base import Channel, ChannelContext, InboundMessage
from router.delivery import Delivery, Typing
from router.inbound import GroupDirectory, Inbound
from router.ipc import IpcWatcher
from router.trigger_stage import TriggerStage
from rules.allowlist import AllowlistFile
from rules.notices import tell_unread
from rules.snapshots import write_all_tasks_snapshots, write_groups_snapshot

SAFETY_POLL_S = 5.0


class RouterApp:
    """Channels in, events out; replies back through the owning channel."""

    def __init__(self, settings: Settings, log: EventLog, extra_stages: list[consumer.Stage] | None = None,
                 every: list[tuple[float, Callable[[], object]]] | None = None):
        """`every`: (seconds, function) pairs run on the database thread once live, then at that interval."""
        self.settings = settings
        self.log = log
        self.allowlist = AllowlistFile(settings.sender_allowlist_path)
        self.groups = GroupDirectory(log)
        self.inbound = Inbound(log, self.allowlist, self.groups)
        self._incoming: asyncio.Queue | None = None
        self.trigger_stage = TriggerStage(settings, self.allowlist)
        self.actions = ActionsStage(settings, on_refresh_groups=self._refresh_groups,
                                    on_tasks_changed=partial(write_all_tasks_snapshots, settings))
        self.stages: list[consumer.Stage] = [self.trigger_stage, self.actions, *(extra_stages or [])]
        self.every = every or []
        self.ipc = IpcWatcher(settings, log)
        self.channels: list[Channel] = []
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-db")
        self._stop = asyncio.Event()
        self._wakes: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task] = []
        self._recorder: asyncio.Task | None = None  # records what channels hand over, until they are all gone
        self._loop: asyncio.AbstractEventLoop | None = None
        self.live = False  # set once the live loops run (the heartbeat reports it)

    async def on_db(self, fn, *args):
        """Run a log operation on the router's one database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, partial(fn, *args))

    def _context(self) -> ChannelContext:
        async def on_message(channel: str, message: InboundMessage) -> int | None:
            done = asyncio.get_running_loop().create_future()
            self._incoming.put_nowait((channel, message, done))
            return await done

        async def on_chat_metadata(jid, timestamp, name, channel, is_group) -> None:
            if not self.inbound.knows(jid, name, channel, is_group):
                await self.on_db(self.inbound.chat_metadata, jid, timestamp, name, channel, is_group)

        async def recent_messages(jid: str, limit: int) -> list[MessageReceived]:
            return await self.on_db(queries.recent_messages, self.log, jid, limit)

        async def notify(jid: str, outbound_id: str, text: str) -> None:
            await self.on_db(tell_unread, self.log, self.settings, jid, outbound_id, text)

        async def recorded_ids(jid: str, message_ids: list[str]) -> set[str]:
            return await self.on_db(queries.recorded_message_ids, self.log, jid, message_ids)

        return ChannelContext(self.settings, on_message, on_chat_metadata, self.groups.current, recent_messages,
                              recorded_ids, notify)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._incoming = asyncio.Queue()
        self._recorder = asyncio.create_task(self._record_incoming())
        self.channels = registry.create_channels(self._context())
        for channel in self.channels:
            await channel.connect()
            logger.info("channel {} connected", channel.name)
        self.ipc.start()
        for stage in self.stages:
            replayed = await self.on_db(consumer.drain, self.log, stage)
            logger.info("replayed {} event(s) past the {} stage's checkpoint", replayed, stage.name)
        self.delivery = Delivery(self.log, self.channels, self.on_db, data_dir=self.settings.data_dir)
        self.typing = Typing(self.log, self.channels, self.on_db)
        self.log.waker.add_listener(self._on_append)
        self._tasks += [
            *(asyncio.create_task(self._loop_stage(stage.name, partial(self._drain, stage))) for stage in self.stages),
            asyncio.create_task(self._loop_stage("delivery", self.delivery.dispatch)),
            asyncio.create_task(self._loop_stage("typing", self.typing.dispatch)),
            *(asyncio.create_task(self._every(seconds, fn)) for seconds, fn in self.every),
        ]
        self.live = True
        logger.info("router live: {} channel(s), {} group(s)", len(self.channels),
                    len(self.groups.current()))

    async def _record_incoming(self) -> None:
        """Record inbound messages, as many per transaction as are waiting."""
        while True:
            batch = [await self._incoming.get()]
            while not self._incoming.empty():
                batch.append(self._incoming.get_nowait())
            try:
                seqs = await self.on_db(self.inbound.messages, [(c, m) for c, m, _ in batch])
            except Exception as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, _, done), seq in zip(batch, seqs):
                if not done.done():
                    done.set_result(seq)

    def _refresh_groups(self, folder: str) -> None:
        """Main asked for fresh chat names: sync every channel, then rewrite its snapshot."""
        async def refresh() -> None:
            await asyncio.gather(*(c.sync_groups(True) for c in self.channels), return_exceptions=True)
            await self.on_db(write_groups_snapshot, self.settings, self.log, folder, True)

        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(refresh()))

    async def _drain(self, stage: consumer.Stage) -> None:
        await self.on_db(consumer.drain, self.log, stage)

    def _on_append(self, seq: int) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for wake in self._wakes:
            wake.set()

    async def _loop_stage(self, name: str, step) -> None:
        wake = asyncio.Event()
        self._wakes.append(wake)
        while not self._stop.is_set():
            wake.clear()
            try:
                await step()
            except Exception:
                logger.exception("stage {} failed; retrying after the next event", name)
            try:
                await asyncio.wait_for(wake.wait(), SAFETY_POLL_S)
            except asyncio.TimeoutError:
                pass

    async def _every(self, seconds: float, fn: Callable[[], object]) -> None:
        while not self._stop.is_set():
            try:
                await self.on_db(fn)
            except Exception:
                logger.exception("{} failed; trying again in {:.0f} s", getattr(fn, "__name__", fn), seconds)
            try:
                await asyncio.wait_for(self._stop.wait(), seconds)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        """Stop the loops, finish or cancel deliveries, disconnect every channel."""
        self._stop.set()
        self.ipc.stop()
        self.log.waker.remove_listener(self._on_append)
        self._wake_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if hasattr(self, "delivery"):
            await self.delivery.stop()
        for channel in self.channels:  # a channel may still hand over what it took in (WhatsApp's queue)
            try:
                await channel.disconnect()
            except Exception as exc:
                logger.warning("channel {} did not disconnect cleanly: {}", channel.name, exc)
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
        self._db.shutdown(wait=True)
        logger.info("router stopped")

    async def serve(self, stop: asyncio.Event) -> None:
        """Start, wait for `stop`, then shut down."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
