"""Two sessions on one mailbox: sequence numbers, EXPUNGE timing, IDLE and pipelining."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, fill, make_message


def session(running: RunningCloud, mailbox: bytes = b"INBOX") -> Raw:
    raw = Raw(running)
    assert raw.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())[-1].startswith(
        b"l OK"
    )
    raw.command(b"s", b"SELECT " + mailbox)
    return raw


def test_expunge_reaches_other_session_only_when_allowed(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(5)]
    )
    one, two = session(running), session(running)
    one.command(b"a", b"STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    assert one.command(b"b", b"EXPUNGE") == [
        b"* 4 EXPUNGE\r\n",
        b"* 2 EXPUNGE\r\n",
        b"b OK EXPUNGE completed\r\n",
    ]
    # During FETCH the other session must not renumber: it still sees 5 messages,
    # gets the flag changes, and the vanished ones are skipped with a NO.
    reply = two.command(b"c", b"FETCH 1:5 (UID)")
    assert reply[4:] == [b"* 5 FETCH (UID 5)\r\n", b"c OK FETCH completed\r\n"]
    reply = two.command(b"c", b"FETCH 1:5 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    fetched = [line.split(b" ")[1] for line in reply if line.startswith(b"* ")]
    assert fetched == [b"1", b"3", b"5"]
    assert not any(line.endswith(b" EXPUNGE\r\n") for line in reply)
    assert (
        reply[-1]
        == b"c NO [EXPUNGEISSUED] some of the messages no longer exist (2 expunged meanwhile)\r\n"
    )
    reply = two.command(b"d", b"SEARCH ALL")
    assert not any(b"EXPUNGE" in line for line in reply)
    assert two.command(b"e", b"NOOP") == [
        b"* 4 EXPUNGE\r\n",
        b"* 2 EXPUNGE\r\n",
        b"e OK NOOP completed\r\n",
    ]
    assert two.command(b"f", b"FETCH 1:* (UID)")[:3] == [
        b"* 1 FETCH (UID 1)\r\n",
        b"* 2 FETCH (UID 3)\r\n",
        b"* 3 FETCH (UID 5)\r\n",
    ]
    # UID commands may carry expunges: the sequence numbers in them are not relied on.
    one.command(b"g", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    one.command(b"h", b"EXPUNGE")
    assert two.command(b"i", b"UID FETCH 5 (FLAGS)") == [
        b"* 1 EXPUNGE\r\n",
        b"* 2 FETCH (UID 5 FLAGS ())\r\n",
        b"i OK UID FETCH completed\r\n",
    ]
    one.close()
    two.close()


def test_flags_and_new_mail_reach_other_session(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, "alice@example.test", [make_message(i) for i in range(2)])
    one, two = session(running), session(running)
    one.command(b"a", b"STORE 1 +FLAGS (\\Flagged)")
    one.command(b"b", b"APPEND INBOX {5+}\r\nhello")
    fill(region, "alice@example.test", [make_message(9)])
    assert two.command(b"c", b"NOOP") == [
        b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n",
        b"* 4 EXISTS\r\n",
        b"* 1 RECENT\r\n",  # the appended message is recent to the session that appended it
        b"c OK NOOP completed\r\n",
    ]
    assert two.command(b"d", b"NOOP") == [b"d OK NOOP completed\r\n"]
    one.close()
    two.close()


def test_idle_sees_smtp_delivery_and_other_sessions(running: RunningCloud) -> None:
    fill(running.cloud.region("eu-dublin"), "alice@example.test", [make_message(0)])
    idler, other = session(running), session(running)
    idler.send(b"i IDLE\r\n")
    assert idler.file.readline() == b"+ idling\r\n"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "x@example.org", "alice@example.test", "hi"
    msg.set_content("new mail while idling")
    listen = running.cloud.region("eu-dublin").section.smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as smtp:
        smtp.send_message(msg)
    assert idler.file.readline() == b"* 2 EXISTS\r\n"
    assert idler.file.readline() == b"* 2 RECENT\r\n"
    other.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command(b"b", b"EXPUNGE")
    lines = [idler.file.readline()]
    while lines[-1].startswith(b"* 1 FETCH"):  # the \\Deleted flag, if IDLE woke in between
        lines.append(idler.file.readline())
    assert lines[-1] == b"* 1 EXPUNGE\r\n"
    idler.send(b"DONE\r\n")
    assert idler.until(b"i") == [b"i OK IDLE terminated\r\n"]
    idler.close()
    other.close()


def test_pipelined_commands_answer_in_order(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(3)]
    )
    raw = Raw(running)
    raw.send(
        b'a LOGIN alice@example.test "%s"\r\nb SELECT INBOX\r\nc FETCH 1:* (UID)\r\n'
        b"d STORE 2 +FLAGS (\\Seen)\r\ne NOOP\r\nf LOGOUT\r\n" % PASSWORD.encode()
    )
    lines = raw.until(b"f")
    tagged = [line.split(b" ")[0] for line in lines if not line.startswith((b"*", b"+"))]
    assert tagged == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert b"* 2 FETCH (FLAGS (\\Recent \\Seen))\r\n" in lines
    assert b"* BYE Borderline logging out\r\n" in lines
    raw.close()


def test_condstore(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(3)]
    )
    one, two = session(running), session(running)
    select = one.command(b"a", b"SELECT INBOX (CONDSTORE)")
    [highest] = [line for line in select if b"HIGHESTMODSEQ" in line]
    start = int(highest.split()[3].rstrip(b"]"))
    modseqs = {
        int(line.split()[1]): int(line.split(b"MODSEQ (")[1].split(b")")[0])
        for line in one.command(b"b", b"FETCH 1:* (MODSEQ)")[:-1]
    }
    assert max(modseqs.values()) <= start
    # Another session changes message 2: a conditional STORE on it must fail for it only.
    two.command(b"c", b"STORE 2 +FLAGS (\\Flagged)")
    reply = one.command(b"d", b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % start)
    assert reply[-1] == b"d OK [MODIFIED 2] STORE completed\r\n"
    stored = [line for line in reply if b"\\Seen" in line]
    assert [line.split()[1] for line in stored] == [b"1", b"3"]
    assert all(b"MODSEQ (" in line for line in stored)
    assert b"* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (" in b"".join(reply)
    changed = one.command(b"e", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % start)
    assert [line.split()[4] for line in changed[:-1]] == [b"1", b"2", b"3"]
    later = max(int(line.split(b"MODSEQ (")[1].split(b")")[0]) for line in changed[:-1])
    assert one.command(b"f", b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % later) == [
        b"f OK FETCH completed\r\n"
    ]
    assert (
        one.command(b"g", b"SEARCH MODSEQ %d" % later)[0] == b"* SEARCH 3 (MODSEQ %d)\r\n" % later
    )
    assert one.command(b"h", b"STATUS Trash (HIGHESTMODSEQ)")[0].startswith(
        b'* STATUS "Trash" (HIGHESTMODSEQ '
    )
    one.close()
    two.close()
