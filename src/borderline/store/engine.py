"""What the mail semantics need from a database engine: transactions, and the SQL that differs.

`MailStore` (mail.py) writes every rule once, in SQL both engines run: `?` placeholders,
`RETURNING`, `ON CONFLICT DO NOTHING`, `CASE`. An engine (sqlite.py, postgres.py) supplies
connections, locking and error mapping, and a `Dialect`: the few fragments that really
differ between SQLite and PostgreSQL (row locks, list parameters, how flags are stored).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from borderline.store.base import StoreError

Row = tuple[Any, ...]


class Conflict(StoreError):
    """A write broke a uniqueness or reference rule (the engine's integrity error)."""


class Tx(Protocol):
    """Statements on one connection: inside `Engine.write()` one transaction, inside
    `Engine.read()` each statement on its own, seeing what is committed."""

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of `sql`."""
        ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of `sql`, or None."""
        ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Execute `sql`, ignoring any rows."""
        ...

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute `sql` once per parameter row, in order."""
        ...

    def one_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row | None]:
        """Execute `sql` once per parameter row, in order; the first result row of each."""
        ...

    def insert_large(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Insert rows whose last column is a message's ciphertext, in order; their ids. A
        message may be as big as the size limit, so each engine writes it the way that
        copies it least."""
        ...

    def read_large(self, table: str, column: str, row_id: int, room: int) -> bytearray | None:
        """A row's large value read a window at a time into a buffer of its own, after
        `room` bytes left for the caller; None if there is no such row."""
        ...


class Engine(Protocol):
    """Connections to one database, already at the current schema version."""

    dialect: Dialect

    def write(self) -> AbstractContextManager[Tx]:
        """One transaction, durable when the block exits normally, rolled back otherwise.
        Driver errors leave it as StoreError (integrity errors as Conflict)."""
        ...

    def read(self) -> AbstractContextManager[Tx]:
        """Reads of committed data. Driver errors leave it as StoreError."""
        ...

    def close(self) -> None:
        """Close every connection the engine opened."""
        ...


class Dialect(ABC):
    """The SQL fragments and value encodings that differ between engines."""

    name: str
    # Appended to a SELECT whose rows the transaction will change: the row locks that order
    # concurrent writers (PostgreSQL). Empty where a write transaction locks the database.
    for_update: str
    # Column types in the shared DDL (schema.py).
    ddl_types: dict[str, str]

    @abstractmethod
    def member(self, column: str) -> str:
        """A condition true when `column` is in the list passed as the next parameter."""

    @abstractmethod
    def values(self, items: Iterable[Any]) -> Any:
        """The parameter for `member`, or for a list column (relay recipients)."""

    @abstractmethod
    def strings(self, raw: Any) -> tuple[str, ...]:
        """A list column's value as read."""

    @abstractmethod
    def has_flag(self, flag: str) -> str:
        """A condition true when a message's `flags` column holds the (constant) flag."""

    @abstractmethod
    def flags_param(self, flags: frozenset[str]) -> Any:
        """A flag set as stored."""

    @abstractmethod
    def flags(self, raw: Any) -> frozenset[str]:
        """A stored flag set as read."""

    @abstractmethod
    def table_exists(self) -> str:
        """A query with one parameter, a table name, returning a row if the table exists."""
