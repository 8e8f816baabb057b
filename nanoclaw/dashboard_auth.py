"""Who may see the dashboard, and which requests are really the page's own.

One login token per install, made on first use and kept in
`store/dashboard-token` (0600; `store/` is never in a container).
`nanoclaw dashboard` prints it inside a ready URL. Visiting `/login?token=`
with it sets a session cookie (HttpOnly, SameSite=Strict) whose value is
derived from the token, so a restart keeps people logged in and a new
token (`nanoclaw dashboard --new-token`) logs everyone out.

Three checks stand between another web page and the dashboard's actions:
the cookie is never sent on a cross-site request (SameSite=Strict); every
action must carry the page's CSRF value, derived from the session and
never in a cookie; and the `Host` header must name the dashboard's own
address, so a hostile name made to point at 127.0.0.1 (DNS rebinding)
cannot read the pages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from base.config import Settings

COOKIE = "nanoclaw_dashboard"
TOKEN_FILE = "dashboard-token"


def token_path(settings: Settings) -> Path:
    return settings.store_dir / TOKEN_FILE


def login_token(settings: Settings, *, new: bool = False) -> str:
    """The install's token, made (or replaced) atomically with mode 0600."""
    path = token_path(settings)
    if not new:
        try:
            found = path.read_text().strip()
            if len(found) >= 32:
                return found
        except FileNotFoundError:
            pass
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.replace(temp, path)
    return token


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    return _derive(token, "session")


def csrf_value(token: str) -> str:
    return _derive(token, "csrf")


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def allowed_hosts(bind: str, port: int) -> set[str]:
    """The `Host` values a browser sends for this dashboard: its address, and localhost for a loopback one."""
    shown = f"[{bind}]" if ":" in bind else bind
    hosts = {f"{shown}:{port}"}
    if bind in ("127.0.0.1", "::1"):
        hosts |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    return hosts
