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
from typing import Any, Literal

from borderline.durable_sqlite import open_durable
from borderline.law import Decision, LegalRequest
from borderline.law.request import STORED
from borderline.staff import Signature

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
CREATE TABLE IF NOT EXISTS signed_actions (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    action TEXT NOT NULL,
    staff_id INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    at TEXT NOT NULL,
    statement TEXT NOT NULL,
    signature BLOB NOT NULL,
    public_key BLOB NOT NULL,
    log_region TEXT,
    log_index INTEGER
);
CREATE TABLE IF NOT EXISTS staff_approvals (
    request_id INTEGER NOT NULL REFERENCES requests (id),
    staff_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    action_id INTEGER NOT NULL REFERENCES signed_actions (id),
    PRIMARY KEY (request_id, staff_id),
    UNIQUE (request_id, role)
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


class NotFoundError(LegalError):
    """No such request, notice or hold."""


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
class SignedAction:
    """One step a person took, as they signed it, and where the region logged it."""

    id: int
    request_id: int
    kind: str
    actor: str
    at: datetime
    signature: Signature
    log_region: str | None
    log_index: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.kind,
            "actor": self.actor,
            "at": self.at.isoformat(),
            **self.signature.to_json(),
            "log_region": self.log_region,
            "log_index": self.log_index,
        }


# What a step is signed with: its kind and the person's signature.
Signed = tuple[str, Signature]


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
    approvals: tuple[SignedAction, ...]
    history: tuple[HistoryEntry, ...]
    actions: tuple[SignedAction, ...]

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who approved, as records name people: name and staff account."""
        return tuple(a.actor for a in self.approvals)

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
            "approvals": [a.to_json() for a in self.approvals],
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
            "actions": [a.to_json() for a in self.actions],
        }


@dataclass(frozen=True)
class Notification:
    """A notice owed to an account holder about a request that touched their data."""

    id: int
    request_id: int
    reference: str
    served_on: str
    account: str
    due: date
    sent_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "request": self.request_id,
            "reference": self.reference,
            "account": self.account,
            "due": self.due.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


# SQLite integers are 64-bit signed: a larger id names nothing (and must not crash a query).
MAX_ID = 2**63 - 1


def _known_id(value: int, what: str) -> int:
    if not 0 < value <= MAX_ID:
        raise NotFoundError(f"no {what} {value}")
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def decision_id(request_id: int, n: int) -> str:
    """The id of one item's decision: request and item (kept in the private access record)."""
    return f"req{request_id}-item{n}"


def public_request_id(request_id: int) -> str:
    """The id the public transparency log names a legal request by: it tells which request a
    lawful key release served, nothing about whose account."""
    return f"req{request_id}"


_ACTION_COLUMNS = (
    "id, request_id, action, actor, at, staff_id, role, statement, signature, public_key,"
    " log_region, log_index"
)


def _action(row: tuple[Any, ...]) -> SignedAction:
    return SignedAction(
        id=int(row[0]),
        request_id=int(row[1]),
        kind=str(row[2]),
        actor=str(row[3]),
        at=datetime.fromisoformat(row[4]),
        signature=Signature(
            int(row[5]), str(row[6]), str(row[7]).encode(), bytes(row[8]), bytes(row[9])
        ),
        log_region=row[10],
        log_index=None if row[11] is None else int(row[11]),
    )


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

    def create(
        self,
        request: LegalRequest,
        decisions: list[Decision],
        actor: str,
        sign: Callable[[int], list[Signed]],
    ) -> tuple[int, list[int]]:
        """Record a request and its decisions: received, then decided, in one transaction,
        with the intake's signatures (`sign` is given the new request's id)."""
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
            actions = [self._sign(db, request_id, actor, s) for s in sign(request_id)]
        return request_id, actions

    @staticmethod
    def _sign(db: sqlite3.Connection, request_id: int, actor: str, signed: Signed) -> int:
        kind, signature = signed
        cursor = db.execute(
            "INSERT INTO signed_actions (request_id, action, staff_id, actor, role, at,"
            " statement, signature, public_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request_id,
                kind,
                signature.staff_id,
                actor,
                signature.role,
                _now(),
                signature.body.decode(),
                signature.signature,
                signature.public_key,
            ),
        )
        return int(cursor.lastrowid or 0)

    def set_logged(self, action_id: int, region: str, log_index: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE signed_actions SET log_region = ?, log_index = ? WHERE id = ?",
                (region, log_index, action_id),
            )

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
            raise NotFoundError(f"no request {request_id}")
        current: State = row[0]
        if to not in TRANSITIONS[current]:
            allowed = ", ".join(TRANSITIONS[current]) or "nothing: it is closed"
            raise TransitionError(
                f"request {request_id} is {current}: it cannot become {to} (next: {allowed})"
            )
        db.execute("UPDATE requests SET state = ? WHERE id = ?", (to, request_id))
        self._log(db, request_id, to, actor, note)

    def transition(
        self,
        request_id: int,
        to: State,
        actor: str,
        note: str = "",
        signed: Signed | None = None,
    ) -> int | None:
        """Move the request on; with `signed`, record the signature in the same transaction
        and return its action id."""
        with self._tx() as db:
            self._move(db, request_id, to, actor, note)
            return None if signed is None else self._sign(db, request_id, actor, signed)

    def reject(self, request_id: int, actor: str, reason: str, refusal: str, signed: Signed) -> int:
        """Rejected and refused in one transaction, so no request is left half rejected."""
        with self._tx() as db:
            db.execute("UPDATE requests SET reject_reason = ? WHERE id = ?", (reason, request_id))
            self._move(db, request_id, "rejected", actor, reason)
            self._move(db, request_id, "refused", actor, refusal)
            return self._sign(db, request_id, actor, signed)

    def add_approval(
        self,
        request_id: int,
        actor: str,
        signed: Signed,
        roles_needed: frozenset[str],
        then: tuple[State, str] | None = None,
        note: str = "",
    ) -> int:
        """Record one person's signed approval. A person approves once, and each reviewer
        role once: when every role in `roles_needed` has approved (at least one, if empty)
        the request becomes approved (its history noting who, and `note`) and then `then`,
        if given, in the same transaction."""
        signature = signed[1]
        with self._tx() as db:
            if db.execute("SELECT 1 FROM requests WHERE id = ?", (request_id,)).fetchone() is None:
                raise NotFoundError(f"no request {request_id}")
            earlier = db.execute(
                "SELECT a.staff_id, s.actor, a.role FROM staff_approvals a"
                " JOIN signed_actions s ON s.id = a.action_id WHERE a.request_id = ?"
                " AND (a.staff_id = ? OR a.role = ?)",
                (request_id, signature.staff_id, signature.role),
            ).fetchone()
            if earlier is not None and earlier[0] == signature.staff_id:
                raise LegalError(
                    f"{earlier[1]} has already approved request {request_id}: "
                    "a second, different person must approve"
                )
            if earlier is not None:
                other = sorted(roles_needed - {signature.role})
                raise LegalError(
                    f"request {request_id} already has the {earlier[2]} approval of {earlier[1]}:"
                    f" the second must come from a {' or '.join(other) or 'different role'}"
                )
            action_id = self._sign(db, request_id, actor, signed)
            db.execute(
                "INSERT INTO staff_approvals (request_id, staff_id, role, action_id)"
                " VALUES (?, ?, ?, ?)",
                (request_id, signature.staff_id, signature.role, action_id),
            )
            self._log(db, request_id, "in_review", actor, f"approved as {signature.role}")
            approvals = self._approvals(db, request_id)
            roles = {a.signature.role for a in approvals}
            if roles >= roles_needed:
                names = " and ".join(a.actor for a in approvals)
                self._move(db, request_id, "approved", actor, names + note)
                if then is not None:
                    self._move(db, request_id, then[0], actor, then[1])
            return action_id

    @staticmethod
    def _approvals(db: sqlite3.Connection, request_id: int) -> tuple[SignedAction, ...]:
        rows = db.execute(
            f"SELECT {_ACTION_COLUMNS} FROM signed_actions WHERE id IN"
            " (SELECT action_id FROM staff_approvals WHERE request_id = ?) ORDER BY id",
            (request_id,),
        ).fetchall()
        return tuple(_action(r) for r in rows)

    def set_hold(self, item_id: str, region: str, hold_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE items SET hold_id = ?, hold_region = ? WHERE id = ?",
                (hold_id, region, item_id),
            )

    def hold_items(self, region: str, hold_id: int) -> list[ItemRecord]:
        """The items a hold was placed for (all of one request and account)."""
        _known_id(hold_id, "hold")
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

    def change_hold(
        self,
        request_id: int,
        region: str,
        hold_id: int,
        until: datetime | None,
        actor: str,
        note: str,
        apply: Callable[[], None],
        signed: Signed,
    ) -> int:
        """Record a hold's one extension (to `until`) or its release (`until` None) and
        `apply` it to the store in the same transaction: if the store refuses, nothing is
        recorded."""
        with self._tx() as db:
            if until is not None:
                self._not_extended(db, region, hold_id)
                db.execute(
                    "INSERT INTO hold_extensions (hold_region, hold_id, request_id, until, actor,"
                    " at) VALUES (?, ?, ?, ?, ?, ?)",
                    (region, hold_id, request_id, until.isoformat(), actor, _now()),
                )
            row = db.execute("SELECT state FROM requests WHERE id = ?", (request_id,)).fetchone()
            change = f"extended to {until.isoformat()}" if until else "released"
            self._log(
                db,
                request_id,
                row[0],
                actor,
                f"hold {hold_id} in {region} {change}" + (f": {note}" if note else ""),
            )
            action_id = self._sign(db, request_id, actor, signed)
            apply()
            return action_id

    def get(self, request_id: int) -> RequestRecord:
        _known_id(request_id, "request")
        with self._lock:
            row = self._db.execute(
                "SELECT id, reference, served_on, state, request, ndo_until, submitted_at,"
                " reject_reason FROM requests WHERE id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no request {request_id}")
            items = self._db.execute(
                "SELECT id, request_id, account, category, decision, hold_id, hold_region"
                " FROM items WHERE request_id = ? ORDER BY n",
                (request_id,),
            ).fetchall()
            history = self._db.execute(
                "SELECT at, state, actor, note FROM history WHERE request_id = ? ORDER BY rowid",
                (request_id,),
            ).fetchall()
            approvals = self._approvals(self._db, request_id)
            actions = self._db.execute(
                f"SELECT {_ACTION_COLUMNS} FROM signed_actions WHERE request_id = ? ORDER BY id",
                (request_id,),
            ).fetchall()
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
            approvals=approvals,
            history=tuple(
                HistoryEntry(datetime.fromisoformat(h[0]), str(h[1]), str(h[2]), str(h[3]))
                for h in history
            ),
            actions=tuple(_action(a) for a in actions),
        )

    def ids(self, served_on: str | None = None) -> list[int]:
        query, params = "SELECT id FROM requests", []
        if served_on is not None:
            query, params = query + " WHERE served_on = ?", [served_on]
        with self._lock:
            return [int(r[0]) for r in self._db.execute(query + " ORDER BY id", params)]

    def close(
        self,
        request_id: int,
        actor: str,
        note: str,
        accounts: list[str],
        due: date,
        signed: Signed,
    ) -> int:
        """Close the request and queue its user notices in one transaction."""
        with self._tx() as db:
            self._move(db, request_id, "closed", actor, note)
            db.executemany(
                "INSERT OR IGNORE INTO notifications (request_id, account, due) VALUES (?, ?, ?)",
                [(request_id, a, due.isoformat()) for a in accounts],
            )
            return self._sign(db, request_id, actor, signed)

    def notifications(
        self,
        due_by: date | None = None,
        unsent: bool = True,
        served_on: str | None = None,
        notification_id: int | None = None,
    ) -> list[Notification]:
        query = (
            "SELECT n.id, n.request_id, r.reference, r.served_on, n.account, n.due, n.sent_at"
            " FROM notifications n JOIN requests r ON r.id = n.request_id WHERE 1 = 1"
        )
        params: list[str | int] = []
        if due_by is not None:
            query += " AND n.due <= ?"
            params.append(due_by.isoformat())
        if unsent:
            query += " AND n.sent_at IS NULL"
        if served_on is not None:
            query += " AND r.served_on = ?"
            params.append(served_on)
        if notification_id is not None:
            _known_id(notification_id, "user notice")
            query += " AND n.id = ?"
            params.append(notification_id)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY n.due, n.id", params).fetchall()
        return [
            Notification(
                id=int(r[0]),
                request_id=int(r[1]),
                reference=str(r[2]),
                served_on=str(r[3]),
                account=str(r[4]),
                due=date.fromisoformat(r[5]),
                sent_at=datetime.fromisoformat(r[6]) if r[6] else None,
            )
            for r in rows
        ]

    def mark_sent(self, notification: Notification, actor: str, signed: Signed) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE notifications SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
                (_now(), notification.id),
            )
            if cursor.rowcount != 1:
                raise LegalError(f"notification {notification.id} does not exist or was sent")
            row = db.execute(
                "SELECT state FROM requests WHERE id = ?", (notification.request_id,)
            ).fetchone()
            self._log(
                db,
                notification.request_id,
                row[0],
                actor,
                f"user notice {notification.id} to {notification.account} sent",
            )
            return self._sign(db, notification.request_id, actor, signed)

    def shutdown(self) -> None:
        self._db.close()
