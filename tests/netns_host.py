"""A stand-in internet host for network tests: a network namespace with a public address.

Egress rules forbid loopback and private addresses, so tests reach this instead:
a namespace joined by a veth pair, a /30 from 11.22.33.0/24, and HTTP(S)
servers inside that log what they see. Needs root; `with NetnsHost() as host:`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUBNETS = ipaddress.ip_network("11.22.33.0/24").subnets(new_prefix=30)
LOCK_DIR = Path(tempfile.gettempdir())

# The server run inside the namespace: answers GET and POST, logs each request as a JSON line.
_SERVER = r"""
import http.server, json, mimetypes, os, ssl, sys
address, port, log_path, cert, key, pages = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def record(self, body_in):
        with open(log_path, "a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path,
                                  "headers": dict(self.headers.items()), "body": body_in.decode("latin-1")}) + "\n")
    def answer(self, body_in):
        self.record(body_in)
        body = f"hello from {address}:{port} {self.command} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        name = self.path.split("?", 1)[0].removeprefix("/pages/")
        if pages and self.path.startswith("/pages/") and os.path.isfile(os.path.join(pages, name)):
            return self.page(name)
        self.answer(b"")
    def page(self, name):
        self.record(b"")
        with open(os.path.join(pages, name), "rb") as source:
            body = source.read()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", kind + ("; charset=utf-8" if kind.startswith("text/") else ""))
        if not kind.startswith("text/html"):
            self.send_header("Content-Disposition", f'attachment; filename="{name}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer((address, port), Handler)
if cert:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for an IP address: clients trust `cert` as their CA."""

    cert: Path
    key: Path


def make_certificate(directory: Path, address: str) -> Certificate:
    """A throw-away certificate and key whose subject alternative name is the address."""
    cert, key = directory / f"{address}.pem", directory / f"{address}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={address}", "-addext", f"subjectAltName=IP:{address}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@dataclass
class NetnsServer:
    """An HTTP(S) server inside the namespace, and what it has seen."""

    address: str
    port: int
    log_path: Path
    process: subprocess.Popen
    tls: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}"

    def requests(self) -> list[dict]:
        """Every request the server has received so far, oldest first."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]


class NetnsHost:
    """A remote host in a network namespace: `remote_address` inside, `local_address` on this machine."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"nanoclaw-egress-{tag}"
        self.host_link, self.inner_link = f"nce{tag}h", f"nce{tag}n"
        self.local_address = self.remote_address = ""
        self._lock = None
        self._processes: list[subprocess.Popen] = []
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))

    def __enter__(self) -> NetnsHost:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> NetnsHost:
        """Create the namespace, the veth pair and the addresses; the remote host then answers pings."""
        if os.geteuid() != 0:
            raise PermissionError("a network namespace needs root: run the tests as root")
        subnet = self._claim_subnet()
        hosts = list(subnet.hosts())
        self.local_address, self.remote_address = str(hosts[0]), str(hosts[1])
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.inner_link)
            _ip("link", "set", self.inner_link, "netns", self.name)
            _ip("addr", "add", f"{self.local_address}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "addr", "add", f"{self.remote_address}/30", "dev", self.inner_link)
            _ip("-n", self.name, "link", "set", self.inner_link, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.stop()
            raise
        return self

    def spawn(self, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        """Start a command inside the namespace; `stop()` ends it."""
        process = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **popen_kwargs)
        self._processes.append(process)
        return process

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        """Run a command inside the namespace to its end (a firewall rule, a route); raises if it fails."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, check=True)

    def serve_http(self, port: int, tls: Certificate | None = None, pages: Path | None = None) -> NetnsServer:
        """An HTTP server (HTTPS with a certificate) on the remote address, ready when this returns.

        With `pages`, GET /pages/<name> answers that file of the folder (HTML as a page, anything else
        as a download); every other request is answered with one line naming it.
        """
        log_path = self._workdir / f"requests-{port}.jsonl"
        cert, key = (str(tls.cert), str(tls.key)) if tls else ("", "")
        argv = [sys.executable, "-c", _SERVER, self.remote_address, str(port), str(log_path), cert, key,
                str(pages or "")]
        process = self.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise RuntimeError(f"the test server on port {port} did not start: {process.stderr.read()}")
        return NetnsServer(self.remote_address, port, log_path, process, tls is not None)

    def certificate(self) -> Certificate:
        """A certificate for the remote address, made once per host."""
        if not (self._workdir / f"{self.remote_address}.pem").exists():
            make_certificate(self._workdir, self.remote_address)
        return Certificate(self._workdir / f"{self.remote_address}.pem", self._workdir / f"{self.remote_address}.key")

    def stop(self) -> None:
        """End every process started inside, then remove the veth pair and the namespace."""
        for process in self._processes:
            process.kill()
            process.wait(timeout=10)
        self._processes.clear()
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _claim_subnet(self) -> ipaddress.IPv4Network:
        """The first /30 no other test session holds (a lock file) and no interface here uses."""
        in_use = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
        for subnet in SUBNETS:
            lock = open(LOCK_DIR / f"nanoclaw-netns-{subnet.network_address}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            if any(f" {host}/" in in_use for host in subnet):
                lock.close()
                continue
            self._lock = lock
            return subnet
        raise RuntimeError("no free /30 left in 11.22.33.0/24 for a test namespace")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
