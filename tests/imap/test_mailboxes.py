"""Mailbox commands: LIST with SPECIAL-USE, LSUB, STATUS, CREATE/DELETE/RENAME, SUBSCRIBE."""

from __future__ import annotations

from typing import Any

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, fill, make_message


def test_list_special_use_and_hierarchy(client: IMAPClient) -> None:
    folders = {name: flags for flags, _, name in client.list_folders()}
    assert folders == {
        "Drafts": (b"\\HasNoChildren", b"\\Drafts"),
        "INBOX": (b"\\HasNoChildren",),
        "Junk": (b"\\HasNoChildren", b"\\Junk"),
        "Sent": (b"\\HasNoChildren", b"\\Sent"),
        "Trash": (b"\\HasNoChildren", b"\\Trash"),
    }
    assert client.find_special_folder(b"\\Sent") == "Sent"
    client.create_folder("Projects/2026/Q1")
    assert client.folder_exists("Projects/2026")
    assert [n for _, _, n in client.list_folders("Projects/", "%")] == ["Projects/2026"]
    assert [n for _, _, n in client.list_folders("", "Projects/*")] == [
        "Projects/2026",
        "Projects/2026/Q1",
    ]
    assert dict((n, f) for f, _, n in client.list_folders("", "Projects"))["Projects"] == (
        b"\\HasChildren",
    )
    assert client.list_folders("", "inbox")[0][2] == "INBOX"
    with pytest.raises(IMAPClientError, match="INUSE"):
        client.delete_folder("Projects")
    client.rename_folder("Projects", "Archive")
    assert sorted(n for _, _, n in client.list_folders("Archive")) == [
        "Archive",
        "Archive/2026",
        "Archive/2026/Q1",
    ]
    client.delete_folder("Archive/2026/Q1")
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.delete_folder("Archive/2026/Q1")
    with pytest.raises(IMAPClientError, match="ALREADYEXISTS"):
        client.create_folder("Archive")
    with pytest.raises(IMAPClientError, match="CANNOT"):
        client.delete_folder("INBOX")


def test_non_ascii_names_use_modified_utf7(client: IMAPClient) -> None:
    client.create_folder("Reçus/日本")
    names = [n for _, _, n in client.list_folders("", "Re*")]
    assert names == ["Reçus", "Reçus/日本"]
    raw_names = client._imap.list('""', "Re*")[1]
    assert b'"Re&AOc-us/&ZeVnLA-"' in raw_names[1]


def test_subscribe_lsub_and_status(running: RunningCloud, client: IMAPClient) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(4)]
    )
    client.unsubscribe_folder("Junk")
    assert "Junk" not in [n for _, _, n in client.list_sub_folders()]
    assert "Sent" in [n for _, _, n in client.list_sub_folders()]
    client.subscribe_folder("Junk")
    assert "Junk" in [n for _, _, n in client.list_sub_folders()]
    client.select_folder("INBOX")
    client.add_flags([1], [b"\\Seen"])
    client.add_flags([2], [b"\\Deleted"])
    status = client.folder_status(
        "INBOX", ["MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY", "RECENT", "SIZE", "DELETED"]
    )
    sizes = sum(len(make_message(i)) for i in range(4))
    assert status[b"MESSAGES"] == 4 and status[b"UNSEEN"] == 3 and status[b"UIDNEXT"] == 5
    assert status[b"SIZE"] == sizes and status[b"DELETED"] == 1 and status[b"RECENT"] == 0


def test_namespace_id_enable_examine_unselect_close(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(2)]
    )
    raw = Raw(running)
    assert raw.command(b"a", b'ID ("name" "test")')[0].startswith(b'* ID ("name" "Borderline"')
    raw.command(b"b", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    assert raw.command(b"c", b"NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert raw.command(b"d", b"ENABLE UTF8=ACCEPT X-UNKNOWN")[0] == b"* ENABLED UTF8=ACCEPT\r\n"
    assert raw.command(b"e", 'CREATE "Ünï"'.encode())[-1] == b"e OK CREATE completed\r\n"
    assert b'"\xc3\x9cn\xc3\xaf"' in b"".join(raw.command(b"f", b'LIST "" "*"'))
    examine = raw.command(b"g", b"EXAMINE INBOX")
    assert examine[-1] == b"g OK [READ-ONLY] EXAMINE completed\r\n"
    assert b"* 2 EXISTS\r\n" in examine and b"* OK [UNSEEN 1] first unseen message\r\n" in examine
    raw.command(b"h", b"FETCH 1 BODY[]")
    assert raw.command(b"i", b"FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Recent))\r\n", (
        "EXAMINE: no \\Seen"
    )
    assert raw.command(b"j", b"UNSELECT")[-1] == b"j OK UNSELECT completed\r\n"
    raw.command(b"k", b"SELECT INBOX")
    raw.command(b"l", b"STORE 1 +FLAGS (\\Deleted)")
    assert raw.command(b"m", b"CLOSE") == [b"m OK CLOSE completed\r\n"], "CLOSE expunges silently"
    assert raw.command(b"n", b"STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 1)\r\n'
    raw.close()


def test_status_and_list_with_a_mailbox_selected_read_its_changes_in_their_store_call(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command in the Selected state ends with a sync that reports what others
    changed (here: flags changed and mail stored by another process, which no notice
    announces). STATUS and LIST read it in the same store call as their own answer: one
    trip to the store threads, not two, unless new mail needs its \\Recent claimed (a
    write, left to the sync's own call). A STATUS that fails still syncs."""
    region = running.cloud.region("eu-dublin")
    fill(region, "alice@example.test", [make_message(0), make_message(1)])
    inbox = region.store.mailbox("alice@example.test", "INBOX")
    [imap] = [server for server in running.runtime.imap if server.region is region]
    submit = imap.store_threads.submit
    calls: list[str] = []

    def counted(call: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(call, "__name__", repr(call)))
        return submit(call, *args, **kwargs)

    monkeypatch.setattr(imap.store_threads, "submit", counted)
    raw = Raw(running)
    raw.command(b"a", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    raw.command(b"b", b"SELECT INBOX")
    for uid, (tag, command, answer) in enumerate(
        [
            (b"c", b"STATUS Sent (MESSAGES UNSEEN)", b'* STATUS "Sent" (MESSAGES 0 UNSEEN 0)'),
            (b"d", b'LIST "" "INBOX"', b'* LIST (\\HasNoChildren) "/" "INBOX"'),
        ],
        start=1,
    ):
        region.store.set_flags(inbox.id, [uid], frozenset({"\\Seen"}), "add")
        calls.clear()
        reply = raw.command(tag, command)
        assert reply[0].rstrip() == answer and reply[-1].endswith(b" completed\r\n")
        assert b"* %d FETCH (UID %d FLAGS (\\Recent \\Seen))\r\n" % (uid, uid) in reply
        assert calls == ["both"], calls
    fill(region, "alice@example.test", [make_message(2)])
    calls.clear()
    reply = raw.command(b"e", b"STATUS Sent (MESSAGES)")
    assert b"* 3 EXISTS\r\n" in reply and calls == ["both", "read_changes"], calls
    other = Raw(running)
    other.command(b"a", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    other.command(b"b", b"SELECT INBOX")
    fill(region, "alice@example.test", [make_message(3)])
    other.command(b"c", b"NOOP")  # claims the new message's \\Recent: none left to claim
    calls.clear()
    reply = raw.command(b"f", b"STATUS Sent (MESSAGES)")
    assert b"* 4 EXISTS\r\n" in reply and b"* 3 RECENT\r\n" in reply
    assert calls == ["both"], calls
    other.close()
    fill(region, "alice@example.test", [make_message(4)])
    reply = raw.command(b"g", b"STATUS Nowhere (MESSAGES)")
    assert reply[0] == b"* 5 EXISTS\r\n"
    assert reply[-1] == b"g NO [NONEXISTENT] no mailbox 'Nowhere'\r\n"
    raw.close()


def test_rename_inbox_moves_its_messages(running: RunningCloud, client: IMAPClient) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(3)]
    )
    client.rename_folder("INBOX", "Old/Inbox")
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
    assert client.folder_status("Old/Inbox", ["MESSAGES"])[b"MESSAGES"] == 3
    client.select_folder("Old/Inbox")
    subjects = client.fetch([1, 2, 3], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert [d[b"BODY[HEADER.FIELDS (SUBJECT)]"] for d in subjects.values()] == [
        b"Subject: message %d\r\n\r\n" % i for i in range(3)
    ]


def test_rename_into_own_subtree_and_control_characters_are_refused(
    running: RunningCloud,
) -> None:
    raw = Raw(running)
    raw.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    raw.command(b"a", b"CREATE par/kid")
    assert raw.command(b"b", b"RENAME par par/kid/deeper")[-1] == (
        b"b NO [CANNOT] 'par' cannot be moved into its own subtree\r\n"
    )
    assert raw.command(b"c", b"RENAME par par/x")[-1].startswith(b"c NO [CANNOT]")
    listed = raw.command(b"d", b'LIST "" "*"')
    assert [line.rsplit(b" ", 1)[1] for line in listed if b"par" in line] == [
        b'"par"\r\n',
        b'"par/kid"\r\n',
    ], "the hierarchy is untouched"
    assert raw.command(b"e", b"RENAME par part")[-1] == b"e OK RENAME completed\r\n"
    # INBOX is special: renaming it moves its messages, not its children.
    assert raw.command(b"f", b"RENAME INBOX INBOX/old")[-1] == b"f OK RENAME completed\r\n"
    for name in (b"a\x00b", b"tab\there", b"bell\x07", b"del\x7f", "c1\x85".encode()):
        reply = raw.command(b"g", b"CREATE {%d+}\r\n%s" % (len(name), name))
        assert reply[-1] == b"g NO [CANNOT] mailbox names cannot contain control characters\r\n"
        reply = raw.command(b"h", b"RENAME part {%d+}\r\n%s" % (len(name), name))
        assert reply[-1].startswith(b"h NO [CANNOT]")
    assert raw.command(b"i", b"CREATE " + b"n" * 1025)[-1].startswith(b"i NO [CANNOT]")
    raw.close()
