"""WhatsApp's side of a message, without a connection: its styles, its parts, its JIDs and message types.

Inbound conversion is checked on the library's own protobuf types, built
as whatsmeow hands them to neonize.
"""

from __future__ import annotations

import pytest
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (DocumentMessage, FutureProofMessage, Message,
                                                       ReactionMessage)

from base.config import ConfigError, load_settings
from router.channels.whatsapp_format import MAX_PART_CHARS, name_prefix, split_message, to_whatsapp
from router.channels.whatsapp_inbound import Me, body, media_of, to_inbound, to_jid
from tests import whatsapp_core_stub as wa

ME = Me(user=wa.BOT_NUMBER, lid=wa.BOT_LID, device=wa.BOT_DEVICE, own_number=True)


@pytest.mark.parametrize("markdown, shown", [
    ("**bold** and *italic* and ~~gone~~", "*bold* and _italic_ and ~gone~"),
    ("# Plan\n\nsteps", "*Plan*\n\nsteps"),
    ("use `ls -la` here", "use `ls -la` here"),
    ("```python\nprint('hi')\n```", "```print('hi')```"),
    ("- one\n- two", "• one\n• two"),
    ("[the docs](https://example.com/a)", "the docs (https://example.com/a)"),
    ("> quoted", "> quoted"),
    ("| a | b |\n|---|---|\n| 1 | 2 |", "```a | b\n1 | 2```"),
    ("2 * 3 * 4 and snake_case_name", "2 * 3 * 4 and snake_case_name"),
])
def test_markdown_is_shown_in_whatsapps_own_styles(markdown, shown):
    assert to_whatsapp(markdown) == shown


def test_a_shared_number_puts_the_name_before_every_part_and_every_part_still_fits():
    prefix = name_prefix("Andy")
    text = " ".join(f"word{n}" for n in range(3000))
    parts = split_message(text, prefix)
    assert len(parts) > 1
    shown = [to_whatsapp(p, prefix) for p in parts]
    assert all(s.startswith("Andy: ") and len(s) <= MAX_PART_CHARS for s in shown)
    assert " ".join(s.removeprefix("Andy: ") for s in shown).split() == text.split()
    assert split_message(text, prefix) == parts  # the same cut every time: delivery resumes by part number


@pytest.mark.parametrize("jid", ["wa:447700900001@s.whatsapp.net", "wa:120363000000000001@g.us",
                                 "wa:12345678901234@lid"])
def test_a_whatsapp_jid_becomes_the_librarys_jid(jid):
    found = to_jid(jid)
    assert f"wa:{found.User}@{found.Server}" == jid and found.Device == 0


@pytest.mark.parametrize("jid", ["tg:42", "wa:", "wa:447700900001", "wa:a@b@g.us", "wa:1@evil.example",
                                 "wa:1:2@s.whatsapp.net", "wa:@g.us"])
def test_anything_else_is_refused_before_it_reaches_the_library(jid):
    with pytest.raises(ValueError, match="not a WhatsApp JID"):
        to_jid(jid)


def test_a_document_with_a_caption_gives_its_words_and_its_file():
    inner = Message(documentMessage=DocumentMessage(URL="u", caption="the lease", fileName="lease.pdf",
                                                    mimetype="application/pdf", fileLength=1234))
    wrapped = Message(documentWithCaptionMessage=FutureProofMessage(message=inner))
    assert body(wrapped)[0] == "the lease"
    kind, only, name, mime, size = media_of(wrapped)
    assert (kind, name, mime, size) == ("Document", "lease.pdf", "application/pdf", 1234)
    assert only.documentMessage.URL == "u" and not only.HasField("documentWithCaptionMessage")


def test_a_reaction_is_not_a_message_and_an_old_timestamp_is_kept():
    reaction = wa.message("447700900001@s.whatsapp.net", "447700900001@s.whatsapp.net", id="R1",
                          media=Message(reactionMessage=ReactionMessage(text="👍")))
    assert to_inbound(reaction, me=ME, sent_ids=set(), trigger="@Andy") is None
    text = wa.message("447700900001@s.whatsapp.net", "447700900001@s.whatsapp.net", "hi", id="T1",
                      timestamp=1_700_000_000)
    assert to_inbound(text, me=ME, sent_ids=set(), trigger="@Andy").timestamp.startswith("2023-11-14T22:13:20")


def test_a_mention_of_someone_else_is_not_the_trigger():
    other = wa.message("120363000000000001@g.us", "447700900002@s.whatsapp.net", "@447700900001 look", id="M1",
                       mentions=["447700900001@s.whatsapp.net"])
    assert to_inbound(other, me=ME, sent_ids=set(), trigger="@Andy").content == "@447700900001 look"


@pytest.mark.parametrize("value, expected", [(None, False), ("true", True), ("TRUE", True), ("false", False)])
def test_assistant_has_own_number_is_true_or_false(root, monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv("ASSISTANT_HAS_OWN_NUMBER", value)
    assert load_settings().assistant_has_own_number is expected


def test_assistant_has_own_number_refuses_anything_else(root, monkeypatch):
    monkeypatch.setenv("ASSISTANT_HAS_OWN_NUMBER", "yes")
    with pytest.raises(ConfigError, match="ASSISTANT_HAS_OWN_NUMBER"):
        load_settings()
