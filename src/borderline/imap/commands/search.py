"""SEARCH (RFC 9051 6.4.4; CONDSTORE MODSEQ, RFC 7162 3.1.5; ESEARCH's RETURN options, RFC
4731; SEARCHRES's SAVE and `$`, RFC 5182): keys are parsed in imap/search.py; a search
decides first without content, then reads only what it needs."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.commands.common import (
    SUMMARY_BATCH,
    batches,
    load_summaries,
    store_computed,
)
from borderline.imap.fetch import Contents, Vanished
from borderline.imap.mime import Part
from borderline.imap.protocol import Args, Atom, ParseError, as_text, uid_set_text
from borderline.imap.replies import Reply, no
from borderline.imap.search import BadCharset, Predicate, parse_search
from borderline.imap.state import Selected
from borderline.imap.summary import summary_column
from borderline.imap.view import MailboxView

if TYPE_CHECKING:
    from borderline.imap.session import Session

V = TypeVar("V")

RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE")


async def search(session: Session, state: Selected, request: Request) -> str:
    returns = _return_options(request.args)
    if returns is None and session.imap4rev2:
        returns = ["ALL"]  # IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 6.4.4)
    with saving(session, returns):
        return await _search(session, state, request, returns)


@contextlib.contextmanager
def saving(session: Session, returns: list[str] | None) -> Iterator[None]:
    """Around a SEARCH or SORT: with SAVE, one that ends NO leaves `$` empty, one that ends
    BAD leaves it as it was (RFC 5182 2.1)."""
    try:
        yield
    except Exception as exc:
        bad = isinstance(exc, ParseError) or (isinstance(exc, Reply) and exc.status == "BAD")
        if returns is not None and "SAVE" in returns and not bad:
            session.search_result = []
        raise


async def _search(
    session: Session, state: Selected, request: Request, returns: list[str] | None
) -> str:
    args, view = request.args, state.view
    try:
        parsed = parse_search(args.tokens[args.pos :], session.search_result)
    except BadCharset as exc:
        raise no(f"[BADCHARSET (UTF-8 US-ASCII)] charset {exc} is not supported") from None
    contents = await session.content(state.account) if parsed.needs_content else None
    if parsed.uses_modseq:
        session.enable_condstore()
    match = functools.partial(_matches, parsed.predicate, view, contents)
    needs: list[tuple[str, ...]] = [(summary_column(r),) for r in sorted(parsed.summary_reads)]
    # Messages whose answer depends on their content are read in a second round, so
    # `UNSEEN BODY x` decrypts only the unseen ones; header keys are answered from the
    # summaries of the first round where the messages have them.
    found: list[int] = []
    undecided: list[int] = []
    first = 0
    while first < view.exists:
        chunk = list(range(first, min(first + SUMMARY_BATCH, view.exists)))
        if contents is not None and needs:
            chunk = await load_summaries(session, contents, view, chunk, needs)
        matched, unknown = await session.work(match, chunk, {})
        found += matched
        undecided += unknown
        first += len(chunk)
    for batch in batches(view.messages_at(undecided)):
        blobs = await session.stored(session.store.blobs, [i.blob_id for _, i in batch])
        found += (await session.work(match, [seq - 1 for seq, _ in batch], blobs))[0]
        if contents is not None:
            await store_computed(session, contents)
    found.sort()
    hits = [view.uids[index] if request.by_uid else index + 1 for index in found]
    highest = max((view.modseqs[index] for index in found), default=0)
    if returns is None:
        line = ("* SEARCH " + " ".join(map(str, hits))).rstrip()
        if parsed.uses_modseq and hits:
            line += f" (MODSEQ {highest})"  # RFC 7162 3.1.5
        session.emit(line.encode())
        return "SEARCH completed"
    if "SAVE" in returns:
        session.search_result = saved_result(returns, [view.uids[index] for index in found])
    if returns == ["SAVE"]:  # SAVE alone answers no ESEARCH (RFC 5182 2.4)
        return "SEARCH completed, result saved"
    line = _esearch(request, returns, hits)
    if parsed.uses_modseq and hits:
        if "ALL" not in returns and "COUNT" not in returns:  # of the MIN/MAX ones only
            ends = [found[0]] * ("MIN" in returns) + [found[-1]] * ("MAX" in returns)
            highest = max(view.modseqs[index] for index in ends)
        line += f" MODSEQ {highest}"  # RFC 7162 3.2
    session.emit(line.encode())
    return "SEARCH completed"


def _return_options(args: Args) -> list[str] | None:
    """`RETURN (MIN MAX ALL COUNT SAVE)` before the keys (RFC 4731 3.1, RFC 5182 2), or
    None for a plain SEARCH; `RETURN ()` means ALL."""
    if not (isinstance(args.peek(), Atom) and str(args.peek()).upper() == "RETURN"):
        return None
    args.next("RETURN")
    options = [as_text(t, "SEARCH: bad RETURN option").upper() for t in args.list("options")]
    unknown = set(options) - set(RETURN_OPTIONS)
    if unknown:
        raise ParseError(f"SEARCH: unknown RETURN option {sorted(unknown)[0]}")
    return [option for option in RETURN_OPTIONS if option in options] or ["ALL"]


def _esearch(request: Request, returns: list[str], hits: list[int]) -> str:
    """The ESEARCH response: MIN, MAX and ALL only when something matched (RFC 4731 3.1)."""
    words = [f'* ESEARCH (TAG "{request.tag}")']
    if request.by_uid:
        words.append("UID")
    for option in returns:
        if option == "COUNT":
            words.append(f"COUNT {len(hits)}")
        elif hits and option == "MIN":
            words.append(f"MIN {hits[0]}")
        elif hits and option == "MAX":
            words.append(f"MAX {hits[-1]}")
        elif hits and option == "ALL":
            words.append(f"ALL {uid_set_text(hits)}")
    return " ".join(words)


def saved_result(returns: list[str], uids: list[int]) -> list[int]:
    """What `$` holds after a SEARCH or SORT with SAVE among `returns` that found `uids`
    (in its answer's order): only the MIN and MAX it answers when they are all it answers
    beside SAVE, otherwise every message found (RFC 5182 2.4); ascending."""
    if "ALL" in returns or "COUNT" in returns or not {"MIN", "MAX"} & set(returns):
        return sorted(uids)
    return sorted(set(uids[:1] * ("MIN" in returns) + uids[-1:] * ("MAX" in returns)))


def _matches(
    predicate: Predicate,
    view: MailboxView,
    contents: Contents | None,
    indexes: list[int],
    blobs: Mapping[int, bytes],
) -> tuple[list[int], list[int]]:
    """SEARCH over the view's messages at `indexes` (work thread): those that match, and
    those whose content was needed but is not in `blobs` (nor cached)."""
    found: list[int] = []
    undecided: list[int] = []
    for index in indexes:
        try:
            if predicate(Searched(view, index, contents, blobs)):
                found.append(index)
        except Vanished:
            undecided.append(index)
    return found, undecided


class _Column(Generic[V]):
    """A message's value in one of its view's columns, as an attribute of Searched."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __get__(self, searched: Searched, owner: type[Searched]) -> V:
        values: Sequence[V] = getattr(searched._view, self.column)
        return values[searched._index]


class Searched:
    """A message of the view as SEARCH keys see it (imap/search.py's Candidate): what keys
    ask of it read from the view's columns, its content read only if a key needs it."""

    __slots__ = ("_blobs", "_contents", "_index", "_view")

    def __init__(
        self,
        view: MailboxView,
        index: int,
        contents: Contents | None,
        blobs: Mapping[int, bytes],
    ) -> None:
        self._view = view
        self._index = index
        self._contents = contents
        self._blobs = blobs

    @property
    def seq(self) -> int:
        return self._index + 1

    uid: _Column[int] = _Column("uids")
    flags: _Column[frozenset[str]] = _Column("flags")
    size: _Column[int] = _Column("sizes")
    internal_date: _Column[float] = _Column("internal_dates")
    modseq: _Column[int] = _Column("modseqs")

    @property
    def largest_seq(self) -> int:
        return self._view.exists

    @property
    def largest_uid(self) -> int:
        return self._view.largest_uid

    def part(self) -> Part:
        assert self._contents is not None, "the parser asked for content: the key is released"
        return self._contents.part(self._view.message_at(self._index), self._blobs)

    def header(self) -> Part:
        assert self._contents is not None, "the parser asked for content: the key is released"
        return self._contents.header(self._view.message_at(self._index), self._blobs)

    def texts(self, name: str) -> str | None:
        if self._contents is None:
            return None
        return self._contents.search_text(self._view.blob_ids[self._index], name)


COMMAND = Command(search, SELECTED, announces_expunges=False)
