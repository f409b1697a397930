"""QRESYNC (RFC 7162 3.2): a client that reconnects learns what changed since the
mod-sequence it last saw, from the store's change log (every flag change and expunge is
kept there with its MODSEQ): SELECT/EXAMINE's QRESYNC parameter and UID FETCH's VANISHED
modifier. Expunges, once QRESYNC is enabled, are VANISHED responses (MailboxView.remove)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from borderline.imap.protocol import (
    Args,
    Atom,
    ParseError,
    SequenceSet,
    Token,
    flag_list,
    is_number,
    uid_set_text,
)
from borderline.imap.view import MailboxView

if TYPE_CHECKING:
    from borderline.imap.session import Session


@dataclass(frozen=True)
class Resync:
    """SELECT's `QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])`. The
    seq-match data only helps a server that forgot expunges; it is checked, not used."""

    uidvalidity: int
    modseq: int
    known: SequenceSet | None


def select_parameters(session: Session, tokens: list[Token]) -> Resync | None:
    """SELECT/EXAMINE parameters: CONDSTORE, and QRESYNC with its list (ENABLE first)."""
    resync = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name = token.upper() if isinstance(token, Atom) else ""
        if name == "CONDSTORE":
            session.condstore = True
        elif name == "QRESYNC":
            if not session.qresync:
                raise ParseError("SELECT: QRESYNC needs ENABLE QRESYNC first")
            if index + 1 >= len(tokens) or not isinstance(tokens[index + 1], list):
                raise ParseError("SELECT: expected QRESYNC (uidvalidity modseq ...)")
            index += 1
            resync = _resync(tokens[index])
        else:
            raise ParseError(f"SELECT: unknown parameter {str(token)[:40]!r}")
        index += 1
    return resync


def _resync(token: Token) -> Resync:
    assert isinstance(token, list)
    values = Args(token, "SELECT QRESYNC")
    uidvalidity, modseq = _number(values, "uidvalidity"), _number(values, "mod-sequence")
    if uidvalidity == 0 or uidvalidity > 0xFFFFFFFF:
        raise ParseError("SELECT QRESYNC: bad uidvalidity")
    known = None
    if isinstance(values.peek(), Atom):
        known = SequenceSet.parse(values.atom("known UIDs"))
    if values.more():
        match = values.list("sequence match data")
        if len(match) != 2 or not all(isinstance(t, Atom) for t in match):
            raise ParseError("SELECT QRESYNC: expected (known-sequence-set known-uid-set)")
        sequences, uids = (SequenceSet.parse(str(t)) for t in match)
        if _size(sequences) != _size(uids):
            raise ParseError("SELECT QRESYNC: the sequence match sets differ in size")
    values.end()
    return Resync(uidvalidity, modseq, known)


def _size(numbers: SequenceSet) -> int:
    """How many numbers a set without '*' names (counted, never expanded)."""
    size = 0
    for low, high in numbers.ranges:
        if low is None or high is None:
            raise ParseError("SELECT QRESYNC: '*' in sequence match data")
        size += abs(high - low) + 1
    return size


def _number(values: Args, what: str) -> int:
    text = values.atom(what)
    if not is_number(text) or len(text) > 20:
        raise ParseError(f"SELECT QRESYNC: bad {what}")
    return int(text)


async def resync(session: Session, view: MailboxView, wanted: Resync) -> None:
    """After SELECT's own responses: VANISHED (EARLIER) for what was expunged since the
    client's mod-sequence, then FETCH for what changed (RFC 7162 3.2.5)."""
    if wanted.uidvalidity != view.mailbox.uidvalidity:
        return
    await vanished_earlier(session, view, wanted.modseq, wanted.known)
    for index, uid in enumerate(view.uids):
        modseq = view.modseqs[index]
        if modseq > wanted.modseq and (
            wanted.known is None or wanted.known.contains(uid, view.largest_uid)
        ):
            session.emit(
                b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))"
                % (index + 1, uid, flag_list(view.flags[index]), modseq)
            )


async def vanished_earlier(
    session: Session, view: MailboxView, since: int, within: SequenceSet | None
) -> None:
    """`* VANISHED (EARLIER)` for the UIDs (in `within`, if given) expunged after `since`
    that this session no longer shows; one still in its view is announced when it may be."""
    changes = await session.stored(view.store.changes_since, view.id, since)
    largest = 0xFFFFFFFF  # `1:*` covers the UIDs expunged above the highest one left
    gone = sorted(
        {
            change.uid
            for change in changes
            if change.kind == "expunge"
            and change.uid not in view.info
            and change.modseq <= view.modseq
            and (within is None or within.contains(change.uid, largest))
        }
    )
    if gone:
        session.emit(f"* VANISHED (EARLIER) {uid_set_text(gone)}".encode())


def vanished_modifier(args: Args) -> bool:
    """Take `VANISHED` out of UID FETCH's modifier list (RFC 7162 3.2.6), so the rest
    parses as CONDSTORE's (CHANGEDSINCE n)."""
    modifiers = args.peek()
    if not isinstance(modifiers, list):
        return False
    kept = [t for t in modifiers if not (isinstance(t, Atom) and t.upper() == "VANISHED")]
    if len(kept) == len(modifiers):
        return False
    modifiers[:] = kept
    return True
