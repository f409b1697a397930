"""How a command ends other than OK: a tagged NO or BAD, or the end of the session."""

from __future__ import annotations


class Reply(Exception):
    """Ends a command with a tagged NO or BAD; the text is what the client sees."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def no(text: str) -> Reply:
    return Reply("NO", text)


def bad(text: str) -> Reply:
    return Reply("BAD", text)


class SelectionGone(Exception):
    """The selected mailbox was deleted by another session: the session ends with BYE."""

    bye = b"* BYE Selected mailbox was deleted, have to disconnect"


class AccountGone(SelectionGone):
    """The session's account was deleted since its login (a new account may have its
    address now): the session ends with BYE, whatever is selected."""

    bye = b"* BYE Account was deleted, have to disconnect"
