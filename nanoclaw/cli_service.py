"""`nanoclaw service install|uninstall|start|stop|restart|status|logs`: the systemd user unit.

A thin layer over `nanoclaw.service_manager`. Where systemd is absent every
subcommand says so and prints how to run in the foreground instead; the ones
that would start the service then exit non-zero.
"""

from __future__ import annotations

import argparse
import sys

from base.config import Settings
from nanoclaw.service_manager import ServiceError, Systemd, SystemdMissing, foreground_instructions

EXIT_FAILED = 1


def _install(manager: Systemd, args: argparse.Namespace) -> int:
    state = manager.install()
    if state != "active":
        print(f"nanoclaw: the service is {state}, not running: see `nanoclaw service logs -n 50`", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _uninstall(manager: Systemd, args: argparse.Namespace) -> int:
    missing = manager.uninstall()
    if missing:
        print(f"nanoclaw: {missing}; there was no service to stop.\n"
              f"{foreground_instructions(manager.settings)}", file=sys.stderr)
    return 0


def _control(manager: Systemd, args: argparse.Namespace) -> int:
    state = manager.control(args.service_command)
    wanted = ("inactive", "failed") if args.service_command == "stop" else ("active",)
    return 0 if state in wanted else EXIT_FAILED


def _status(manager: Systemd, args: argparse.Namespace) -> int:
    return manager.status()


def _logs(manager: Systemd, args: argparse.Namespace) -> int:
    try:
        return manager.logs(follow=args.follow, lines=args.lines)
    except KeyboardInterrupt:
        return 0


_ACTIONS = {"install": _install, "uninstall": _uninstall, "start": _control, "stop": _control,
            "restart": _control, "status": _status, "logs": _logs}


def cmd_service(settings: Settings, args: argparse.Namespace) -> int:
    manager = Systemd(settings, out=lambda line: print(line, flush=True))
    try:
        return _ACTIONS[args.service_command](manager, args)
    except SystemdMissing as exc:
        print(f"nanoclaw: {exc}, so NanoClaw cannot run as a systemd service.\n"
              f"{foreground_instructions(settings)}", file=sys.stderr)
        return EXIT_FAILED
    except ServiceError as exc:
        print(f"nanoclaw: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of lines from 1 up")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("service", help="install and control the systemd user service")
    ssub = p.add_subparsers(dest="service_command", required=True, metavar="COMMAND")
    helps = {
        "install": "write the user unit for this install, enable and start it",
        "uninstall": "stop and disable the service and remove its unit",
        "start": "start the service", "stop": "stop the service (running agents get a bounded wait)",
        "restart": "restart the service", "status": "systemd's status of the service",
    }
    for name, text in helps.items():
        ssub.add_parser(name, help=text).set_defaults(handler=cmd_service)
    logs = ssub.add_parser("logs", help="the service's journal (journalctl --user -u nanoclaw)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=_positive, help="show the last N lines")
    logs.set_defaults(handler=cmd_service)
