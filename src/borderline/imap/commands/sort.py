"""SORT, THREAD and their UID forms (RFC 5256): the search runs as SEARCH's does
(imap/search.py), then the matches' sort keys (imap/sort.py) or threading headers
(imap/thread.py) are read in batches like FETCH's."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.commands.common import Batch, batches
from borderline.imap.commands.search import (
    _esearch,
    _matches,
    _return_options,
    saved_result,
    saving,
)
from borderline.imap.fetch import Contents, Vanished
from borderline.imap.mime import FIELD_LIMIT, Part, words_text
from borderline.imap.protocol import Atom, ParseError, Token
from borderline.imap.replies import no
from borderline.imap.search import BadCharset, parse_search
from borderline.imap.sort import (
    CRITERIA,
    Criterion,
    Key,
    needs_content,
    ordered,
    sent_date,
    sort_keys,
    subject_parts,
)
from borderline.imap.state import Selected
from borderline.imap.thread import Item, message_ids, ordered_subject, references, render
from borderline.store import MessageInfo

if TYPE_CHECKING:
    from borderline.imap.session import Session

Rows = list[tuple[int, Any]]
Keys = Callable[[MessageInfo, Part | None, int], Any]
Matcher = Callable[[list[int], Mapping[int, bytes]], tuple[list[int], list[int]]]


async def sort(session: Session, state: Selected, request: Request) -> str:
    returns = _return_options(request.args)  # ESORT (RFC 5267 3)
    with saving(session, returns):
        return await _sort(session, state, request, returns)


async def _sort(
    session: Session, state: Selected, request: Request, returns: list[str] | None
) -> str:
    args, view = request.args, state.view
    criteria = _criteria(args.list("sort criteria"))

    def keys(info: MessageInfo, part: Part | None, seq: int) -> list[Key]:
        return sort_keys(criteria, info, part)

    rows, uses_modseq = await _matched(session, state, request, keys, needs_content(criteria))
    sequence = ordered(criteria, rows)
    hits = [view.uids[seq - 1] if request.by_uid else seq for seq in sequence]
    if returns is not None and "SAVE" in returns:
        session.search_result = saved_result(returns, [view.uids[seq - 1] for seq in sequence])
        if returns == ["SAVE"]:  # SAVE alone answers nothing (RFC 5182 2.4)
            return "SORT completed, result saved"
    if returns is not None:
        # MIN and MAX are the first and last in sort order; ALL keeps the order.
        line = _esearch(request, returns, hits)
        if "ALL" not in returns and "COUNT" not in returns:
            sequence = sequence[:1] * ("MIN" in returns) + sequence[-1:] * ("MAX" in returns)
    else:
        line = ("* SORT " + " ".join(map(str, hits))).rstrip()
    if uses_modseq and sequence:
        highest = max(view.modseqs[seq - 1] for seq in sequence)
        line += f" MODSEQ {highest}" if returns is not None else f" (MODSEQ {highest})"
    session.emit(line.encode())
    return "SORT completed"


async def thread(session: Session, state: Selected, request: Request) -> str:
    args, view = request.args, state.view
    algorithm = args.atom("threading algorithm").upper()
    if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
        raise ParseError(f"THREAD: unknown algorithm {algorithm[:40]!r}")
    rows, _ = await _matched(session, state, request, _thread_item, True)
    items = [item for _, item in rows]
    roots = references(items) if algorithm == "REFERENCES" else ordered_subject(items)
    uids = {seq: view.uids[seq - 1] for seq, _ in rows} if request.by_uid else None
    session.emit(("* THREAD " + render(roots, uids)).rstrip().encode())
    return "THREAD completed"


def _thread_item(info: MessageInfo, part: Part | None, seq: int) -> Item:
    assert part is not None
    raw = part.raw_value("subject")
    subject, reply = subject_parts(words_text(raw)) if raw is not None else ("", False)
    found = message_ids(_header(part, "message-id"))
    refs = message_ids(_header(part, "references")) or message_ids(_header(part, "in-reply-to"))[:1]
    return Item(
        seq, sent_date(part, info), subject, reply, found[0] if found else None, tuple(refs)
    )


def _header(part: Part, name: str) -> str | None:
    raw = part.raw_value(name)
    return None if raw is None else raw[:FIELD_LIMIT].decode("utf-8", "replace")


async def _matched(
    session: Session, state: Selected, request: Request, keys: Keys, by_content: bool
) -> tuple[Rows, bool]:
    """`charset search-keys` as SORT and THREAD take them: the matches with their keys
    (read in FETCH's batches), and whether the keys used MODSEQ."""
    args, view = request.args, state.view
    charset = args.astring("charset").upper()
    if charset not in ("UTF-8", "US-ASCII"):
        raise no(f"[BADCHARSET (UTF-8 US-ASCII)] charset {charset[:40]} is not supported")
    if not args.more():
        raise ParseError(f"{request.name}: missing search keys")
    try:
        parsed = parse_search(args.tokens[args.pos :], session.search_result)
    except BadCharset as exc:
        raise no(f"[BADCHARSET (UTF-8 US-ASCII)] charset {exc} is not supported") from None
    reading = parsed.needs_content or by_content
    contents = await session.content(state.account) if reading else None
    if parsed.uses_modseq:
        session.enable_condstore()
    match = functools.partial(_matches, parsed.predicate, view, contents)
    matched, unknown = await session.work(match, list(range(view.exists)), {})
    found = view.messages_at(matched)
    undecided = view.messages_at(unknown)
    rows: Rows = []
    keyed = functools.partial(_rows, keys, match, contents if by_content else None)
    if by_content:
        for batch in batches(found):
            blobs = await session.stored(session.store.blobs, [i.blob_id for _, i in batch])
            rows += await session.work(keyed, batch, blobs, True)
    else:
        rows += await session.work(keyed, found, {}, True)
    for batch in batches(undecided):
        blobs = await session.stored(session.store.blobs, [i.blob_id for _, i in batch])
        rows += await session.work(keyed, batch, blobs, False)
    return rows, parsed.uses_modseq


def _criteria(tokens: list[Token]) -> list[Criterion]:
    """`(REVERSE DATE SUBJECT ...)`: each criterion once at most, REVERSE before one."""
    criteria: list[Criterion] = []
    reverse = False
    for token in tokens:
        name = token.upper() if isinstance(token, Atom) else ""
        if name == "REVERSE" and not reverse:
            reverse = True
            continue
        if name not in CRITERIA or any(name == seen for seen, _ in criteria):
            raise ParseError(f"SORT: bad sort criterion {str(token)[:40]!r}")
        criteria.append((name, reverse))
        reverse = False
    if reverse or not criteria:
        raise ParseError("SORT: expected sort criteria, REVERSE before one")
    return criteria


def _rows(
    keys: Keys,
    match: Matcher,
    contents: Contents | None,
    batch: Batch,
    blobs: Mapping[int, bytes],
    matched: bool,
) -> Rows:
    """Sort keys of the batch's matches (work thread); `matched` when the search already
    decided them. A message expunged meanwhile (its ciphertext gone) is left out."""
    rows: Rows = []
    hits = None if matched else set(match([seq - 1 for seq, _ in batch], blobs)[0])
    for seq, info in batch:
        if hits is not None and seq - 1 not in hits:
            continue
        try:
            part = None if contents is None else contents.part(info, blobs)
        except Vanished:
            continue
        rows.append((seq, keys(info, part, seq)))
    return rows


COMMAND = Command(sort, SELECTED, announces_expunges=False)
THREAD = Command(thread, SELECTED, announces_expunges=False)
