"""What a command is to the session: a handler, the states it runs in, and how the session
behaves around it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from borderline.imap.protocol import Args
from borderline.imap.state import Authenticated, NotAuthenticated, Selected, State

if TYPE_CHECKING:
    from borderline.imap.session import Session

S = TypeVar("S", bound=State)


@dataclass
class Request:
    """One command as the client sent it; `by_uid` for the UID form (UID FETCH ...)."""

    tag: str
    name: str
    args: Args
    by_uid: bool = False


@dataclass(frozen=True)
class Command(Generic[S]):
    """`run` answers the text of the tagged OK (or raises Reply / ParseError).

    `states` are the states it is valid in. After it, a session with a mailbox selected
    reports other sessions' changes (`sync_after`), holding EXPUNGE back when
    `announces_expunges` is false (FETCH, STORE, SEARCH, COPY: RFC 3501 7.4.1)."""

    run: Callable[[Session, S, Request], Awaitable[str]]
    states: tuple[type[S], ...]
    sync_after: bool = True
    announces_expunges: bool = True

    def refusal(self, name: str, state: State) -> str | None:
        """Why the command cannot run in `state`, or None if it can."""
        if isinstance(state, self.states):
            return None
        if isinstance(state, NotAuthenticated):
            return f"{name} needs an authenticated session: LOGIN first"
        if self.states == (NotAuthenticated,):
            return f"{name}: already authenticated"
        return f"{name} needs a selected mailbox: SELECT one first"


ANY: tuple[type[Any], ...] = (NotAuthenticated, Authenticated, Selected)
LOGGED_IN: tuple[type[Any], ...] = (Authenticated, Selected)
SELECTED: tuple[type[Selected], ...] = (Selected,)
