"""Linking this machine as a WhatsApp device, and unlinking it: `nanoclaw channels login|logout whatsapp`.

Login connects with an empty session; WhatsApp then offers QR codes (a new
one every 20 s or so), each drawn in the terminal for the phone's camera
(Settings, Linked devices, Link a device). With `--phone` the library asks
WhatsApp for an 8-character pairing code instead, typed on the phone
after "Link with phone number instead". Once the phone accepts, the
device's keys are in `store/whatsapp/session.db` and the service, started
again, connects with them.

Logout tells WhatsApp to forget the device and removes the local session
either way, so nothing that could speak for the account is left on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, TextIO

import segno
from neonize.aioze import events as library_events
from neonize.aioze.client import NewAClient
from neonize.aioze.events import ConnectedEv, ConnectFailureEv, LoggedOutEv, PairStatusEv

from base.config import Settings
from router.channels import whatsapp, whatsapp_link as link

LOGIN_TIMEOUT_S = 180.0
STOP_WAIT_S = 10.0


class LoginFailed(Exception):
    """Linking did not finish; the text says why and what to try."""


def _digits(phone: str) -> str:
    digits = "".join(c for c in phone if c.isdigit())
    if not 7 <= len(digits) <= 15:
        raise LoginFailed(f"{phone!r} is not a phone number in international form (country code first, "
                          "for example +44 7700 900123)")
    return digits


async def login(settings: Settings, out: TextIO, *, phone: str | None = None, timeout_s: float = LOGIN_TIMEOUT_S,
                make_client: Callable[[Path], NewAClient] | None = None,
                devices: Callable[[Path], list] | None = None) -> str:
    """Link a device; returns the account's number. Raises LoginFailed."""
    number = _digits(phone) if phone else None
    make_client, devices = make_client or whatsapp.new_client, devices or whatsapp.linked_devices
    session = link.session_path(settings)
    link.ensure_folder(settings)
    if existing := devices(session):
        raise LoginFailed(f"this machine is already linked to +{existing[0]}; "
                          "`nanoclaw channels logout whatsapp` unlinks it first")
    loop = asyncio.get_running_loop()
    library_events.event_global_loop = loop
    client = make_client(session)
    linked: asyncio.Future[str] = loop.create_future()
    codes_shown = 0

    async def on_qr(_: NewAClient, code: bytes) -> None:
        nonlocal codes_shown
        codes_shown += 1
        if number is not None:
            if codes_shown == 1:  # WhatsApp is listening: ask for a pairing code instead of showing QR codes
                try:
                    pairing = await client.PairPhone(number, True)
                except Exception as exc:
                    _settle(linked, LoginFailed(f"WhatsApp gave no pairing code for +{number}: {exc}"))
                    return
                out.write(f"On the phone of +{number}: WhatsApp, Settings, Linked devices, Link a device, "
                          f"'Link with phone number instead', and enter:\n\n    {pairing}\n\n")
                out.flush()
            return
        out.write("Scan this with WhatsApp on your phone: Settings, Linked devices, Link a device"
                  + (" (a new code; the last one expired)" if codes_shown > 1 else "") + "\n")
        segno.make_qr(code).terminal(out=out, compact=True)
        out.flush()

    async def on_pair(_: NewAClient, event: PairStatusEv) -> None:
        if event.Status == PairStatusEv.ERROR:
            _settle(linked, LoginFailed(f"the phone did not link this machine: {event.Error or 'refused'}"))

    async def on_connected(c: NewAClient, _: ConnectedEv) -> None:
        device = c.me if c.me is not None and c.me.JID.User else await c.get_me()
        _settle(linked, device.JID.User)

    async def on_refused(_: NewAClient, event) -> None:
        _settle(linked, LoginFailed(f"WhatsApp refused the link ({type(event).__name__})"))

    client.qr(on_qr)
    client.event(PairStatusEv)(on_pair)
    client.event(ConnectedEv)(on_connected)
    client.event(LoggedOutEv)(on_refused)
    client.event(ConnectFailureEv)(on_refused)
    runner = await client.connect()
    runner.add_done_callback(lambda task: _settle(linked, LoginFailed(
        f"the connection to WhatsApp ended: {task.exception() if not task.cancelled() else 'cancelled'}")))
    try:
        account = await asyncio.wait_for(linked, timeout_s)
    except asyncio.TimeoutError:
        raise LoginFailed(f"nothing was linked within {timeout_s:.0f} s; run the command again") from None
    finally:
        await _stop(client, runner)
    link.write_state(settings, "linked", account=f"+{account}")
    link.keep_private(settings)
    return account


async def logout(settings: Settings, *, make_client: Callable[[Path], NewAClient] | None = None,
                 devices: Callable[[Path], list] | None = None, timeout_s: float = 30.0) -> str:
    """Unlink the device at WhatsApp when it can be reached, and remove the local session; says what happened."""
    make_client, devices = make_client or whatsapp.new_client, devices or whatsapp.linked_devices
    session = link.session_path(settings)
    if not session.exists():
        return "no WhatsApp device is linked here"
    told = "WhatsApp was not asked (no linked device in the session)"
    try:
        if devices(session):
            told = await _tell_whatsapp(session, make_client, timeout_s)
    except Exception as exc:  # the session unreadable: it is removed all the same
        told = f"the session could not be read ({type(exc).__name__}: {exc}); remove the device on the phone too: " \
            "Settings, Linked devices"
    finally:
        for path in link.session_files(settings):
            path.unlink(missing_ok=True)
    link.write_state(settings, "logged_out", reason="unlinked with `nanoclaw channels logout whatsapp`")
    return f"{told}; the local session is removed"


async def _tell_whatsapp(session: Path, make_client, timeout_s: float) -> str:
    library_events.event_global_loop = asyncio.get_running_loop()
    client = make_client(session)
    connected = asyncio.get_running_loop().create_future()
    client.event(ConnectedEv)(lambda c, e: _settle_async(connected, True))
    runner = await client.connect()
    try:
        await asyncio.wait_for(connected, timeout_s)
        await client.logout()
        return "WhatsApp removed the device"
    except Exception as exc:
        return (f"WhatsApp could not be told ({type(exc).__name__}: {exc}); remove the device on the phone too: "
                "Settings, Linked devices")
    finally:
        await _stop(client, runner)


def _settle(future: asyncio.Future, outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def _settle_async(future: asyncio.Future, outcome) -> None:
    _settle(future, outcome)


async def _stop(client: NewAClient, runner: asyncio.Task) -> None:
    try:
        await asyncio.wait_for(client.stop(), STOP_WAIT_S)
    except Exception:
        pass
    await asyncio.wait([runner], timeout=STOP_WAIT_S)
    if runner.done() and not runner.cancelled():
        runner.exception()  # retrieved: an ended connection was already reported
