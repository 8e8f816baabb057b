"""The `nanoclaw` command: parses arguments and hands over to one function.

Each command is a few lines over functions that tests call directly. A bad
setting or argument ends the program with one line saying what to change;
nothing here decides anything the library does not.
"""

from __future__ import annotations

import argparse
import sys

from base.config import ConfigError, load_settings
from base.logs import setup_logging
from events import EventDecodeError
from events.rules import InvariantError
from nanoclaw import (cli_backup, cli_channels, cli_chat, cli_dashboard, cli_events, cli_groups, cli_image,
                      cli_service, cli_status, cli_tasks, cli_usage, cli_why)
from rules.groups import GroupError

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanoclaw",
        description="NanoClaw Pro: a personal Claude assistant in your chat apps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_events.add_parsers(sub)
    cli_groups.add_parsers(sub)
    cli_chat.add_parsers(sub)
    cli_image.add_parsers(sub)
    cli_tasks.add_parsers(sub)
    cli_status.add_parsers(sub)
    cli_service.add_parsers(sub)
    cli_usage.add_parsers(sub)
    cli_why.add_parsers(sub)
    cli_backup.add_parsers(sub)
    cli_channels.add_parsers(sub)
    cli_dashboard.add_parsers(sub)
    run = sub.add_parser("run", help="run the service (what systemd starts): router and worker")
    run.add_argument("--no-worker", action="store_true",
                     help="router only; agents run in 'nanoclaw worker' processes started elsewhere")
    run.set_defaults(handler=_run, long_running=True)
    worker = sub.add_parser("worker", help="run one job worker alone (scale-out, debugging)")
    worker.add_argument("--supervised", action="store_true",
                        help="started by 'nanoclaw run': ignore Ctrl-C, the service stops it with SIGTERM")
    worker.set_defaults(handler=_worker, long_running=True)
    return parser


# The two long-running commands import their process's code when they run, so that every short
# command (status, events, why, ...) starts without loading the router, huey and the channels.
def _run(settings, args) -> int:
    from nanoclaw.service import run_service

    return run_service(settings, with_worker=not args.no_worker)


def _worker(settings, args) -> int:
    from jobs.worker import run_worker

    return run_worker(settings, supervised=args.supervised)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"nanoclaw: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings.ensure_dirs()
    long_running = getattr(args, "long_running", False)
    setup_logging(settings, to_files=True, stderr_level=None if long_running else "WARNING")
    try:
        return args.handler(settings, args) or 0
    except cli_events.UsageError as exc:
        print(f"nanoclaw: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (GroupError, EventDecodeError, InvariantError) as exc:
        print(f"nanoclaw: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
