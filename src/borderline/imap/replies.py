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
