"""A headless Chromium the agent drives through its `browser_*` tools.

One browser per container, started by the first browser tool call (a ready
agent or a run that never browses pays nothing), driven by Playwright on a
thread of its own: Playwright's sync API must be called from the thread
that started it, and the providers call tools from whatever thread they
use. Each call hands a function of the page to that thread and waits.

The box stays a box: Chromium runs as the agent's user inside the
container (its own sandbox is off; it cannot nest namespaces under
Docker's seccomp, and the container is the sandbox), every request goes to
the gateway's proxy, which applies the group's egress policy (a refusal is
turned into the proxy's own reason), only http(s) pages are opened, and
downloads, screenshots and PDFs are written into the group's folder. With
`keep_session` the cookies and local storage are kept in the group's
folder between containers; without it they are removed when the browser
starts.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

OUTPUT_DIR = "browser"          # screenshots and PDFs, under the group's folder
DOWNLOADS_DIR = "downloads"     # files the pages download
SESSION_FILE = ".browser/session.json"
MAX_TEXT_CHARS = 20_000
DEFAULT_TIMEOUT_S = 15.0
MAX_TIMEOUT_S = 120.0
NAVIGATION_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 5.0
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SCHEMES = ("http", "https")
# Chromium's own words when the proxy would not open a tunnel or answer, or a navigation ended on its error page.
_PROXY_FAILURES = ("ERR_TUNNEL_CONNECTION_FAILED", "ERR_PROXY_CONNECTION_FAILED", "ERR_HTTP_RESPONSE_CODE_FAILURE",
                   "ERR_EMPTY_RESPONSE", "chrome-error://")
_REFUSAL_PREFIX = "nanoclaw egress"


class BrowserError(Exception):
    """What the agent is told when an action fails: plain words, no stack."""


@dataclass(frozen=True)
class BrowserConfig:
    executable: str
    group_dir: Path
    proxy_port: int | None
    keep_session: bool = False


def browser_executable() -> str | None:
    """The Chromium this image carries (`NANOCLAW_BROWSER`, set only in the full image), or None."""
    path = os.environ.get("NANOCLAW_BROWSER") or ""
    return path if path and os.access(path, os.X_OK) else None


class Browser:
    """The container's browser: `call(fn)` runs `fn(page)` on the browser's thread and returns its text."""

    def __init__(self, config: BrowserConfig) -> None:
        self.config = config
        self._jobs: queue.Queue[tuple[Callable[[Any], str], Future[str]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._page: Any = None
        self._context: Any = None
        self._playwright: Any = None
        self.started_at: float | None = None  # seconds the first start took
        self.downloads: list[Path] = []  # saved so far, newest last
        self._pending: list[Any] = []     # started during the current action

    # --- the thread --------------------------------------------------------

    def call(self, action: Callable[[Any], str], timeout_s: float = MAX_TIMEOUT_S + NAVIGATION_TIMEOUT_S) -> str:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="browser", daemon=True)
                self._thread.start()
        done: Future[str] = Future()
        self._jobs.put((action, done))
        return done.result(timeout=timeout_s)

    def close(self) -> None:
        """Save the session (when kept) and end the browser; safe to call when it never started."""
        if self._thread is not None and self._thread.is_alive():
            try:
                self.call(self._shutdown, timeout_s=10)
            except Exception:
                pass
            self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            action, done = job
            try:
                if self._page is None and action is not self._shutdown:
                    self._start()
                result = action(self._page)
                self._save_downloads()
                if self._context is not None and self.config.keep_session:
                    self._save_session()
                done.set_result(result)
            except BaseException as exc:  # every failure goes back to the caller
                done.set_exception(exc)

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        started = time.monotonic()
        session = self.config.group_dir / SESSION_FILE
        if not self.config.keep_session:
            session.unlink(missing_ok=True)
        self._playwright = sync_playwright().start()
        launch: dict[str, Any] = {"executable_path": self.config.executable, "headless": True,
                                  "chromium_sandbox": False, "args": ["--disable-dev-shm-usage"]}
        if self.config.proxy_port:
            launch["proxy"] = {"server": f"http://127.0.0.1:{self.config.proxy_port}"}
        browser = self._playwright.chromium.launch(**launch)
        self._context = browser.new_context(
            accept_downloads=True,
            storage_state=str(session) if self.config.keep_session and session.is_file() else None,
        )
        self._context.set_default_timeout(DEFAULT_TIMEOUT_S * 1000)
        self._context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_S * 1000)
        self._page = self._context.new_page()
        self._context.on("page", self._follow_new_page)
        self._page.on("download", self._save_download)
        self.started_at = time.monotonic() - started

    def _shutdown(self, page: Any) -> str:
        if self._context is not None:
            if self.config.keep_session:
                self._save_session()
            self._context.browser.close()
            self._context = self._page = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None
        return "closed"

    def _save_session(self) -> None:
        path = self.config.group_dir / SESSION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self._context.storage_state(path=str(path))

    def _follow_new_page(self, page: Any) -> None:
        """A link that opens a new tab: the agent follows it there."""
        self._page = page
        page.on("download", self._save_download)

    def _save_download(self, download: Any) -> None:
        """Note a download as it starts; it is saved after the action, outside Playwright's event callback."""
        self._pending.append(download)

    def _save_downloads(self) -> None:
        while self._pending:
            download = self._pending.pop(0)
            name = safe_name(download.suggested_filename, "download")
            target = unique_path(self.config.group_dir / DOWNLOADS_DIR, name)
            download.save_as(str(target))
            self.downloads.append(target)

    # --- helpers the tools share -------------------------------------------

    def refusal_of(self, url: str) -> str | None:
        """The proxy's reason for refusing `url`'s destination, asked with a CONNECT of our own."""
        if not self.config.proxy_port:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            with socket.create_connection(("127.0.0.1", self.config.proxy_port), timeout=PROBE_TIMEOUT_S) as probe:
                probe.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                answer = _read_answer(probe)
        except OSError:
            return None
        status_line, _, rest = answer.partition("\r\n")
        if " 200 " in f"{status_line} ":
            return None
        body = rest.partition("\r\n\r\n")[2].strip()
        return body or status_line


def _read_answer(sock: socket.socket, limit: int = 16_384) -> str:
    data = b""
    while len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length is None or len(body) >= int(length.group(1)):
                break
    return data.decode("utf-8", "replace")


def check_url(url: str) -> str:
    """The URL to open, or BrowserError: only http and https (no file:, chrome:, javascript:)."""
    text = url.strip()
    if "://" not in text and not text.startswith(("about:", "data:", "javascript:", "file:", "chrome:")):
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise BrowserError(f"only http:// and https:// pages can be opened, not {url!r}")
    return text


def safe_name(name: str, fallback: str) -> str:
    """A plain file name: letters, digits, dot, dash and underscore; never a path or a dot file."""
    cleaned = _SAFE_NAME.sub("-", os.path.basename(name or "")).strip(".-")[:120]
    return cleaned or fallback


def unique_path(directory: Path, name: str) -> Path:
    """`directory/name`, or `name-2`, `name-3`... when taken; creates the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    stem, dot, suffix = name.partition(".") if not name.startswith(".") else (name, "", "")
    candidate, n = directory / name, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = directory / f"{stem}-{n}{dot}{suffix}"
    return candidate


def refused(url: str, reason: str) -> str:
    """What the agent is told when the egress policy (or the proxy's address rules) refused a page."""
    return f"The group's egress policy refused {url}: {reason.strip()}"


def proxy_failure(message: str) -> bool:
    return any(code in message for code in _PROXY_FAILURES)


def is_refusal_page(status: int | None, text: str) -> bool:
    """A plain-http answer written by the egress proxy itself rather than by the site."""
    return status is not None and status >= 400 and text.lstrip().startswith(_REFUSAL_PREFIX)
