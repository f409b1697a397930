"""The states of an IMAP connection (RFC 9051 3) as types: what a command may rely on is
what its state holds, so a command that needs a selected mailbox is handed one.

    NotAuthenticated --LOGIN--> Authenticated --SELECT--> Selected
                                      ^                       |
                                      +--CLOSE, UNSELECT------+
    any of them --LOGOUT, BYE--> Logout
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from borderline.imap.fetch import Contents
    from borderline.imap.view import MailboxView


@dataclass(eq=False)
class Account:
    """The logged-in account. `contents` holds its released key after the session's first
    content read (one logged release per session), and what was decrypted with it."""

    address: str
    # The server's account_generation at login: another one means the account was deleted.
    generation: int = 0
    contents: Contents | None = None


@dataclass(frozen=True)
class NotAuthenticated:
    """Before LOGIN: only the commands of any state, STARTTLS and the logins."""


@dataclass(frozen=True)
class Authenticated:
    account: Account


@dataclass(frozen=True)
class Selected:
    """A mailbox is selected: `view` is this session's sequence numbers and flags of it."""

    account: Account
    view: MailboxView


@dataclass(frozen=True)
class Logout:
    """The session is ending (LOGOUT, or a BYE of the server's): no command runs any more."""


State = NotAuthenticated | Authenticated | Selected | Logout
LoggedIn = Authenticated | Selected
