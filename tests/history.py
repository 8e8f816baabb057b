"""A realistic, seeded event history that touches every projection.

Used by the replay tests and by bench/eventlog.py: messages in many chats,
runs with outputs and replies, tasks with runs, sessions, IPC traffic.
"""

from __future__ import annotations

import random
from typing import Iterator

from events import types as t


def synthetic_history(count: int, *, groups: int = 20, seed: int = 7) -> Iterator[tuple[t.Event, str | None]]:
    """Yield about `count` (event, key) pairs in a plausible order."""
    rng = random.Random(seed)
    jids = [f"local:chat{i}" for i in range(groups)]
    folders = [f"group{i}" for i in range(groups)]
    emitted = 0
    for i, (jid, folder) in enumerate(zip(jids, folders)):
        yield t.ChatSeen(chat_jid=jid, timestamp="2026-01-01T00:00:00.000Z", name=f"Chat {i}",
                         channel="local", is_group=i % 2 == 0), None
        yield t.GroupRegistered(jid=jid, name=f"Chat {i}", folder=folder, trigger="@Andy",
                                requires_trigger=i != 0, is_main=i == 0), None
        emitted += 2
    seq_guess = emitted
    run = 0
    while emitted < count:
        g = rng.randrange(groups)
        jid, folder = jids[g], folders[g]
        roll = rng.random()
        if roll < 0.80:
            n = emitted
            yield t.MessageReceived(
                chat_jid=jid, message_id=f"m{n}", sender=f"u{rng.randrange(5)}",
                sender_name=rng.choice(["Alice", "Bob", "Carol"]),
                content=f"@Andy message number {n} " + "x" * rng.randrange(80),
                timestamp=f"2026-01-01T00:{(n // 60) % 60:02d}:{n % 60:02d}.000Z", channel="local",
            ), f"local:{jid}:m{n}"
            emitted += 1
        elif roll < 0.93:
            run += 1
            run_id = f"run{run}"
            yield t.AgentRunRequested(folder=folder, chat_jid=jid), None
            yield t.AgentRunStarted(run_id=run_id, folder=folder, chat_jid=jid,
                                    container=f"nanoclaw-{folder}-{run}", from_seq=max(0, seq_guess - 50),
                                    through_seq=seq_guess), None
            yield t.AgentOutput(run_id=run_id, folder=folder, index=0, status="success",
                                result="Sure thing.", new_session_id=f"s-{folder}-{run % 3}"), None
            yield t.SessionUpdated(folder=folder, session_id=f"s-{folder}-{run % 3}", run_id=run_id), None
            yield t.OutboundQueued(outbound_id=f"out{run}", chat_jid=jid, text="Sure thing.",
                                   run_id=run_id), f"out:{run}"
            if rng.random() < 0.95:
                yield t.OutboundSent(outbound_id=f"out{run}", chat_jid=jid, channel="local"), f"sent:{run}"
            else:
                yield t.OutboundFailed(outbound_id=f"out{run}", chat_jid=jid, attempts=3,
                                       reason="channel offline"), f"failed:{run}"
            failed = rng.random() < 0.1
            yield t.AgentRunFinished(run_id=run_id, folder=folder, chat_jid=jid,
                                     status="error" if failed else "ok", had_output=True,
                                     duration_ms=rng.randrange(200, 5000)), None
            emitted += 7
        elif roll < 0.97:
            task_id = f"task-{emitted}"
            yield t.TaskScheduled(task_id=task_id, group_folder=folder, chat_jid=jid, prompt="daily summary",
                                  schedule_type="cron", schedule_value="0 9 * * *",
                                  next_run="2026-01-02T09:00:00.000Z"), None
            yield t.TaskRunFinished(task_id=task_id, group_folder=folder, status="success",
                                    duration_ms=1200, result="done", next_run="2026-01-03T09:00:00.000Z"), None
            action = rng.choice([t.TaskPaused, t.TaskResumed, t.TaskCancelled])
            yield action(task_id=task_id, group_folder=folder), None
            yield t.TaskUpdated(task_id=task_id, group_folder=folder, prompt="weekly summary"), None
            emitted += 4
        else:
            yield t.IpcReceived(folder=folder, kind="messages", file=f"{emitted}.json",
                                payload={"type": "message", "chatJid": jid, "text": "hi"}), f"ipc:{emitted}"
            yield t.IpcRejected(folder=folder, file=f"{emitted}.json", reason="not authorized"), None
            yield t.ChatSeen(chat_jid=jid, timestamp="2026-01-02T00:00:00.000Z", name=f"Renamed {g}"), None
            yield t.SessionCleared(folder=folder, reason="stale session"), None
            emitted += 4
        seq_guess = emitted
