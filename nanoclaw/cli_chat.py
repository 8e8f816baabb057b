"""`nanoclaw chat`: talk to the assistant from this terminal through the local channel.

Interactive by default (a prompt with history, replies printed as they
arrive, Ctrl-D to leave); with a message argument it sends that one message
and prints the replies that follow, waiting at most `--wait` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from base.config import Settings
from events import EventLog
from events.queries import find_group, main_group
from router.channels.local import jid_name, socket_path
from router.channels.local_client import ChatClientError, LocalChatClient

QUIET_AFTER_REPLY_S = 2.0
DEFAULT_WAIT_S = 300.0


def resolve_jid(settings: Settings, group: str | None, jid: str | None) -> str:
    if jid:
        return jid
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        if group:
            found = find_group(log, group)
            if found is None:
                raise ChatClientError(f"no registered group {group!r}; see 'nanoclaw groups list'")
        else:
            found = main_group(log)
            if found is None:
                raise ChatClientError("no main group yet: nanoclaw groups add local:me --name Me --folder main --main")
    finally:
        log.close()
    if jid_name(found.jid) is None:
        raise ChatClientError(f"group {found.folder!r} is {found.jid}, not a local chat; "
                              "register a local one with 'nanoclaw groups add local:NAME ...'")
    return found.jid


def one_shot(client: LocalChatClient, text: str, wait_s: float, out=sys.stdout) -> int:
    """Send one message and print the replies that follow; 0 if any came."""
    client.send(text)
    deadline = time.monotonic() + wait_s
    replies = 0
    while (remaining := deadline - time.monotonic()) > 0:
        timeout = min(remaining, QUIET_AFTER_REPLY_S) if replies else remaining
        event = client.next_event(timeout)
        if event is None:
            if replies:
                break
            continue
        if event.get("op") == "reply":
            print(event["text"], file=out, flush=True)
            replies += 1
        elif event.get("op") == "closed":
            break
    if not replies:
        print(f"nanoclaw: no reply within {wait_s:g} s", file=sys.stderr)
        return 1
    return 0


def interactive(client: LocalChatClient, settings: Settings) -> int:
    import readline  # noqa: F401  (line editing and history for input())
    import threading

    history = settings.data_dir / "chat-history"
    _load_history(history)
    for entry in client.history:
        who = settings.assistant_name if entry.get("kind") == "reply" else entry.get("from", "you")
        print(f"{who}: {entry.get('text', '')}")
    print(f"chatting with {settings.assistant_name} in {client.jid} (Ctrl-D to leave)")

    def show() -> None:
        typing = False
        while (event := client.next_event(None)) is not None and event.get("op") != "closed":
            if event.get("op") == "reply":
                sys.stdout.write(f"\r{settings.assistant_name}: {event['text']}\n> ")
            elif event.get("op") == "typing" and event.get("on") and not typing:
                sys.stdout.write(f"\r({settings.assistant_name} is typing...)\n> ")
            typing = bool(event.get("on")) if event.get("op") == "typing" else typing
            sys.stdout.flush()

    threading.Thread(target=show, daemon=True).start()
    try:
        while True:
            line = input("> ")
            if line.strip():
                client.send(line)
    except (EOFError, KeyboardInterrupt):
        print()
    finally:
        _save_history(history)
    return 0


def _load_history(path: Path) -> None:
    import readline

    try:
        readline.read_history_file(path)
    except OSError:
        pass


def _save_history(path: Path) -> None:
    import readline

    try:
        readline.set_history_length(1000)
        readline.write_history_file(path)
    except OSError:
        pass


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    try:
        jid = resolve_jid(settings, args.group, args.jid)
        client = LocalChatClient(socket_path(settings), jid, sender=args.as_name)
    except ChatClientError as exc:
        print(f"nanoclaw: {exc}", file=sys.stderr)
        return 1
    try:
        if args.message:
            return one_shot(client, " ".join(args.message), args.wait)
        return interactive(client, settings)
    except ChatClientError as exc:
        print(f"nanoclaw: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="talk to the assistant from this terminal")
    p.add_argument("message", nargs="*", help="send this one message and print the replies")
    p.add_argument("--group", metavar="FOLDER", help="a registered local group (default: the main group)")
    p.add_argument("--jid", help="a local chat id such as local:me")
    p.add_argument("--as", dest="as_name", metavar="NAME", help="the sender name (default: your user name)")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                   help="with a message: how long to wait for replies (default 300)")
    p.set_defaults(handler=cmd_chat)
