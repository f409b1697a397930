"""Message commands with imapclient: structure, sections, flags, copy/move, append, search."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.conftest import RunningCloud
from tests.imap.conftest import fill, make_message

ATTACHMENT = bytes(range(256)) * 4


def multipart() -> bytes:
    msg = EmailMessage()
    msg["From"] = '"Alice A." <alice@example.test>'
    msg["To"] = "Bob <bob@example.test>, carol@example.org"
    msg["Cc"] = "dave@example.org"
    msg["Subject"] = "=?utf-8?q?caf=C3=A9?= report"
    msg["Date"] = "Tue, 03 Feb 2026 09:30:00 +0100"
    msg["Message-ID"] = "<multi@example.test>"
    msg.set_content("plain text part\n")
    msg.add_alternative("<p>html part</p>\n", subtype="html")
    msg.add_attachment(ATTACHMENT, maintype="application", subtype="pdf", filename="r.pdf")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def test_envelope_bodystructure_and_sections(running: RunningCloud, client: IMAPClient) -> None:
    raw = multipart()
    fill(running.cloud.region("eu-dublin"), "alice@example.test", [raw])
    client.select_folder("INBOX")
    [(uid, data)] = client.fetch("1", ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE"]).items()
    envelope = data[b"ENVELOPE"]
    assert envelope.subject == b"=?utf-8?q?caf=C3=A9?= report"
    assert envelope.message_id == b"<multi@example.test>"
    assert [(a.name, a.mailbox, a.host) for a in envelope.from_] == [
        (b"Alice A.", b"alice", b"example.test")
    ]
    assert envelope.sender == envelope.from_ and envelope.reply_to == envelope.from_
    assert [(a.mailbox, a.host) for a in envelope.to] == [
        (b"bob", b"example.test"),
        (b"carol", b"example.org"),
    ]
    assert envelope.bcc is None
    assert data[b"RFC822.SIZE"] == len(raw)
    structure = data[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    alternative, attachment = structure[0]
    assert structure[1] == b"mixed"
    assert alternative[1] == b"alternative"
    plain, html = alternative[0]
    assert plain[:2] == (b"text", b"plain") and plain[2] == (b"charset", b"utf-8")
    assert html[:2] == (b"text", b"html")
    assert attachment[:2] == (b"application", b"pdf") and attachment[5] == b"base64"
    assert attachment[8] == (b"attachment", (b"filename", b"r.pdf"))

    items = [
        "BODY.PEEK[1.1]",
        "BODY.PEEK[1.2]",
        "BODY.PEEK[2.MIME]",
        "BODY.PEEK[HEADER]",
        "BODY.PEEK[TEXT]<0.20>",
        "BODY.PEEK[HEADER.FIELDS.NOT (DATE TO CC FROM MESSAGE-ID MIME-VERSION)]",
        "BODY.PEEK[9]",
    ]
    data = client.fetch(uid, items)[uid]
    assert data[b"BODY[1.1]"] == b"plain text part\r\n"
    assert data[b"BODY[1.2]"] == b"<p>html part</p>\r\n"
    assert data[b"BODY[2.MIME]"].startswith(b"Content-Type: application/pdf")
    assert data[b"BODY[2.MIME]"].endswith(b"\r\n\r\n")
    header, _, body = raw.partition(b"\r\n\r\n")
    assert data[b"BODY[HEADER]"] == header + b"\r\n\r\n"
    assert data[b"BODY[TEXT]<0>"] == body[:20]
    assert data[b"BODY[HEADER.FIELDS.NOT (DATE TO CC FROM MESSAGE-ID MIME-VERSION)]"] == (
        b"Subject: =?utf-8?q?caf=C3=A9?= report\r\n"
        b'Content-Type: multipart/mixed; boundary="'
        + raw.split(b'boundary="')[1].split(b'"')[0]
        + b'"\r\n\r\n'
    )
    assert data[b"BODY[9]"] is None
    assert client.get_flags(uid)[uid] == (b"\\Recent",)
    assert client.fetch(uid, ["RFC822"])[uid][b"RFC822"] == raw
    assert client.get_flags(uid)[uid] == (b"\\Recent", b"\\Seen"), "a body fetch sets \\Seen"


def test_store_copy_move_expunge(running: RunningCloud, client: IMAPClient) -> None:
    fill(
        running.cloud.region("eu-dublin"),
        "alice@example.test",
        [make_message(i) for i in range(5)],
    )
    client.select_folder("INBOX")
    assert client.add_flags([1, 2], [b"\\Flagged", b"custom"]) == {
        1: (b"\\Flagged", b"\\Recent", b"custom"),
        2: (b"\\Flagged", b"\\Recent", b"custom"),
    }
    assert client.remove_flags([2], [b"custom"])[2] == (b"\\Flagged", b"\\Recent")
    assert client.set_flags([3], [b"\\Answered"], silent=True) is None
    assert client.get_flags([3])[3] == (b"\\Answered", b"\\Recent")
    client.copy([1, 2], "Trash")
    client.move([4], "Junk")
    assert client.search() == [1, 2, 3, 5]
    assert client.folder_status("Junk", ["MESSAGES"])[b"MESSAGES"] == 1
    client.delete_messages([2])
    _, untagged = client.expunge()
    assert untagged == [(2, b"EXPUNGE")]
    assert client.search() == [1, 3, 5]
    client.delete_messages([1, 3])
    client.uid_expunge([1])
    assert client.search() == [3, 5]
    client.select_folder("Trash", readonly=True)
    with pytest.raises(IMAPClientError, match="READ-ONLY"):
        client.add_flags([1], [b"\\Seen"])
    trash = client.fetch([1, 2], ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert [d[b"FLAGS"] for d in trash.values()] == [
        (b"\\Flagged", b"\\Recent", b"custom"),
        (b"\\Flagged", b"\\Recent"),
    ], "copies are new mail: \\Recent, and EXAMINE leaves it"


def test_append_with_flags_date_and_appenduid(running: RunningCloud, client: IMAPClient) -> None:
    message = make_message(7, body="appended\n")
    response = client.append("Drafts", message, flags=[b"\\Draft"], msg_time=None)
    assert response.startswith(b"[APPENDUID ")
    client.select_folder("Drafts")
    [(uid, data)] = client.fetch(client.search(), ["FLAGS", "BODY.PEEK[]", "INTERNALDATE"]).items()
    assert response.split()[2] == str(uid).encode() + b"]"
    assert data[b"FLAGS"] == (b"\\Draft", b"\\Recent")
    assert data[b"BODY[]"] == message
    with pytest.raises(IMAPClientError, match="TRYCREATE"):
        client.append("Nowhere", message)


def test_search(running: RunningCloud, client: IMAPClient) -> None:
    messages = [make_message(i, subject=f"topic {'alpha' if i % 2 else 'beta'}") for i in range(6)]
    messages.append(make_message(6, body="needle in the body\n", subject="=?utf-8?q?caf=C3=A9?="))
    fill(running.cloud.region("eu-dublin"), "alice@example.test", messages)
    client.select_folder("INBOX")
    client.add_flags([2, 3], [b"\\Seen"])
    assert client.search(["SUBJECT", "alpha"]) == [2, 4, 6]
    assert client.search(["NOT", "SUBJECT", "alpha"]) == [1, 3, 5, 7]
    assert client.search(["OR", "SEEN", "SUBJECT", "beta"]) == [1, 2, 3, 5]
    assert client.search(["UNSEEN", "SUBJECT", "alpha"]) == [4, 6]
    assert client.search(["BODY", "NEEDLE"]) == [7]
    assert client.search(["SUBJECT", "café"], charset="UTF-8") == [7]
    assert client.search(["TEXT", "sender3@example.org"]) == [4]
    assert client.search(["FROM", "sender5"]) == [6]
    assert client.search(["HEADER", "Message-ID", "<m1@"]) == [2]
    assert client.search(["SENTON", "2-Feb-2026"]) == [1, 2, 3, 4, 5, 6, 7]
    assert client.search(["SENTBEFORE", "1-Feb-2026"]) == []
    assert client.search(["SINCE", "1-Jan-2000", "LARGER", "10"]) == list(range(1, 8))
    assert client.search(["SMALLER", "10"]) == []
    assert client.search(["UID", "2:3"]) == [2, 3]
    assert client.search(["5:*"]) == [5, 6, 7]
    assert client.search(["(", "SEEN", "SUBJECT", "beta", ")"]) == [3]
    with pytest.raises(IMAPClientError, match="unknown search key"):
        client.search(["FRUM", "x"])


@pytest.mark.parametrize("summaries", [True, False], ids=["summarized", "parsed by the session"])
def test_one_poisonous_message_does_not_poison_the_mailbox(
    running: RunningCloud, client: IMAPClient, summaries: bool
) -> None:
    """Whether the answers come from the summary made at delivery or from the session's own
    parse (a message stored before schema version 7)."""
    from tests.imap.test_mime import POISON

    messages = [make_message(0), *POISON.values(), make_message(1, body="needle\n")]
    fill(running.cloud.region("eu-dublin"), "alice@example.test", messages, summaries=summaries)
    client.select_folder("INBOX")
    fetched = client.fetch(range(1, len(messages) + 1), ["BODYSTRUCTURE", "ENVELOPE"])
    assert len(fetched) == len(messages), "every message answered, by a parser that checks"
    assert fetched[1][b"ENVELOPE"].subject == b"message 0"
    assert client.search(["TEXT", "needle"]) == [len(messages)]
    assert client.search(["BODY", "na\N{REPLACEMENT CHARACTER}ve"], charset="UTF-8") == [6]
    assert client.search(["SUBJECT", "café"], charset="UTF-8") == [10]
