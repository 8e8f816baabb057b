"""Telegram outbound through the router's delivery: long replies, 429s, refused formatting, outages, typing."""

from __future__ import annotations

import asyncio

from events import types as t
from router.channels import telegram
from rules.groups import register_group
from tests.live_router import queue_file
from tests.telegram_harness import (ALICE, live_router, of_type, stub, tg_log,  # noqa: F401  (fixtures)
                                    tg_settings, until)

JID = "tg:42"


def long_reply(chars: int = 10_000) -> str:
    """Paragraphs of numbered words, so order and word boundaries can be checked."""
    words, paragraphs, n = [], [], 0
    while sum(len(p) + 2 for p in paragraphs) < chars:
        words.append(f"w{n:05d}")
        n += 1
        if len(words) == 90:
            paragraphs.append(" ".join(words))
            words = []
    return "\n\n".join(paragraphs)[:chars].rsplit(" ", 1)[0]


def main_chat(stub, tg_settings, tg_log):
    register_group(tg_log, tg_settings, jid=JID, name="Alice", folder="main", is_main=True)
    return stub.private_chat(ALICE)


def queue(log, outbound_id: str, text: str) -> None:
    log.append(t.OutboundQueued(outbound_id=outbound_id, chat_jid=JID, text=text), key=f"out:{outbound_id}")


def outcomes(log) -> dict[str, str]:
    return {r["outbound_id"]: r["state"] for r in log.query("SELECT outbound_id, state FROM outbound")}


async def delivered(log, count: int, timeout: float = 60) -> None:
    await until(lambda: len(of_type(log, t.OutboundSent)) + len(of_type(log, t.OutboundFailed)) >= count,
                timeout, f"{count} outcome(s)")


def test_a_reply_of_10000_characters_arrives_as_ordered_parts_cut_between_words(stub, tg_settings, tg_log):
    main_chat(stub, tg_settings, tg_log)
    text = long_reply()

    async def scenario():
        async with live_router(tg_settings, tg_log):
            queue(tg_log, "long", text)
            await delivered(tg_log, 1)

    asyncio.run(scenario())
    parts = [s.shown for s in stub.sent]
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts).split() == text.split()  # every word, in order, none cut in two
    assert all(p.split()[-1].startswith("w") and len(p.split()[-1]) == 6 for p in parts)
    assert outcomes(tg_log) == {"long": "sent"}


def test_a_429_is_waited_out_without_losing_or_reordering_parts(stub, tg_settings, tg_log):
    main_chat(stub, tg_settings, tg_log)
    text = long_reply()

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.flood_limit(answers=2, retry_after_s=1, after=1)  # the second part meets the flood limit twice
            queue(tg_log, "long", text)
            queue(tg_log, "next", "And one more thing.")
            await delivered(tg_log, 2)

    asyncio.run(scenario())
    assert " ".join(s.shown for s in stub.sent).split() == (text + " And one more thing.").split()
    assert len(stub.rate_limited) == 2
    second_part = stub.sent[1]
    assert second_part.at - stub.rate_limited[-1] >= 0.95  # waited retry_after before trying again
    assert outcomes(tg_log) == {"long": "sent", "next": "sent"}
    assert [s.attempts for s in of_type(tg_log, t.OutboundSent)] == [1, 1]  # no delivery retry was needed


def test_a_formatting_refusal_falls_back_to_plain_text_for_that_part_only(stub, tg_settings, tg_log):
    main_chat(stub, tg_settings, tg_log)

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.refuse_formatting(1)
            queue(tg_log, "o1", "Use **this** and `that`.")
            queue(tg_log, "o2", "Then **bold** again.")
            await delivered(tg_log, 2)

    asyncio.run(scenario())
    assert stub.refused_formatting == ["Use <b>this</b> and <code>that</code>."]
    assert [(s.parse_mode, s.shown) for s in stub.sent] == [
        (None, "Use **this** and `that`."), ("HTML", "Then bold again.")]
    assert outcomes(tg_log) == {"o1": "sent", "o2": "sent"}


def test_the_server_going_away_and_coming_back_loses_nothing(stub, tg_settings, tg_log):
    chat = main_chat(stub, tg_settings, tg_log)

    async def scenario():
        async with live_router(tg_settings, tg_log):
            stub.say(chat, ALICE, "before")
            await until(lambda: of_type(tg_log, t.MessageReceived), what="the first message")
            stub.stop()
            queue(tg_log, "during", "Written while Telegram was away.")
            stub.say(chat, ALICE, "while away")  # Telegram keeps it until the bot can fetch it
            await asyncio.sleep(2.5)
            assert outcomes(tg_log) == {"during": "queued"}
            stub.start()
            await until(lambda: len(of_type(tg_log, t.MessageReceived)) == 2, what="the message sent meanwhile")
            await delivered(tg_log, 1)

    asyncio.run(scenario())
    assert [m.content for m in of_type(tg_log, t.MessageReceived)] == ["before", "while away"]
    assert [s.shown for s in stub.sent] == ["Written while Telegram was away."]
    assert outcomes(tg_log) == {"during": "sent"}


def test_typing_shows_while_the_agent_works_and_stops_with_the_reply(stub, tg_settings, tg_log, monkeypatch):
    main_chat(stub, tg_settings, tg_log)
    monkeypatch.setattr(telegram, "TYPING_REFRESH_S", 0.1)

    def typing_count() -> int:
        return sum(1 for chat, action, _ in stub.actions if chat == 42 and action == "typing")

    async def quiet_for(seconds: float) -> int:
        before = typing_count()
        await asyncio.sleep(seconds)
        return typing_count() - before

    async def scenario():
        async with live_router(tg_settings, tg_log):
            tg_log.append(t.AgentRunStarted(run_id="r1", folder="main", chat_jid=JID, container="c"))
            await until(lambda: typing_count() >= 3, what="the indicator to be renewed")
            queue(tg_log, "o1", "Done.")
            await delivered(tg_log, 1)
            after_reply = await quiet_for(0.5)
            tg_log.append(t.MessagesPiped(run_id="r1", folder="main", chat_jid=JID, through_seq=1, message_count=1,
                                           file="f.json"))
            await until(lambda: typing_count() >= 5, what="the indicator for a piped follow-up")
            tg_log.append(t.AgentRunFinished(run_id="r1", folder="main", chat_jid=JID, status="ok"))
            await asyncio.sleep(0.3)
            return after_reply, await quiet_for(0.5)

    after_reply, after_finish = asyncio.run(scenario())
    assert (after_reply, after_finish) == (0, 0)


def test_a_send_to_a_chat_telegram_does_not_know_is_recorded_as_failed(stub, tg_settings, tg_log):
    register_group(tg_log, tg_settings, jid="tg:999", name="Gone", folder="gone")

    async def scenario():
        async with live_router(tg_settings, tg_log) as app:
            app.delivery.backoff_s = 0.01
            tg_log.append(t.OutboundQueued(outbound_id="o1", chat_jid="tg:999", text="hello?"), key="out:o1")
            await delivered(tg_log, 1)

    asyncio.run(scenario())
    [failed] = of_type(tg_log, t.OutboundFailed)
    assert failed.reason == "BadRequest: Chat not found" and failed.attempts == 3
    assert stub.sent == []


# --- files ------------------------------------------------------------------------------------------


def test_an_image_goes_as_a_photo_and_anything_else_as_a_document_each_with_its_caption(
        stub, tg_settings, tg_log):
    from tests.test_sent_files import png
    main_chat(stub, tg_settings, tg_log)

    async def scenario():
        async with live_router(tg_settings, tg_log):
            queue_file(tg_settings, tg_log, "shot", "shot.png", png(), "image/png", "the **page**", jid=JID)
            queue_file(tg_settings, tg_log, "doc", "report.pdf", b"%PDF-1.7 ...", "application/pdf", "", jid=JID)
            await delivered(tg_log, 2)

    asyncio.run(scenario())
    photo, document = stub.files
    assert (photo.kind, photo.filename, photo.data, photo.caption, photo.parse_mode) == (
        "photo", "shot.png", png(), "the <b>page</b>", "HTML")
    assert (document.kind, document.filename, document.data, document.caption) == (
        "document", "report.pdf", b"%PDF-1.7 ...", None)
    assert outcomes(tg_log) == {"shot": "sent", "doc": "sent"}
    assert not (tg_settings.data_dir / "outbox" / "shot").exists()  # released once sent


def test_a_files_refused_caption_formatting_and_a_429_are_handled_like_a_texts(stub, tg_settings, tg_log):
    from tests.test_sent_files import png
    main_chat(stub, tg_settings, tg_log)
    stub.refuse_formatting(1)
    stub.flood_limit(1, retry_after_s=1)

    async def scenario():
        async with live_router(tg_settings, tg_log):
            queue_file(tg_settings, tg_log, "shot", "shot.png", png(), "image/png", "a *caption*", jid=JID)
            await delivered(tg_log, 1)

    asyncio.run(scenario())
    [photo] = stub.files
    assert (photo.caption, photo.parse_mode) == ("a *caption*", None)
    assert len(stub.rate_limited) == 1 and outcomes(tg_log) == {"shot": "sent"}


def test_an_image_telegram_will_not_show_as_a_photo_goes_as_a_document(stub, tg_settings, tg_log):
    from tests.test_sent_files import png
    main_chat(stub, tg_settings, tg_log)
    tall = png(width=100, height=3000)  # a full-page screenshot of a long page: too long for a photo

    async def scenario():
        async with live_router(tg_settings, tg_log):
            queue_file(tg_settings, tg_log, "tall", "page.png", tall, "image/png", "", jid=JID)
            await delivered(tg_log, 1)

    asyncio.run(scenario())
    [sent] = stub.files
    assert (sent.kind, sent.filename, sent.data) == ("document", "page.png", tall)
    assert outcomes(tg_log) == {"tall": "sent"}
