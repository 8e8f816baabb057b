"""`nanoclaw dashboard`: the login URL of the running service's dashboard, ready to open.

The address comes from the service's heartbeat (the port it really got);
with the service down, the address it will use is printed with a note.
`--new-token` replaces the token, which logs every browser out at once
(the service reads it on every request).
"""

from __future__ import annotations

import argparse
import sys

from base.config import Settings
from nanoclaw import dashboard_auth as auth, status
from router.heartbeat import read_beat, status_path


def cmd_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.dashboard:
        print("nanoclaw: the dashboard is switched off (DASHBOARD=off in .env)", file=sys.stderr)
        return 1
    token = auth.login_token(settings, new=args.new_token)
    info = status.service_info(settings)
    try:
        beat = read_beat(status_path(settings))
    except ValueError:
        beat = None
    url = beat.dashboard if info.state == "up" and beat is not None else None
    if url is None:
        bind = settings.dashboard_bind
        url = f"http://{f'[{bind}]' if ':' in bind else bind}:{settings.dashboard_port}"
        note = "the service is not running" if info.state != "up" else "the service runs without its dashboard " \
            "(nanoclaw service logs says why)"
        print(f"nanoclaw: {note}; once it runs, the dashboard is at:", file=sys.stderr)
    print(f"{url}/login?token={token}")
    if args.new_token:
        print("A new token: every browser that used the old one is logged out.", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="print the dashboard's login URL (the service serves it)")
    p.add_argument("--new-token", action="store_true", help="make a new login token (logs every browser out)")
    p.set_defaults(handler=cmd_dashboard)
