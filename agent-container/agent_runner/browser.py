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

import json
import os
import queue
import re
import socket
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
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
CALL_TIMEOUT_S = MAX_TIMEOUT_S + NAVIGATION_TIMEOUT_S  # the longest one tool call may take, all in
CLOSE_TIMEOUT_S = 10.0
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024
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
    """The container's browser: `call(fn)` runs `fn(page)` on the browser's thread and returns its text.

    A call that outlasts its timeout is cancelled if it has not begun; if it
    has, that thread is set aside with its Chromium (both end with the
    container) and the next call starts a fresh browser, so nothing a caller
    gave up on runs later.
    """

    def __init__(self, config: BrowserConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self.downloads: list[Path] = []  # saved so far, newest last

    def call(self, action: Callable[[Any], str], timeout_s: float = CALL_TIMEOUT_S) -> str:
        with self._lock:
            if self._worker is None:
                self._worker = _Worker(self)
            worker = self._worker
        done: Future[str] = Future()
        worker.jobs.put((action, done))
        try:
            return done.result(timeout=timeout_s)
        except FutureTimeout:
            if not done.cancel():  # it began: that browser is busy for who knows how long
                with self._lock:
                    if self._worker is worker:
                        self._worker = None
            raise BrowserError(f"the browser did not finish within {timeout_s:g} s; the action was given up "
                               "and the next browser call starts a fresh browser") from None

    def close(self) -> None:
        """Save the session (when kept) and end the browser; safe to call when it never started."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            done: Future[str] = Future()
            worker.jobs.put((_CLOSE, done))
            try:
                done.result(timeout=CLOSE_TIMEOUT_S)
            except Exception:
                pass


_CLOSE: Callable[[Any], str] = lambda page: "closed"  # noqa: E731  (the marker that ends a worker)


class _Worker:
    """One thread with one Playwright and one Chromium; everything it touches is its own."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.jobs: queue.Queue[tuple[Callable[[Any], str], Future[str]]] = queue.Queue()
        self.session = _Session(browser.config, browser.downloads)
        threading.Thread(target=self._serve, name="browser", daemon=True).start()

    def _serve(self) -> None:
        while True:
            action, done = self.jobs.get()
            if not done.set_running_or_notify_cancel():
                continue  # its caller gave up before it began
            try:
                if action is _CLOSE:
                    done.set_result(self.session.stop())
                    return
                done.set_result(self.session.run(action))
            except BaseException as exc:  # every failure goes back to the caller
                done.set_exception(exc)


class _Session:
    """The browser's state on its own thread: Playwright, the context, the page, downloads under way."""

    def __init__(self, config: BrowserConfig, downloads: list[Path]) -> None:
        self.config = config
        self.downloads = downloads
        self.playwright: Any = None
        self.context: Any = None
        self.page: Any = None
        self.pending: list[Any] = []  # downloads started during the current action

    def run(self, action: Callable[[Any], str]) -> str:
        if self.context is None:
            self._start()
        if self.page is None or self.page.is_closed():
            live = [page for page in self.context.pages if not page.is_closed()]
            self.page = live[-1] if live else self._new_page()
        result = action(self.page)
        self._save_downloads()
        if self.config.keep_session:
            self._save_session()
        return result

    def stop(self) -> str:
        if self.context is not None and self.config.keep_session:
            self._save_session()
        self._teardown()
        return "closed"

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            self.playwright = sync_playwright().start()
            launch: dict[str, Any] = {"executable_path": self.config.executable, "headless": True,
                                      "chromium_sandbox": False, "args": ["--disable-dev-shm-usage"]}
            if self.config.proxy_port:
                # Playwright sends loopback through the proxy too (<-loopback>), so a page cannot reach
                # the container's own ports, the gateway's among them.
                launch["proxy"] = {"server": f"http://127.0.0.1:{self.config.proxy_port}"}
            browser = self.playwright.chromium.launch(**launch)
            self.context = browser.new_context(accept_downloads=True, storage_state=self._stored_session())
            self.context.set_default_timeout(DEFAULT_TIMEOUT_S * 1000)
            self.context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_S * 1000)
            self.context.on("page", self._follow_new_page)
            self.page = self._new_page()
        except BaseException:
            self._teardown()  # a half-started browser would make every later call fail
            raise

    def _teardown(self) -> None:
        for step in (lambda: self.context and self.context.browser.close(),
                     lambda: self.playwright and self.playwright.stop()):
            try:
                step()
            except Exception:
                pass
        self.playwright = self.context = self.page = None

    def _new_page(self) -> Any:
        page = self.context.new_page()
        page.on("download", self._note_download)
        return page

    def _follow_new_page(self, page: Any) -> None:
        """A link that opens a new tab: the agent follows it there (and back when the tab closes)."""
        self.page = page
        page.on("download", self._note_download)

    def _note_download(self, download: Any) -> None:
        """A download as it starts; saved after the action, outside Playwright's event callback."""
        self.pending.append(download)

    def _stored_session(self) -> dict[str, Any] | None:
        """The kept cookies and storage, or None: never kept, not kept here, or unreadable (then removed)."""
        path = self.config.group_dir / SESSION_FILE
        if not self.config.keep_session:
            _remove(path)
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            _remove(path)
            return None
        return state if isinstance(state, dict) else None

    def _save_session(self) -> None:
        """Written under a new name and renamed into place, so a kill mid-write leaves the old one."""
        path = self.config.group_dir / SESSION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.context.storage_state()), encoding="utf-8")
        os.replace(temporary, path)

    def _save_downloads(self) -> None:
        while self.pending:
            download = self.pending.pop(0)
            target = unique_path(self.config.group_dir / DOWNLOADS_DIR,
                                 safe_name(download.suggested_filename, "download"))
            download.save_as(str(target))
            if target.stat().st_size > MAX_DOWNLOAD_BYTES:
                target.unlink()
                raise BrowserError(f"the page's download {target.name} is over {MAX_DOWNLOAD_BYTES:,} bytes; "
                                   "it was not kept")
            self.downloads.append(target)

def _remove(path: Path) -> None:
    """Best effort: a session file that cannot be removed is still never loaded."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def proxy_refusal(proxy_port: int | None, url: str) -> str | None:
    """The proxy's reason for refusing `url`'s destination, asked with a CONNECT of our own (None: allowed)."""
    if not proxy_port:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=PROBE_TIMEOUT_S) as probe:
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
