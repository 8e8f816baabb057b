"""`nanoclaw channels login|logout whatsapp`: link this machine to a chat account that has no token.

Telegram, Slack and Discord are set up with tokens in `.env`; WhatsApp is
set up by linking this machine as a device of a phone's account. The work
is in router/channels/whatsapp_login.py; this prints what it says and
exits 1 when linking did not finish.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from base.config import Settings

CHANNELS_WITH_LOGIN = ("whatsapp",)


def cmd_login(settings: Settings, args: argparse.Namespace) -> int:
    from router.channels.whatsapp_login import LoginFailed, login

    try:
        account = asyncio.run(login(settings, sys.stdout, phone=args.phone, timeout_s=args.timeout))
    except LoginFailed as exc:
        print(f"nanoclaw: WhatsApp not linked: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nanoclaw: WhatsApp not linked (interrupted)", file=sys.stderr)
        return 1
    own_chat = f"wa:{account}@s.whatsapp.net"
    print(f"Linked to +{account}. The session is in {settings.store_dir / 'whatsapp'}.\n"
          f"Your own chat ('Message yourself') is {own_chat}; to make it the main group:\n"
          f"  .venv/bin/nanoclaw groups add {own_chat} --name \"Me\" --folder main --main\n"
          "Then restart the service (.venv/bin/nanoclaw service restart) so it connects with the new device.")
    return 0


def cmd_logout(settings: Settings, args: argparse.Namespace) -> int:
    from router.channels.whatsapp_login import logout

    print(asyncio.run(logout(settings)))
    print("Restart the service (.venv/bin/nanoclaw service restart) so it stops using WhatsApp.")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("channels", help="link or unlink a chat account that has no token (WhatsApp)")
    csub = p.add_subparsers(dest="channels_command", required=True, metavar="COMMAND")
    login = csub.add_parser("login", help="link this machine as a device of your WhatsApp account (QR code)")
    login.add_argument("channel", choices=CHANNELS_WITH_LOGIN)
    login.add_argument("--phone", help="pair with a code typed on the phone instead of a QR code "
                                        "(the account's number, country code first)")
    login.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the phone (default 180)")
    login.set_defaults(handler=cmd_login)
    logout = csub.add_parser("logout", help="unlink this machine from WhatsApp and remove the local session")
    logout.add_argument("channel", choices=CHANNELS_WITH_LOGIN)
    logout.set_defaults(handler=cmd_logout)
