"""The host's operations on a group's folders, run as the service's own user.

The attack tests start this script as root or, through setpriv, as the
ordinary user whose uid equals the container's, so each operation runs with
exactly the rights the service would have. Arguments: an operation and a JSON
object; the answer is one JSON object on stdout. Refusals are recorded in the
install's event log as the service records them.
"""

from __future__ import annotations

import json
import sys
import time

from base.agent_paths import PathRefused
from base.config import load_settings
from events import EventLog, types as t
from jobs import container_log
from jobs.cleanup import run_cleanup
from jobs.workspace import base_mounts, container_user
from rules.groups import register_group
from rules.ipc_folder import clear_input, request_close, write_input
from rules.outbox import FileRefused, take_file
from rules.refusals import record_refusal, recorder
from rules.snapshots import write_groups_snapshot, write_tasks_snapshot


def _record(settings, folder: str) -> container_log.RunRecord:
    return container_log.RunRecord(
        group_name=folder, container=f"nanoclaw-{folder}-1", is_main=False, started_iso=f"{time.time_ns()}",
        duration_ms=1, exit_code=0, timed_out=False, had_output=True, input_summary={}, prompt_length=1,
        session_id=None)


def prepare(settings, log, folder: str, is_main: bool = False) -> dict:
    user, chown = container_user()
    mounts = base_mounts(settings, folder, is_main=is_main, chown=chown, on_refused=recorder(log, folder))
    return {"user": user, "mounts": [[m.host, m.target, m.readonly] for m in mounts]}


def pipe(settings, log, folder: str, name: str | None = None) -> dict:
    try:
        return {"file": str(write_input(settings, folder, "hello", name))}
    except PathRefused as refused:  # what the trigger stage does with a refused pipe
        record_refusal(log, folder, "pipe messages into the running agent", refused)
        return {"refused": refused.reason}


def everything(settings, log, folder: str, times: int = 1, name: str | None = None) -> dict:
    """Each host operation on the group's folders, `times` over (while an agent swaps links)."""
    for _ in range(times):
        prepare(settings, log, folder)
        pipe(settings, log, folder, name)
        request_close(settings, folder, recorder(log, folder))
        clear_input(settings, folder, recorder(log, folder))
        container_log.write(settings.logs_dir, folder, _record(settings, folder), verbose=False, failed=False,
                            secrets=[])
        write_tasks_snapshot(settings, log, folder, False)
        write_groups_snapshot(settings, log, folder, False)
        run_cleanup(settings, log)
    return {"done": times}


def send_file(settings, log, folder: str, path: str, times: int = 1) -> dict:
    """What the actions stage does with a `file` request, `times` over: the copies taken, the refusals."""
    taken, refused = [], []
    for n in range(times):
        try:
            file = take_file(settings, folder, path, f"attack-{n}")
            taken.append((settings.data_dir / file.path).read_text(errors="replace"))
        except FileRefused as exc:
            refused.append(str(exc))
    return {"taken": taken, "refused": refused}


def refusals(settings, log) -> dict:
    found = [r.event for r in log.read_since(0, types=[t.HostPathRefused], limit=None)]
    return {"refusals": [[e.folder, e.path, e.operation, e.reason] for e in found]}  # type: ignore[attr-defined]


def receive_file(settings, log, folder: str, message_id: str, name: str, text: str, times: int = 1) -> dict:
    """What a channel does with a file a person sent, `times` over: the lines the messages would carry."""
    import asyncio

    from router.channels.inbound_files import Incoming, receive_files

    async def fetch() -> bytes:
        return text.encode()

    async def all_of_them() -> list[str]:
        return [await receive_files(settings, folder, message_id, [Incoming(name, "Document", None, fetch)])
                for _ in range(times)]
    return {"lines": asyncio.run(all_of_them())}


OPERATIONS = {
    "register": lambda settings, log, folder, is_main=False: {
        "folder": register_group(log, settings, jid=f"local:{folder}", name=folder.title(), folder=folder,
                                 is_main=is_main).folder},
    "prepare": prepare,
    "pipe": pipe,
    "everything": everything,
    "send_file": send_file,
    "receive_file": receive_file,
    "refusals": refusals,
}


def main() -> int:
    operation, arguments = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    settings = load_settings()
    settings.ensure_dirs()
    log = EventLog(settings.db_path)
    try:
        print(json.dumps(OPERATIONS[operation](settings, log, **arguments)))
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
