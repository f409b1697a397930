"""Every IMAP command, by name, with the state it runs in (see base.Command). Each module
holds one command or a family of them; `uid` runs the UID forms (RFC 9051 6.4.9)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from borderline.imap.commands import (
    append,
    copy,
    expunge,
    fetch,
    general,
    idle,
    login,
    mailboxes,
    search,
    selection,
    sort,
    store,
)
from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.protocol import ParseError
from borderline.imap.state import Selected

if TYPE_CHECKING:
    from borderline.imap.session import Session

# The commands with a UID form, and how each treats the UID prefix (Request.by_uid).
UID_COMMANDS: dict[str, Command[Selected]] = {
    "FETCH": fetch.COMMAND,
    "STORE": store.COMMAND,
    "COPY": copy.COPY,
    "MOVE": copy.MOVE,
    "SEARCH": search.COMMAND,
    "SORT": sort.COMMAND,
    "THREAD": sort.THREAD,
    "EXPUNGE": expunge.COMMAND,
}


async def uid(session: Session, state: Selected, request: Request) -> str:
    sub = request.args.atom("UID command").upper()
    command = UID_COMMANDS.get(sub)
    if command is None:
        raise ParseError(f"UID {sub}: not a UID command")
    request.args.what = f"UID {sub}"
    await session.sync(state.view, allow_expunge=True)  # responses use current numbers
    sub_request = Request(request.tag, sub, request.args, by_uid=True)
    text = await command.run(session, state, sub_request)
    if text.startswith("["):  # a response code stays first: "[COPYUID ...] UID COPY ..."
        code, _, rest = text.partition("] ")
        return f"{code}] UID {rest}"
    return "UID " + text


COMMANDS: dict[str, Command[Any]] = {
    **general.COMMANDS,
    **login.COMMANDS,
    **mailboxes.COMMANDS,
    **selection.COMMANDS,
    **append.COMMANDS,
    **idle.COMMANDS,
    **general.SELECTED_COMMANDS,
    **selection.SELECTED_COMMANDS,
    **UID_COMMANDS,
    "UID": Command(uid, SELECTED),
}
