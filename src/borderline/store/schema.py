"""The mail store schema, written once for both engines, and the migrations that reach it.

Version 1 is the schema Borderline used before it kept a version (no `schema_version`
table). Version 2 adds `schema_version`, a UIDVALIDITY clock on SQLite (PostgreSQL had
one) and ids that are never handed out twice on SQLite (AUTOINCREMENT; PostgreSQL's
identity columns never reuse). Version 3 adds the outbound queue (mail to the Internet).
Version 4 keeps an operator's reason to bounce a relay queue item (`bounce`). Version 5 adds
`mailboxes.first_recent_uid` (IMAP's Recent flag: no session has yet seen the messages from
that UID on). Version 6 adds `lost_subscriptions`, the subscribed names whose mailbox was
deleted (IMAP keeps a subscription to a name, RFC 3501 6.3.6). Version 7 adds `summaries`:
per blob, what IMAP clients fetch and search, encrypted under the account's data key as the
blob is (docs/store.md, "Message summaries"); a blob stored before has none until a session
computes it. Version 8 puts the queues' message column last (`relay_queue.sealed`,
`outbound_queue.blob`, as `blobs.data` is): SQLite writes a row whose big value is a
`zeroblob()` that nothing follows without building the value, so the store then writes the
ciphertext into it in place (store/sqlite.py, `insert_large`); PostgreSQL keeps its tables
as they are. Version 9 added `summary_packs` (the summaries of a run of a mailbox's
messages in one record), which version 10 replaces with `summary_columns`: one field of
those summaries per record, so a session decrypts only the field it answers
(docs/store.md, "Summary columns"). Both are derived from `summaries` by the sessions that
read them, so version 10 drops the packs rather than converting them. Version 11 keeps each
mailbox's count of messages and of unseen ones in its row (`message_count`,
`unseen_count`), changed by every write that changes them, so STATUS and LIST read them
instead of counting rows; the step counts them once. A new database is
created at the latest version directly; an older one is migrated step by step, in one
transaction, when a store opens it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from borderline.store.base import SEEN, StoreError
from borderline.store.engine import Dialect, Tx

LATEST = 11
# Version 4's column of the relay queue: an operator's reason to give up on the item.
RELAY_BOUNCE = "bounce TEXT"

# {id}: a primary key that is never reused; {bytes}: binary; {strings}: a list of strings
# and {no_strings} its empty value. Booleans are BOOLEAN (0/1 on SQLite).
TABLES: dict[str, str] = {
    "accounts": """CREATE TABLE {table} (
        address TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL
    )""",
    # One row: the last UIDVALIDITY handed out. It only grows, so a mailbox deleted and
    # created again (even within the same second, by another process) gets a new one.
    "uidvalidity_clock": """CREATE TABLE {table} (
        only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        last BIGINT NOT NULL
    )""",
    "mailboxes": """CREATE TABLE {table} (
        id {id},
        account TEXT NOT NULL REFERENCES accounts(address),
        name TEXT NOT NULL,
        uidvalidity BIGINT NOT NULL,
        uidnext BIGINT NOT NULL DEFAULT 1,
        highestmodseq BIGINT NOT NULL DEFAULT 1,
        special_use TEXT,
        subscribed BOOLEAN NOT NULL DEFAULT TRUE,
        first_recent_uid BIGINT NOT NULL DEFAULT 1,
        message_count BIGINT NOT NULL DEFAULT 0,
        unseen_count BIGINT NOT NULL DEFAULT 0,
        UNIQUE (account, name)
    )""",
    "blobs": """CREATE TABLE {table} (
        id {id},
        account TEXT NOT NULL,
        data {bytes} NOT NULL
    )""",
    # Version 7: one encrypted summary per blob (ENVELOPE, BODYSTRUCTURE, the header block),
    # deleted with its blob.
    "summaries": """CREATE TABLE {table} (
        blob_id BIGINT PRIMARY KEY REFERENCES blobs(id),
        data {bytes} NOT NULL
    )""",
    # Version 10: one field of the summaries of the messages of a mailbox with UIDs
    # first_uid to last_uid (a run: all of them when it was made), encrypted; a run's
    # columns are deleted when one of its messages is removed.
    "summary_columns": """CREATE TABLE {table} (
        id {id},
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id),
        first_uid BIGINT NOT NULL,
        last_uid BIGINT NOT NULL,
        field TEXT NOT NULL,
        data {bytes} NOT NULL
    )""",
    "messages": """CREATE TABLE {table} (
        id {id},
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id),
        uid BIGINT NOT NULL,
        modseq BIGINT NOT NULL,
        flags {strings} NOT NULL DEFAULT {no_strings},
        internal_date DOUBLE PRECISION NOT NULL,
        size BIGINT NOT NULL,
        blob_id BIGINT NOT NULL REFERENCES blobs(id),
        expunged BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (mailbox_id, uid)
    )""",
    "changes": """CREATE TABLE {table} (
        mailbox_id BIGINT NOT NULL,
        modseq BIGINT NOT NULL,
        uid BIGINT NOT NULL,
        kind TEXT NOT NULL
    )""",
    "relay_queue": """CREATE TABLE {table} (
        id {id},
        dest_region TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpts {strings} NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt DOUBLE PRECISION NOT NULL,
        last_error TEXT,
        """
    + RELAY_BOUNCE
    + """,
        sealed {bytes} NOT NULL
    )""",
    "relay_received": """CREATE TABLE {table} (
        relay_id TEXT NOT NULL,
        account TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (relay_id, account)
    )""",
    # Mail to the Internet, one row per (message, destination domain); `rcpts` shrinks as
    # recipients are delivered or bounced. The blob is encrypted by the vault. `bounce`: an
    # operator gave up on it, for this reason.
    "outbound_queue": """CREATE TABLE {table} (
        id {id},
        domain TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpts {strings} NOT NULL,
        size BIGINT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt DOUBLE PRECISION NOT NULL,
        last_error TEXT,
        delay_notified BOOLEAN NOT NULL DEFAULT FALSE,
        bounce TEXT,
        blob {bytes} NOT NULL
    )""",
    # Subscriptions outlive their mailbox (RFC 3501 6.3.6): a subscribed mailbox's name moves
    # here when it is deleted, and back to `mailboxes.subscribed` when it is created again.
    "lost_subscriptions": """CREATE TABLE {table} (
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (account, name)
    )""",
    "holds": """CREATE TABLE {table} (
        id {id},
        account TEXT NOT NULL,
        reference TEXT NOT NULL,
        until DOUBLE PRECISION NOT NULL
    )""",
    "schema_version": "CREATE TABLE {table} (version INTEGER NOT NULL)",
}
INDEXES: dict[str, tuple[str, ...]] = {
    "messages": ("CREATE INDEX messages_by_blob ON messages (blob_id)",),
    "changes": ("CREATE INDEX changes_by_mailbox ON changes (mailbox_id, modseq)",),
    "summary_columns": (
        "CREATE INDEX summary_columns_by_uid ON summary_columns (mailbox_id, first_uid)",
    ),
    "outbound_queue": ("CREATE INDEX outbound_due ON outbound_queue (next_attempt, id)",),
}
# The tables whose last column is a message (version 8 moved the queues' there on SQLite).
# A column added to one of them later goes before it in TABLES, and a SQLite migration
# rebuilds the table (`ALTER TABLE ADD COLUMN` would put it after).
LARGE_LAST = ("relay_queue", "outbound_queue")
# Tables of version 1 whose ids a session, the relay lane or the legal desk holds on to
# (version 2 rebuilt them on SQLite; tables added since are created with such ids).
WITH_IDS = ("mailboxes", "blobs", "messages", "relay_queue", "holds")

Migration = Callable[[Tx], None]


def create_table(tx: Tx, dialect: Dialect, table: str, as_name: str | None = None) -> None:
    """Create `table` as the latest schema defines it (named `as_name` if given)."""
    tx.run(TABLES[table].format(table=as_name or table, **dialect.ddl_types))


def add_table(tx: Tx, dialect: Dialect, table: str) -> None:
    """A migration step that only adds a table (with its indexes) of the latest schema."""
    create_table(tx, dialect, table)
    for index in INDEXES.get(table, ()):
        tx.run(index)


def replace_summary_packs(tx: Tx, dialect: Dialect) -> None:
    """Version 10: summary columns instead of packs. Packs are derived (sessions make them
    from the summaries), so they are dropped, not converted; version 9's step created
    nothing, so a database older than 9 has none."""
    tx.run("DROP TABLE IF EXISTS summary_packs")
    add_table(tx, dialect, "summary_columns")


def seed_clock(tx: Tx) -> None:
    """Start the UIDVALIDITY clock above every UIDVALIDITY already handed out."""
    tx.run(
        "INSERT INTO uidvalidity_clock (only_row, last)"
        " SELECT TRUE, COALESCE(MAX(uidvalidity), 0) FROM mailboxes"
    )


def add_first_recent_uid(tx: Tx, add_column: bool = True) -> None:
    """Version 5: messages already stored count as seen, not \\Recent. `add_column` false
    when an earlier step rebuilt `mailboxes` at the latest schema (SQLite's version 2)."""
    if add_column:
        tx.run("ALTER TABLE mailboxes ADD COLUMN first_recent_uid BIGINT NOT NULL DEFAULT 1")
    tx.run("UPDATE mailboxes SET first_recent_uid = uidnext")


def add_mailbox_counts(tx: Tx, dialect: Dialect, add_columns: bool = True) -> None:
    """Version 11: count each mailbox's messages and unseen ones (retained ones left out).
    `add_columns` false when an earlier step rebuilt `mailboxes` at the latest schema."""
    if add_columns:
        for column in ("message_count", "unseen_count"):
            tx.run(f"ALTER TABLE mailboxes ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0")
    live = "FROM messages WHERE mailbox_id = mailboxes.id AND NOT expunged"
    tx.run(
        f"UPDATE mailboxes SET message_count = (SELECT COUNT(*) {live}),"
        f" unseen_count = (SELECT COUNT(*) {live} AND NOT {dialect.has_flag(SEEN)})"
    )


def found_version(tx: Tx, dialect: Dialect) -> int:
    """The schema version of the database: 0 if it is empty, 1 if it predates versions."""
    if tx.one(dialect.table_exists(), ("schema_version",)) is not None:
        row = tx.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row is not None and row[0] is not None else 0
    return 1 if tx.one(dialect.table_exists(), ("mailboxes",)) is not None else 0


def migrate(tx: Tx, dialect: Dialect, steps: Mapping[int, Migration], where: str) -> int:
    """Bring the database to LATEST inside `tx`; the version it was at. Idempotent: at
    LATEST nothing runs (not even DDL, which would take table locks)."""
    version = found_version(tx, dialect)
    if version > LATEST:
        raise StoreError(
            f"{where} has mail store schema version {version}, newer than this Borderline"
            f" understands ({LATEST}): run a Borderline at least as new as the one that wrote it"
        )
    if version == LATEST:
        return version
    if version == 0:
        for table in TABLES:
            create_table(tx, dialect, table)
        for indexes in INDEXES.values():
            for index in indexes:
                tx.run(index)
        seed_clock(tx)
    else:
        if version == 1:
            create_table(tx, dialect, "schema_version")
        for step in range(version + 1, LATEST + 1):
            steps[step](tx)
    tx.run("DELETE FROM schema_version")
    tx.run("INSERT INTO schema_version (version) VALUES (?)", (LATEST,))
    return version
