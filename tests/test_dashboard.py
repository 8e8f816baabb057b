"""The dashboard's server: the login token, the guards on every request, the pages and the live stream.

A real `Dashboard` on 127.0.0.1 (an ephemeral port) over a real event log,
asked by aiohttp's HTTP client as a browser would; the browser itself
(Chromium) is in tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import stat

import aiohttp
import pytest

from events import EventLog, types as t
from nanoclaw import cli, dashboard_auth as auth
from nanoclaw.dashboard import Dashboard
from rules.groups import register_group
from rules.usage import utc_day
from tests.live_router import fresh_settings


@pytest.fixture
def settings(root, monkeypatch):
    monkeypatch.setenv("DASHBOARD_PORT", "0")
    (root / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-api03-never-shown\n")
    return fresh_settings()


@pytest.fixture
def log(settings):
    events = EventLog(settings.db_path)
    register_group(events, settings, jid="local:family", name="Family", folder="family")
    yield events
    events.close()


def _serve(settings, log, scenario):
    async def run():
        board = Dashboard(settings, log)
        url = await board.start()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await scenario(board, url, http)
        finally:
            await board.stop()
    asyncio.run(run())


def test_without_the_token_nothing_is_shown_and_with_it_the_overview_is(settings, log):
    async def scenario(board, url, http):
        async with http.get(f"{url}/") as page:
            assert page.status == 401 and "nanoclaw dashboard" in await page.text()
        async with http.get(f"{url}/login?token=not-the-token") as page:
            assert page.status == 401 and "not this install's" in await page.text()
        async with http.get(f"{url}/login?token={board.token}", allow_redirects=False) as login:
            assert login.status == 303 and login.headers["Location"] == "/"
            cookie = login.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and board.token not in cookie
        async with http.get(f"{url}/") as page:
            html = await page.text()
            assert page.status == 200 and "family" in html and "local:family" in html
            assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert "sk-ant-api03-never-shown" not in html
    _serve(settings, log, scenario)


def test_a_page_asked_for_under_another_host_name_is_refused(settings, log):
    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        port = url.rsplit(":", 1)[1]
        async with http.get(f"{url}/", headers={"Host": f"attacker.example:{port}"}) as page:
            assert page.status == 421  # a rebinding name pointed at 127.0.0.1 reads nothing
        async with http.get(f"{url}/", headers={"Host": f"localhost:{port}"}) as page:
            assert page.status == 200
    _serve(settings, log, scenario)


def test_a_new_token_logs_every_browser_out_at_once(settings, log):
    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/") as page:
            assert page.status == 200
        auth.login_token(settings, new=True)
        async with http.get(f"{url}/") as page:
            assert page.status == 401
    _serve(settings, log, scenario)


def test_the_token_is_kept_for_the_service_user_alone(settings, log):
    token = auth.login_token(settings)
    assert auth.login_token(settings) == token and len(token) >= 40
    assert stat.S_IMODE(auth.token_path(settings).stat().st_mode) == 0o600


def test_the_live_stream_says_changed_when_the_log_moves(settings, log):
    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/live") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            first = await stream.content.readuntil(b"\n\n")
            assert first.startswith(b"event: changed\ndata: ")
            log.append(t.ChatSeen(chat_jid="local:x", timestamp="2026-12-03T10:00:00.000Z", name="x"))
            head = log.last_seq()
            second = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)
            assert second == f"event: changed\ndata: {head}\n\n".encode()
    _serve(settings, log, scenario)


def test_nanoclaw_dashboard_prints_the_login_url_and_says_when_the_service_is_down(settings, capsys):
    assert cli.main(["dashboard"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"http://127.0.0.1:0/login?token={auth.login_token(settings)}"
    assert "the service is not running" in err


def test_an_open_page_does_not_hold_up_the_service_stopping(settings, log):
    async def run():
        board = Dashboard(settings, log)
        url = await board.start()
        async with aiohttp.ClientSession() as http:
            await http.get(f"{url}/login?token={board.token}")
            async with http.get(f"{url}/live") as stream:
                await stream.content.readuntil(b"\n\n")
                started = asyncio.get_running_loop().time()
                await asyncio.wait_for(board.stop(), 10)
                assert asyncio.get_running_loop().time() - started < 3
                assert await asyncio.wait_for(stream.content.read(), 5) == b""  # the stream ended: "service down"
    asyncio.run(run())


def _task(log, task_id: str = "t1") -> None:
    log.append(t.TaskScheduled(task_id=task_id, group_folder="family", chat_jid="local:family",
                               prompt="water the <b>plants</b>", schedule_type="cron", schedule_value="0 9 * * *",
                               next_run="2026-12-04T09:00:00.000Z"))


def _csrf_of(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def test_a_task_paused_from_the_page_is_paused_in_the_log_through_the_clis_checks(settings, log):
    _task(log)

    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/tasks") as page:
            html = await page.text()
        assert "water the &lt;b&gt;plants&lt;/b&gt;" in html  # escaped: a prompt is not markup
        csrf = _csrf_of(html)
        async with http.post(f"{url}/tasks/t1/pause", data={"csrf": csrf}, allow_redirects=False) as done:
            assert done.status == 303 and done.headers["Location"] == "/tasks"
        async with http.post(f"{url}/tasks/t1/pause", data={"csrf": csrf}) as again:
            assert again.status == 409 and "is paused; cannot pause it" in await again.text()
        async with http.get(f"{url}/tasks") as page:
            assert 'data-status="paused"' in await page.text()
    _serve(settings, log, scenario)
    [paused] = [r.event for r in log.read_since(0, types=[t.TaskPaused], limit=None)]
    assert (paused.task_id, paused.by) == ("t1", "dashboard")


def test_an_action_without_the_pages_csrf_value_or_from_another_origin_is_refused(settings, log):
    _task(log)

    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/tasks") as page:
            csrf = _csrf_of(await page.text())
        for data, headers in (({}, {}), ({"csrf": "guessed"}, {}),
                              ({"csrf": csrf}, {"Origin": "http://attacker.example"})):
            async with http.post(f"{url}/tasks/t1/cancel", data=data, headers=headers) as refused:
                assert refused.status == 403, (data, headers)
        async with aiohttp.ClientSession() as stranger:  # no session cookie: a cross-site form post sends none
            async with stranger.post(f"{url}/tasks/t1/cancel", data={"csrf": csrf}) as refused:
                assert refused.status == 401
    _serve(settings, log, scenario)
    assert log.read_since(0, types=[t.TaskCancelled], limit=None) == []


def test_the_usage_page_draws_spend_and_tokens_per_day_by_group_and_what_is_left_of_the_caps(settings, log,
                                                                                           monkeypatch):
    monkeypatch.setenv("DAILY_BUDGET_USD", "5")
    settings = fresh_settings()
    for folder, tokens in (("family", 1_000_000), ("main", 250_000)):
        log.append(t.ModelCalled(run_id="r1", folder=folder, method="POST", path="/v1/messages", status=200,
                                 duration_ms=900, model="claude-opus-4-5", input_tokens=tokens, output_tokens=0))

    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/usage") as page:
            html = await page.text()
        spend = html.split('data-chart="spend"')[1].split("</svg>")[0]
        bars = [part.split("</title>")[0] for part in spend.split("<title>")[1:]]
        today = utc_day()
        assert bars == [f"{today} family: $5.00", f"{today} main: $1.25"]  # $5 per million input tokens
        heights = [float(part.split('height="')[1].split('"')[0]) for part in spend.split("<rect")[1:]]
        assert heights[0] == pytest.approx(4 * heights[1], rel=0.01)  # drawn to scale
        assert "1M tokens" in html.split('data-chart="tokens"')[1]
        assert "~$6.25 of $5.00, $0.00 left" in html
        caps = html.split('id="group-caps"')[1].split("</table>")[0]
        assert "<td>family</td><td>$8.00 a day</td><td>~$5.00</td><td>$3.00</td>" in caps
    assert cli.main(["groups", "set", "family", "--daily-budget", "8"]) == 0
    _serve(settings, log, scenario)


def _message(text: str, n: int, sender: str = "alice") -> t.MessageReceived:
    return t.MessageReceived(channel="local", chat_jid="local:family", message_id=f"m{n}", sender=f"local:{sender}",
                             sender_name=sender.title(), content=text, timestamp="2026-12-03T10:00:00.000Z")


def test_a_groups_conversation_shows_messages_replies_and_runs_in_order_and_each_message_opens_its_story(settings,
                                                                                                        log):
    log.append(_message("@Andy <script>alert(1)</script> what's on?", 1), key="local:family:m1")
    seq = log.by_key("local:family:m1").seq
    log.append(t.AgentRunStarted(run_id="r1", folder="family", chat_jid="local:family", container="c",
                                 from_seq=seq - 1, through_seq=seq, message_count=1))
    log.append(t.OutboundQueued(outbound_id="o1", chat_jid="local:family", text="Nothing today.", run_id="r1"))
    log.append(t.AgentRunFinished(run_id="r1", folder="family", chat_jid="local:family", status="ok",
                                  duration_ms=2100, had_output=True))

    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/groups/family") as page:
            html = await page.text()
        timeline = html.split('id="conversation"')[1]
        order = [timeline.index(s) for s in ("what&#39;s on?", "run r1 started", "Nothing today.", "run r1 ok in 2.1 s")]
        assert order == sorted(order)
        assert "<script>alert" not in html and "&lt;script&gt;" in html
        assert f'href="/messages/{seq}"' in html
        async with http.get(f"{url}/messages/{seq}") as story:
            text = await story.text()
        assert story.status == 200 and "run r1: ok in 2.1 s" in text and "what&#39;s on?" in text
        async with http.get(f"{url}/groups/nobody") as missing:
            assert missing.status == 404 and "no group has the folder" in await missing.text()
        async with http.get(f"{url}/messages/999999") as missing:
            assert missing.status == 404
    _serve(settings, log, scenario)


def test_the_runs_page_shows_outcome_duration_model_calls_and_the_run_log(settings, log):
    runs = settings.logs_dir / "runs" / "family"
    runs.mkdir(parents=True)
    (runs / "container-1.log").write_text("=== run log ===\nexit code 0\n")
    log.append(t.AgentRunStarted(run_id="r1", folder="family", chat_jid="local:family", container="c"))
    log.append(t.ModelCalled(run_id="r1", folder="family", method="POST", path="/v1/messages", status=200,
                             duration_ms=800, model="claude-opus-4-5", input_tokens=1200, output_tokens=300))
    log.append(t.AgentRunFinished(run_id="r1", folder="family", chat_jid="local:family", status="error",
                                  error="API Error: 529", duration_ms=4200, log_file="runs/family/container-1.log"))
    finished = log.last_seq()
    log.append(t.AgentRunFinished(run_id="r2", folder="family", chat_jid="local:family", status="ok",
                                  log_file="runs/../../.env"))  # a path leading out of logs/runs/ is never read
    planted = log.last_seq()

    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/runs") as page:
            row = (await page.text()).split("<td>r1</td>")[1].split("</tr>")[0]
        assert "error: API Error: 529" in row and "4.2 s" in row and "<td>1</td>" in row and "1,500" in row
        async with http.get(f"{url}/runs/{finished}/log") as page:
            assert "exit code 0" in await page.text()
        async with http.get(f"{url}/runs/{planted}/log") as page:
            assert page.status == 404 and "sk-ant" not in await page.text()
    _serve(settings, log, scenario)


def test_the_egress_page_shows_what_each_groups_agents_reached_or_were_refused(settings, log):
    log.append(t.EgressChecked(run_id="r1", folder="family", host="pypi.org", port=443, allowed=True,
                               policy="allowlist", address="151.101.0.223"))
    log.append(t.EgressChecked(run_id="r1", folder="family", host="169.254.169.254", port=80, allowed=False,
                               policy="allowlist", reason="a link-local address"))

    async def scenario(board, url, http):
        await http.get(f"{url}/login?token={board.token}")
        async with http.get(f"{url}/egress") as page:
            html = await page.text()
        assert 'class="allowed"' in html and "pypi.org:443 (151.101.0.223)" in html
        refused = html.split('class="refused"')[1].split("</tr>")[0]
        assert "169.254.169.254:80" in refused and "refused: a link-local address" in refused
    _serve(settings, log, scenario)


def test_a_port_already_taken_is_logged_and_the_service_goes_on_without_the_dashboard(settings, log, monkeypatch):
    import socket

    from nanoclaw import service
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    monkeypatch.setenv("DASHBOARD_PORT", str(taken.getsockname()[1]))
    try:
        assert asyncio.run(service._start_dashboard(fresh_settings(), log)) is None
    finally:
        taken.close()
