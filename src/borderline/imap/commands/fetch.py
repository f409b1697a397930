"""FETCH (RFC 9051 6.4.5; CONDSTORE CHANGEDSINCE, RFC 7162 3.1.4): the data items are in
imap/fetch.py; content is read and rendered in batches on the store and work threads."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.commands.common import (
    SUMMARY_BATCH,
    Batch,
    batches,
    load_summaries,
    message_set,
    modifier,
    read_summaries,
    store_computed,
)
from borderline.imap.commands.qresync import vanished_earlier, vanished_modifier
from borderline.imap.fetch import (
    Contents,
    FetchItem,
    answered_by_columns,
    column_responses,
    parse_items,
)
from borderline.imap.protocol import ParseError
from borderline.imap.replies import no
from borderline.imap.state import Selected
from borderline.imap.view import MailboxView

if TYPE_CHECKING:
    from borderline.imap.session import Session

# Responses without content are rendered this many at a time (about 40 octets each).
METADATA_BATCH = 2048


async def fetch(session: Session, state: Selected, request: Request) -> str:
    args, by_uid, view = request.args, request.by_uid, state.view
    numbers = message_set(session, view, args, by_uid)
    items = parse_items(args.next("data items"))
    vanished = vanished_modifier(args)
    changed_since = modifier(args, "CHANGEDSINCE")
    args.end()
    if vanished and not (by_uid and session.qresync and changed_since is not None):
        raise ParseError("FETCH: VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC")
    # With QRESYNC every FETCH carries its UID (RFC 7162 3.2.4).
    if (by_uid or session.qresync) and not any(item.kind == "UID" for item in items):
        items.insert(0, FetchItem("UID"))
    if changed_since is not None or any(item.kind == "MODSEQ" for item in items):
        session.enable_condstore()
    indexes = view.indexes(numbers, by_uid)
    if vanished and changed_since is not None:
        await vanished_earlier(session, view, changed_since, numbers)
    if changed_since is not None:
        indexes = [i for i in indexes if view.modseqs[i] > changed_since]
    needs_content = any(i.needs_content for i in items)
    contents = await session.content(state.account) if needs_content else None
    if not view.readonly and any(item.sets_seen for item in items):
        unseen = [view.uids[i] for i in indexes if "\\Seen" not in view.flags[i]]
        if unseen:
            await _set_seen(session, view, unseen, items)
    kinds = {item.kind for item in items}
    if (
        session.condstore
        and "MODSEQ" not in kinds
        and (changed_since is not None or "FLAGS" in kinds)
    ):
        items.append(FetchItem("MODSEQ"))  # RFC 7162 3.1.4.1, 3.2
    if contents is None:
        for start in range(0, len(indexes), METADATA_BATCH):
            part = indexes[start : start + METADATA_BATCH]
            session.emit_chunks([column_responses(view, part, items)])
            await session.flush_if_full()
        return "FETCH completed"
    summarized = any(item.in_summary for item in items)
    columns = answered_by_columns(items)
    missing = 0
    # Runs of messages whose summaries are read at once, each answered from the columns
    # and summaries where they answer it all (one store call, one work call), else one by one.
    size = SUMMARY_BATCH if summarized else max(len(indexes), 1)
    needs = contents.needs(items)
    first = 0
    while first < len(indexes):
        run = indexes[first : first + size]
        if summarized and columns:
            run, found = await read_summaries(session, contents, view, run, needs)
            rendered = await session.work(
                contents.summary_responses, view, run, items, found, needs
            )
            await store_computed(session, contents)
            if rendered is not None:
                session.emit_chunks([rendered])
                await session.flush_if_full()
                first += len(run)
                continue
        elif summarized:
            run = await load_summaries(session, contents, view, run, needs)
        else:
            contents.trim(len(run), 0)  # room for structures: these items load no summary
        missing += await _fetch_messages(session, contents, view, run, items)
        first += len(run)
    if missing:
        raise no(
            f"[EXPUNGEISSUED] some of the messages no longer exist ({missing} expunged meanwhile)"
        )
    return "FETCH completed"


async def _fetch_messages(
    session: Session, contents: Contents, view: MailboxView, run: list[int], items: list[FetchItem]
) -> int:
    """Answer the messages at `run` one by one, reading and decrypting the messages no
    summary answers in batches of bounded size, each batch read while the one before is
    answered and sent (the ciphertexts of two in memory, the answer of one); how many
    vanished meanwhile."""
    missing = 0
    messages = view.messages_at(run)
    if contents.reads_every_message(items):
        wanted = {info.blob_id for _, info in messages}
    else:
        wanted = {info.blob_id for _, info in messages if contents.wants(info, items)}
    todo = list(batches(messages)) if wanted else [messages]

    def read(batch: Batch) -> asyncio.Task[Mapping[int, bytes]]:
        blob_ids = [info.blob_id for _, info in batch if info.blob_id in wanted]
        return asyncio.ensure_future(_ciphertexts(session, blob_ids))

    ahead = read(todo[0])
    try:
        for index, batch in enumerate(todo):
            blobs = await ahead
            if index + 1 < len(todo):
                ahead = read(todo[index + 1])
            responses = await session.work(contents.responses, batch, items, blobs)
            del blobs  # the next batch's are being read: hold no third batch
            await store_computed(session, contents)
            for chunks in responses:
                if chunks is None:
                    missing += 1  # expunged by another session, not yet announced here
                else:
                    session.emit_chunks(chunks)
            del responses
            await session.flush_if_full()
    finally:
        ahead.cancel()
        ahead.add_done_callback(_seen)
    return missing


async def _ciphertexts(session: Session, blob_ids: list[int]) -> Mapping[int, bytes]:
    return await session.stored(session.store.blobs, blob_ids) if blob_ids else {}


def _seen(task: asyncio.Task[Mapping[int, bytes]]) -> None:
    """Take the outcome of a read ahead that a failed FETCH left behind, so that asyncio
    does not report its error as one nobody awaited."""
    if not task.cancelled():
        task.exception()


async def _set_seen(
    session: Session, view: MailboxView, uids: list[int], items: list[FetchItem]
) -> None:
    async with session.server.flag_lock(view.id):
        changed = await session.stored(
            session.store.set_flags, view.id, uids, frozenset({"\\Seen"}), "add"
        )
    for line in view.update(changed):
        session.emit(line)
    if not any(item.kind == "FLAGS" for item in items):
        items.append(FetchItem("FLAGS"))
    session.server.changed(view.id)


COMMAND = Command(fetch, SELECTED, announces_expunges=False)
