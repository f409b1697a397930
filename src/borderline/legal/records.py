"""Legal request records in SQLite: requests, per-item decisions, approvals, history, notices.

Legal records are metadata (who asked for what, what was decided), never mail content, so one
database under data_dir serves the whole cloud.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

from borderline.durable_sqlite import open_durable
from borderline.law import Decision, LegalRequest
from borderline.law.request import STORED

State = Literal[
    "received", "decided", "in_review", "approved", "rejected", "fulfilled", "refused", "closed"
]

# The lifecycle (DESIGN.md section 3): anything else is refused with TransitionError.
TRANSITIONS: dict[State, tuple[State, ...]] = {
    "received": ("decided",),
    "decided": ("in_review",),
    "in_review": ("approved", "rejected"),
    "approved": ("fulfilled",),
    "rejected": ("refused",),
    "fulfilled": ("closed",),
    "refused": ("closed",),
    "closed": (),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL,
    served_on TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    ndo_until TEXT,
    submitted_at TEXT NOT NULL,
    reject_reason TEXT,
    UNIQUE (reference, served_on)
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    n INTEGER NOT NULL,
    account TEXT NOT NULL,
    category TEXT NOT NULL,
    outcome TEXT NOT NULL,
    decision TEXT NOT NULL,
    hold_id INTEGER,
    hold_region TEXT,
    UNIQUE (request_id, n)
);
CREATE TABLE IF NOT EXISTS approvals (
    request_id INTEGER NOT NULL REFERENCES requests (id),
    approver TEXT NOT NULL,
    approver_key TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (request_id, approver_key)
);
CREATE TABLE IF NOT EXISTS history (
    request_id INTEGER NOT NULL REFERENCES requests (id),
    at TEXT NOT NULL,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hold_extensions (
    hold_region TEXT NOT NULL,
    hold_id INTEGER NOT NULL,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    until TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (hold_region, hold_id)
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    account TEXT NOT NULL,
    due TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (request_id, account)
);
"""


class LegalError(ValueError):
    """A legal-workflow step the records refuse; the message says why."""


class TransitionError(LegalError):
    """A lifecycle step that is not allowed from the request's current state."""


@dataclass(frozen=True)
class ItemRecord:
    """One demand item and the engine's decision on it."""

    id: str
    request_id: int
    account: str
    category: str
    decision: Decision
    hold_id: int | None
    hold_region: str | None

    @property
    def outcome(self) -> str:
        return self.decision.outcome


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    state: str
    actor: str
    note: str


@dataclass(frozen=True)
class RequestRecord:
    id: int
    reference: str
    served_on: str
    state: State
    request: LegalRequest
    ndo_until: date | None
    submitted_at: datetime
    reject_reason: str | None
    items: tuple[ItemRecord, ...]
    approvers: tuple[str, ...]
    history: tuple[HistoryEntry, ...]

    def ndo_in_force(self, today: date) -> bool:
        return self.ndo_until is not None and today < self.ndo_until

    def emergency(self) -> dict[str, object] | None:
        """For an emergency request, what is recorded and reported: the danger stated, who
        decided and when (the approval), and whether disclosure was voluntary."""
        if not self.request.emergency:
            return None
        approved = next((h for h in self.history if h.state == "approved"), None)
        return {
            "danger": self.request.danger,
            "voluntary": any(i.decision.voluntary for i in self.items),
            "decided_by": list(self.approvers) if approved else [],
            "decided_at": approved.at.isoformat() if approved else None,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "reference": self.reference,
            "served_on": self.served_on,
            "state": self.state,
            "instrument": self.request.instrument.type,
            "authority": self.request.authority.model_dump(mode="json"),
            "received": self.request.received.isoformat(),
            "nondisclosure_until": self.ndo_until.isoformat() if self.ndo_until else None,
            "submitted_at": self.submitted_at.isoformat(),
            "reject_reason": self.reject_reason,
            "emergency": self.emergency(),
            "approvers": list(self.approvers),
            "items": [
                {
                    "decision_id": i.id,
                    "account": i.account,
                    "category": i.category,
                    "outcome": i.outcome,
                    "hold_id": i.hold_id,
                    "hold_region": i.hold_region,
                    "decision": i.decision.to_json(),
                }
                for i in self.items
            ],
            "history": [
                {"at": h.at.isoformat(), "state": h.state, "actor": h.actor, "note": h.note}
                for h in self.history
            ],
        }


@dataclass(frozen=True)
class Notification:
    """A notice owed to an account holder about a request that touched their data."""

    id: int
    request_id: int
    reference: str
    account: str
    due: date
    sent_at: datetime | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def decision_id(request_id: int, n: int) -> str:
    """The id of one item's decision: request and item (kept in the private access record)."""
    return f"req{request_id}-item{n}"


def public_request_id(request_id: int) -> str:
    """The id the public transparency log names a legal request by: it tells which request a
    lawful key release served, nothing about whose account."""
    return f"req{request_id}"


class LegalRecords:
    """The SQLite database of legal requests (data_dir/legal.sqlite)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_durable(path)
        with self._db:
            self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def create(self, request: LegalRequest, decisions: list[Decision], actor: str) -> int:
        """Record a request and its decisions: received, then decided, in one transaction."""
        ndo = request.nondisclosure.until.isoformat() if request.nondisclosure else None
        with self._tx() as db:
            if db.execute(
                "SELECT 1 FROM requests WHERE reference = ? AND served_on = ?",
                (request.reference, request.instrument.served_on),
            ).fetchone():
                raise LegalError(
                    f"reference: request {request.reference!r} served on "
                    f"{request.instrument.served_on} is already recorded"
                )
            cursor = db.execute(
                "INSERT INTO requests (reference, served_on, state, request, ndo_until,"
                " submitted_at) VALUES (?, ?, 'received', ?, ?, ?)",
                (
                    request.reference,
                    request.instrument.served_on,
                    request.model_dump_json(by_alias=True),
                    ndo,
                    _now(),
                ),
            )
            request_id = int(cursor.lastrowid or 0)
            self._log(db, request_id, "received", actor, "request recorded")
            db.executemany(
                "INSERT INTO items (id, request_id, n, account, category, outcome, decision)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        decision_id(request_id, n),
                        request_id,
                        n,
                        d.item.account,
                        d.item.category,
                        d.outcome,
                        d.model_dump_json(),
                    )
                    for n, d in enumerate(decisions, 1)
                ],
            )
            self._move(db, request_id, "decided", actor, f"{len(decisions)} item(s) decided")
        return request_id

    @staticmethod
    def _log(db: sqlite3.Connection, request_id: int, state: str, actor: str, note: str) -> None:
        db.execute(
            "INSERT INTO history (request_id, at, state, actor, note) VALUES (?, ?, ?, ?, ?)",
            (request_id, _now(), state, actor, note),
        )

    def _move(
        self, db: sqlite3.Connection, request_id: int, to: State, actor: str, note: str
    ) -> None:
        row = db.execute("SELECT state FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise LegalError(f"no request {request_id}")
        current: State = row[0]
        if to not in TRANSITIONS[current]:
            allowed = ", ".join(TRANSITIONS[current]) or "nothing: it is closed"
            raise TransitionError(
                f"request {request_id} is {current}: it cannot become {to} (next: {allowed})"
            )
        db.execute("UPDATE requests SET state = ? WHERE id = ?", (to, request_id))
        self._log(db, request_id, to, actor, note)

    def transition(self, request_id: int, to: State, actor: str, note: str = "") -> None:
        with self._tx() as db:
            self._move(db, request_id, to, actor, note)

    def reject(self, request_id: int, actor: str, reason: str, refusal: str) -> None:
        """Rejected and refused in one transaction, so no request is left half rejected."""
        with self._tx() as db:
            db.execute("UPDATE requests SET reject_reason = ? WHERE id = ?", (reason, request_id))
            self._move(db, request_id, "rejected", actor, reason)
            self._move(db, request_id, "refused", actor, refusal)

    def add_approval(
        self,
        request_id: int,
        approver: str,
        needed: int,
        then: tuple[State, str] | None = None,
        note: str = "",
    ) -> tuple[str, ...]:
        """Record one approver; the same person (case-insensitively) twice is refused. With
        `needed` distinct approvers the request becomes approved (its history noting who, and
        `note`) and then `then`, if given, in the same transaction."""
        name = " ".join(approver.split())
        if not name:
            raise LegalError("--by: an approver must be named")
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO approvals (request_id, approver, approver_key, at)"
                    " VALUES (?, ?, ?, ?)",
                    (request_id, name, name.casefold(), _now()),
                )
            except sqlite3.IntegrityError:
                raise LegalError(
                    f"{name} has already approved request {request_id}: "
                    "a second, different person must approve"
                ) from None
            self._log(db, request_id, "in_review", name, "approved")
            approvers = self._approvers(db, request_id)
            if len(approvers) >= needed:
                self._move(db, request_id, "approved", name, " and ".join(approvers) + note)
                if then is not None:
                    self._move(db, request_id, then[0], name, then[1])
            return approvers

    @staticmethod
    def _approvers(db: sqlite3.Connection, request_id: int) -> tuple[str, ...]:
        rows = db.execute(
            "SELECT approver FROM approvals WHERE request_id = ? ORDER BY rowid", (request_id,)
        ).fetchall()
        return tuple(str(r[0]) for r in rows)

    def set_hold(self, item_id: str, region: str, hold_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE items SET hold_id = ?, hold_region = ? WHERE id = ?",
                (hold_id, region, item_id),
            )

    def hold_items(self, region: str, hold_id: int) -> list[ItemRecord]:
        """The items a hold was placed for (all of one request and account)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT request_id FROM items WHERE hold_region = ? AND hold_id = ?",
                (region, hold_id),
            ).fetchall()
        ids = {int(r[0]) for r in rows}
        return [i for rid in sorted(ids) for i in self.get(rid).items if i.hold_id == hold_id]

    def check_not_extended(self, region: str, hold_id: int) -> None:
        """Refuse a second extension of a hold, naming the first."""
        with self._lock:
            self._not_extended(self._db, region, hold_id)

    @staticmethod
    def _not_extended(db: sqlite3.Connection, region: str, hold_id: int) -> None:
        earlier = db.execute(
            "SELECT actor, at FROM hold_extensions WHERE hold_region = ? AND hold_id = ?",
            (region, hold_id),
        ).fetchone()
        if earlier:
            raise LegalError(
                f"hold {hold_id} in {region} was already extended by {earlier[0]} on"
                f" {earlier[1]}: the law allows one extension"
            )

    def extend_hold(
        self,
        request_id: int,
        region: str,
        hold_id: int,
        until: datetime,
        actor: str,
        note: str,
        apply: Callable[[], None],
    ) -> None:
        """Record the one extension a hold may have and `apply` it (to the store) in the same
        transaction: if the store refuses, nothing is recorded."""
        name = " ".join(actor.split())
        if not name:
            raise LegalError("--by: who extends the hold must be named")
        with self._tx() as db:
            self._not_extended(db, region, hold_id)
            db.execute(
                "INSERT INTO hold_extensions (hold_region, hold_id, request_id, until, actor, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (region, hold_id, request_id, until.isoformat(), name, _now()),
            )
            row = db.execute("SELECT state FROM requests WHERE id = ?", (request_id,)).fetchone()
            self._log(
                db,
                request_id,
                row[0],
                name,
                f"hold {hold_id} in {region} extended to"
                f" {until.isoformat()}" + (f": {note}" if note else ""),
            )
            apply()

    def get(self, request_id: int) -> RequestRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT id, reference, served_on, state, request, ndo_until, submitted_at,"
                " reject_reason FROM requests WHERE id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                raise LegalError(f"no request {request_id}")
            items = self._db.execute(
                "SELECT id, request_id, account, category, decision, hold_id, hold_region"
                " FROM items WHERE request_id = ? ORDER BY n",
                (request_id,),
            ).fetchall()
            history = self._db.execute(
                "SELECT at, state, actor, note FROM history WHERE request_id = ? ORDER BY rowid",
                (request_id,),
            ).fetchall()
            approvers = self._approvers(self._db, request_id)
        return RequestRecord(
            id=int(row[0]),
            reference=str(row[1]),
            served_on=str(row[2]),
            state=row[3],
            request=LegalRequest.model_validate_json(row[4], context={STORED: True}),
            ndo_until=date.fromisoformat(row[5]) if row[5] else None,
            submitted_at=datetime.fromisoformat(row[6]),
            reject_reason=row[7],
            items=tuple(
                ItemRecord(
                    id=str(i[0]),
                    request_id=int(i[1]),
                    account=str(i[2]),
                    category=str(i[3]),
                    decision=Decision.model_validate_json(i[4]),
                    hold_id=None if i[5] is None else int(i[5]),
                    hold_region=i[6],
                )
                for i in items
            ),
            approvers=approvers,
            history=tuple(
                HistoryEntry(datetime.fromisoformat(h[0]), str(h[1]), str(h[2]), str(h[3]))
                for h in history
            ),
        )

    def ids(self) -> list[int]:
        with self._lock:
            return [int(r[0]) for r in self._db.execute("SELECT id FROM requests ORDER BY id")]

    def close(self, request_id: int, actor: str, note: str, accounts: list[str], due: date) -> None:
        """Close the request and queue its user notices in one transaction."""
        with self._tx() as db:
            self._move(db, request_id, "closed", actor, note)
            db.executemany(
                "INSERT OR IGNORE INTO notifications (request_id, account, due) VALUES (?, ?, ?)",
                [(request_id, a, due.isoformat()) for a in accounts],
            )

    def notifications(self, due_by: date | None = None, unsent: bool = True) -> list[Notification]:
        query = (
            "SELECT n.id, n.request_id, r.reference, n.account, n.due, n.sent_at"
            " FROM notifications n JOIN requests r ON r.id = n.request_id WHERE 1 = 1"
        )
        params: list[str] = []
        if due_by is not None:
            query += " AND n.due <= ?"
            params.append(due_by.isoformat())
        if unsent:
            query += " AND n.sent_at IS NULL"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY n.due, n.id", params).fetchall()
        return [
            Notification(
                id=int(r[0]),
                request_id=int(r[1]),
                reference=str(r[2]),
                account=str(r[3]),
                due=date.fromisoformat(r[4]),
                sent_at=datetime.fromisoformat(r[5]) if r[5] else None,
            )
            for r in rows
        ]

    def mark_sent(self, notification_id: int) -> None:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE notifications SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
                (_now(), notification_id),
            )
            if cursor.rowcount != 1:
                raise LegalError(f"notification {notification_id} does not exist or was sent")

    def shutdown(self) -> None:
        self._db.close()
