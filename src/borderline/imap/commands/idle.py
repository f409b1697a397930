"""IDLE (RFC 2177): report changes to the selected mailbox as they happen, until DONE. The
session sleeps until the server wakes it (imap/server.py: a change by this process at
once, one by another process within its watch interval); it never polls the store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from borderline.imap.commands.base import LOGGED_IN, Command, Request
from borderline.imap.limits import AUTOLOGOUT
from borderline.imap.replies import Reply, bad
from borderline.imap.state import LoggedIn, Selected

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def idle(session: Session, state: LoggedIn, request: Request) -> str:
    request.args.end()
    server = session.server
    server.wake_event(session)  # before the first sync: nothing slips by
    deadline = time.monotonic() + AUTOLOGOUT
    await report_changes(session)
    session.emit(b"+ idling")
    await session.flush()
    done = asyncio.ensure_future(session.readline())
    try:
        while True:
            await server.sleep_until_woken(session, done, max(0.0, deadline - time.monotonic()))
            if done.done():
                break
            if time.monotonic() > deadline:
                session.emit(b"* BYE Autologout; idle for too long")
                session.log_out()
                return "IDLE terminated by autologout"
            await report_changes(session)
        line = done.result()
    finally:
        done.cancel()
        server.idle_done(session)
    if line.strip().upper() != b"DONE":
        raise bad("IDLE: expected DONE")
    return "IDLE terminated"


async def report_changes(session: Session) -> None:
    session.check_account()
    if isinstance(session.state, Selected):
        await session.check_selected()
        with contextlib.suppress(Reply):  # the store is unavailable: the watcher retries
            await session.sync(session.state.view, allow_expunge=True)
    await session.flush()


COMMANDS: dict[str, Command[LoggedIn]] = {"IDLE": Command(idle, LOGGED_IN, sync_after=False)}
