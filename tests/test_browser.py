"""The agent's browser, for real: Chromium in the full image, driven by the runner's tools, through the gateway.

A real `nanoclaw run` (router and worker) runs the scripted agent in the
full image with no network; its only way out is the gateway's proxy, under
the group's `allow:` policy naming the test's web host (a network namespace
with a public address, since the proxy never connects to private ones).
The script calls the browser tools as a model would, and each tool's reply
comes back to the local chat. The real Claude CLI driving the same tools is
in tests/test_claude_browser.py.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from events import EventLog, types as t
from router.channels.local_client import LocalChatClient
from rules.groups import group_dir, register_group
from tests.egress_harness import remote  # noqa: F401 (the namespace host fixture)
from tests.router_process import RouterProcess

pytestmark = pytest.mark.docker

JID = "local:web"
REPLY_TIMEOUT_S = 120
SITE_PORT = 8081

FORM = """<!doctype html><html><head><title>The form</title></head><body>
<h1>Tell us</h1>
<form action="/submit" method="post">
  <label>Name <input id="name" name="name"></label>
  <label>Colour <select id="colour" name="colour"><option value="red">Red</option>
    <option value="green">Green</option></select></label>
  <label><input type="checkbox" id="agree" name="agree"> I agree</label>
  <button id="send">Send</button>
</form>
<a id="report" href="/pages/report.csv">the report</a>
<script>document.cookie = "visited=" + (document.cookie.includes("visited") ? "again" : "first") +
  "; max-age=3600; path=/";</script>
</body></html>"""
COOKIES = """<!doctype html><html><head><title>Cookies</title></head><body>
<p id="seen"></p><script>document.getElementById("seen").textContent = "cookies: [" + document.cookie + "]";</script>
</body></html>"""


@pytest.fixture(scope="module")
def site(remote, tmp_path_factory):  # noqa: F811
    pages = tmp_path_factory.mktemp("pages")
    (pages / "form.html").write_text(FORM)
    (pages / "cookies.html").write_text(COOKIES)
    (pages / "report.csv").write_text("month,total\njanuary,12\n")
    server = remote.host.serve_http(SITE_PORT, pages=pages)
    yield server
    server.process.kill()


def start(settings, monkeypatch, browser_image, turns, *, policy: str, keep_session: bool = False):
    scripts = settings.root / "scripts.json"
    scripts.write_text(json.dumps({"web": {"turns": turns}}))
    for key, value in {"CONTAINER_IMAGE": browser_image, "CONTAINER_NETWORK": "none", "AGENT_PROVIDER": "scripted",
                       "SCRIPTED_AGENT_FILE": str(scripts), "IDLE_TIMEOUT": "1000"}.items():
        monkeypatch.setenv(key, value)
    log = EventLog(settings.db_path)
    try:
        if not log.query("SELECT 1 FROM groups WHERE jid = ?", (JID,)):
            register_group(log, settings, jid=JID, name="Web", folder="web", is_main=True,
                           container_config=t.ContainerConfig(egress=policy, keep_browser_session=keep_session))
    finally:
        log.close()
    return RouterProcess(settings, worker=True).wait_ready(timeout=60)


def replies(client: LocalChatClient, count: int) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        event = client.next_event(timeout=max(0.1, deadline - time.monotonic()))
        if event and event.get("op") == "reply":
            got.append(event["text"])
    assert len(got) == count, f"{len(got)} of {count} replies: {got}"
    return got


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def tool(tool_name: str, **args) -> dict:
    return {"tool": tool_name, "args": args, "show": True}


def test_the_agent_reads_fills_screenshots_downloads_and_sends_through_the_groups_policy(
        settings, monkeypatch, browser_image, site, remote):  # noqa: F811
    page = f"{site.url}/pages/form.html"
    turn = [
        tool("browser_open", url=page),
        tool("browser_read", format="accessibility"),
        tool("browser_screenshot", name="form"),
        tool("browser_click", selector="#report"),
        tool("browser_fill", fields={"#name": "Ada Lovelace", "#colour": "green", "#agree": True}, submit="#send"),
        tool("browser_open", url="http://refused.example/"),
        tool("browser_open", url="https://refused.example/"),
        tool("browser_open", url=f"http://{remote.host.local_address}:{SITE_PORT}/"),
        tool("browser_open", url="file:///etc/passwd"),
        tool("send_file", path="browser/form.png", caption="the form"),
    ]
    # the policy allows this machine's own address too: the proxy refuses it whatever the policy
    policy = f"allow:{remote.address}:{SITE_PORT},{remote.host.local_address}:{SITE_PORT}"
    with start(settings, monkeypatch, browser_image, [turn], policy=policy) as service:
        client = LocalChatClient(service.socket, JID)
        client.send("look at the form")
        got = replies(client, len(turn) + 1)  # each tool's reply, then the file
        client.close()
    opened, tree, shot, click, filled, http_refused, https_refused, private, file_url = got[:-2]
    # the tool's own reply and the file it asked for travel apart: either may come first
    [sent] = [text for text in got[-2:] if text.startswith("[send_file]")]
    [file_reply] = [text for text in got[-2:] if not text.startswith("[send_file]")]
    assert opened.startswith(f"[browser_open] Opened {page} (The form), status 200.") and "Tell us" in opened
    assert 'textbox "Name"' in tree and 'button "Send"' in tree and 'checkbox "I agree"' in tree
    shot_path = group_dir(settings, "web") / "browser" / "form.png"
    assert "browser/form.png" in shot and png_size(shot_path) == (1280, 720)
    assert "Downloaded report.csv into downloads/" in click
    assert (group_dir(settings, "web") / "downloads" / "report.csv").read_text() == "month,total\njanuary,12\n"
    assert filled.startswith("[browser_fill] Filled 3 field(s) and clicked '#send'")
    [post] = [r for r in site.requests() if r["method"] == "POST"]
    assert post["path"] == "/submit"
    assert parse_qs(post["body"]) == {"name": ["Ada Lovelace"], "colour": ["green"], "agree": ["on"]}
    for refused, url in ((http_refused, "http://refused.example/"), (https_refused, "https://refused.example/")):
        assert refused.startswith(f"[browser_open error] The group's egress policy refused {url}"), refused
        assert f"nanoclaw egress policy {policy} refuses refused.example:" in refused
    assert private.startswith("[browser_open error]") and "whatever the policy" in private
    assert "an address of this machine" in private
    assert file_url == "[browser_open error] only http:// and https:// pages can be opened, not 'file:///etc/passwd'"
    assert sent.startswith("[send_file] File browser/form.png sent")
    assert file_reply.startswith("the form\n[file form.png, ") and "image/png" in file_reply
    log = EventLog(settings.db_path)
    try:
        checked = {(e.host, e.allowed) for e in (r.event for r in log.read_since(0, types=[t.EgressChecked]))}
    finally:
        log.close()
    assert (remote.address, True) in checked and ("refused.example", False) in checked


@pytest.mark.parametrize("keep, expected", [(True, "cookies: [visited=first]"), (False, "cookies: []")])
def test_cookies_outlive_the_container_only_when_the_group_keeps_its_session(
        settings, monkeypatch, browser_image, site, remote, keep, expected):  # noqa: F811
    first = [tool("browser_open", url=f"{site.url}/pages/form.html")]
    second = [tool("browser_open", url=f"{site.url}/pages/cookies.html")]
    with start(settings, monkeypatch, browser_image, [first, second], policy=f"allow:{remote.address}:{SITE_PORT}",
               keep_session=keep) as service:
        client = LocalChatClient(service.socket, JID)
        client.send("first visit")
        replies(client, 1)
        client.close()
    session = group_dir(settings, "web") / ".browser" / "session.json"
    if not keep:  # a session left from when the group kept it: forgetting removes it before the page opens
        session.parent.mkdir(parents=True, exist_ok=True)
        session.write_text(json.dumps({"cookies": [{"name": "planted", "value": "yes", "domain": remote.address,
                                                    "path": "/", "expires": -1, "httpOnly": False,
                                                    "secure": False, "sameSite": "Lax"}], "origins": []}))
        for made in (session.parent, session):
            os.chown(made, 1000, 1000)  # as the agent's own browser would have left it
    with start(settings, monkeypatch, browser_image, [second], policy=f"allow:{remote.address}:{SITE_PORT}",
               keep_session=keep) as service:  # a new service: a new container, a new browser
        client = LocalChatClient(service.socket, JID)
        client.send("second visit")
        [seen] = replies(client, 1)
        client.close()
    assert expected in seen, seen
    assert session.exists() is keep
