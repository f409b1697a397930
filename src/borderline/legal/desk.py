"""The legal desk: intake, decision, review, holds, disclosure and notification of requests.

It composes the law engine (what may be done), the records (what was done, by whom) and each
region's store and vault (holds, key release). It never reads content except through a logged
vault release naming an approved decision (invariants 4 and 5).
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

from borderline.config import Config, CustodianSection, RegionSection
from borderline.directory import Directory
from borderline.law import Facts, LawEngine, LegalRequest, load_request
from borderline.legal.package import PackageWriter
from borderline.legal.records import (
    ItemRecord,
    LegalError,
    LegalRecords,
    Notification,
    RequestRecord,
    State,
    TransitionError,
    public_request_id,
)
from borderline.store import Hold, MailStore, MessageInfo
from borderline.vault import Justification, KeyReleaseDenied, Vault

# US 2703(f) preserves for 90 days; used only if an instrument names no preservation deadline.
DEFAULT_PRESERVATION = timedelta(days=90)
ACTIONABLE = ("disclose", "preserve")
CONTENT = "content"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text).strip("_") or "_"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class Site(Protocol):
    """What the desk needs of a region: its store (holds, messages), its vault (logged key
    releases, the package signature) and who holds its keys."""

    @property
    def id(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def store(self) -> MailStore: ...
    @property
    def vault(self) -> Vault: ...
    @property
    def custodian(self) -> CustodianSection: ...
    @property
    def section(self) -> RegionSection: ...


class Sites(Protocol):
    """What the desk needs of the cloud: where accounts are homed, the regions served here
    and the facts the law engine decides on."""

    @property
    def config(self) -> Config: ...
    @property
    def directory(self) -> Directory: ...
    @property
    def regions(self) -> Mapping[str, Site]: ...
    def region(self, region_id: str) -> Site: ...
    def facts(self) -> Facts: ...


class LegalDesk:
    """One cloud's legal workflow; records live in data_dir/legal.sqlite."""

    def __init__(self, cloud: Sites, engine: LawEngine | None = None) -> None:
        self.cloud = cloud
        self._engine = engine
        self.records = LegalRecords(cloud.config.cloud.data_dir / "legal.sqlite")

    @property
    def engine(self) -> LawEngine:
        if self._engine is None:
            self._engine = LawEngine.load()
        return self._engine

    def close_records(self) -> None:
        self.records.shutdown()

    def __enter__(self) -> LegalDesk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_records()

    # intake

    def submit_file(self, path: Path, actor: str = "intake") -> RequestRecord:
        return self.submit(load_request(path), actor)

    def submit(self, request: LegalRequest, actor: str = "intake") -> RequestRecord:
        """Decide every item under the law of the service date, record it, place holds."""
        decisions = self.engine.decide(request, self.cloud.facts())
        record = self.records.get(self.records.create(request, decisions, actor))
        self._preserve(record)
        return self.records.get(record.id)

    def _region(self, account: str) -> Site:
        home = self.cloud.directory.home(account)
        if home is None:
            raise LegalError(f"{account}: no such account")
        return self.cloud.region(home)

    def _preserve(self, record: RequestRecord) -> None:
        """Preservation discloses nothing and must not wait for review: hold on receipt."""
        by_account: dict[str, list[ItemRecord]] = {}
        for item in record.items:
            if item.outcome == "preserve":
                by_account.setdefault(item.account, []).append(item)
        for account, items in by_account.items():
            dues = [d.due for i in items for d in i.decision.deadlines]
            until = max(dues) if dues else record.request.served_at + DEFAULT_PRESERVATION
            region = self._region(account)
            hold_id = region.store.add_hold(
                account, f"{record.reference} (request {record.id})", until.timestamp()
            )
            for item in items:
                self.records.set_hold(item.id, region.id, hold_id)

    # review

    def _start_review(self, record: RequestRecord, actor: str) -> None:
        if record.state == "decided":
            self.records.transition(record.id, "in_review", actor, "review started")
        elif record.state != "in_review":
            raise TransitionError(
                f"request {record.id} is {record.state}: only a request awaiting review can be "
                "approved or rejected"
            )

    def approve(self, request_id: int, by: str) -> RequestRecord:
        """Record an approval. Any disclosure needs two different people; a request that only
        preserves needs one. The request becomes approved when enough have approved."""
        record = self.records.get(request_id)
        outcomes = {i.outcome for i in record.items}
        if not outcomes & set(ACTIONABLE):
            raise LegalError(
                f"request {request_id} has nothing to approve (no item may be disclosed or "
                "preserved): reject it with a reason"
            )
        self._start_review(record, by)
        note = _emergency_note(record)
        if "disclose" in outcomes:
            self.records.add_approval(request_id, by, needed=2, note=note)
        else:
            done: tuple[State, str] = ("fulfilled", "preservation holds placed on receipt")
            self.records.add_approval(request_id, by, needed=1, then=done, note=note)
        return self.records.get(request_id)

    def reject(self, request_id: int, by: str, reason: str) -> RequestRecord:
        """Reject the request and record the refusal sent to the authority, with its grounds."""
        reason = " ".join(reason.split())
        if not reason:
            raise LegalError("--reason: a rejection must give a reason")
        record = self.records.get(request_id)
        self._start_review(record, by)
        self.records.reject(request_id, by, reason, refusal_note(record))
        return self.records.get(request_id)

    def close(self, request_id: int, by: str, today: date | None = None) -> RequestRecord:
        """Close the request; queue a notice to every account whose data was disclosed or
        preserved, due now, or when the nondisclosure order lapses."""
        today = today or datetime.now(UTC).date()
        record = self.records.get(request_id)
        affected: list[str] = []
        if record.state == "fulfilled":
            affected = sorted({i.account for i in record.items if i.outcome in ACTIONABLE})
        due = record.ndo_until if record.ndo_in_force(today) and record.ndo_until else today
        note = f"{len(affected)} user notice(s) due {due}" if affected else "no user notices"
        self.records.close(request_id, by, note, affected, due)
        return self.records.get(request_id)

    def due_notifications(self, today: date) -> list[Notification]:
        """Notices the law now allows and that have not been sent."""
        return self.records.notifications(due_by=today)

    def mark_notified(self, notification_id: int) -> None:
        self.records.mark_sent(notification_id)

    # queries

    def get(self, request_id: int) -> RequestRecord:
        return self.records.get(request_id)

    def requests(self) -> list[RequestRecord]:
        return [self.records.get(i) for i in self.records.ids()]

    def holds(self) -> list[tuple[str, Hold]]:
        """Active holds in every region this process serves."""
        return [
            (rid, h) for rid, region in self.cloud.regions.items() for h in region.store.holds()
        ]

    def extend_hold(
        self,
        hold_id: int,
        by: str,
        region_id: str | None = None,
        until: datetime | None = None,
        note: str = "",
    ) -> tuple[str, datetime, datetime]:
        """Extend a live preservation hold once, on the authority's renewed request, up to the
        legal maximum (the instrument's preservation deadline plus its extension: 90 + 90 days
        for 2703(f), 60 + 30 for an EPOC-PR); `until` defaults to that maximum. Returns the
        region, the new end and the maximum."""
        matches = [
            (rid, h) for rid, h in self.holds() if h.id == hold_id and region_id in (None, rid)
        ]
        if not matches:
            where = f" in {region_id}" if region_id else ""
            raise LegalError(f"no live hold {hold_id}{where} (see `hold list`)")
        if len(matches) > 1:
            regions = ", ".join(rid for rid, _ in matches)
            raise LegalError(f"hold {hold_id} exists in {regions}: name one with --region")
        ((rid, hold),) = matches
        items = self.records.hold_items(rid, hold_id)
        if not items:
            raise LegalError(f"hold {hold_id} in {rid} was not placed by a legal request")
        self.records.check_not_extended(rid, hold_id)
        rules = [d for i in items for d in i.decision.deadlines if d.extension_days]
        if not rules:
            raise LegalError(f"hold {hold_id} in {rid}: its instrument provides no extension")
        rule = max(rules, key=lambda d: d.due + timedelta(days=d.extension_days or 0))
        limit = rule.due + timedelta(days=rule.extension_days or 0)
        end = until or limit
        if end > limit:
            raise LegalError(
                f"--until {end.isoformat()}: beyond the legal maximum {limit.isoformat()}"
                f" ({rule.label}; {rule.citation})"
            )
        if end.timestamp() <= hold.until:
            current = datetime.fromtimestamp(hold.until, UTC).isoformat()
            raise LegalError(f"--until {end.isoformat()}: not later than the hold's end, {current}")
        store = self.cloud.region(rid).store
        self.records.extend_hold(
            items[0].request_id,
            rid,
            hold_id,
            end,
            by,
            note,
            lambda: store.extend_hold(hold_id, end.timestamp()),
        )
        return rid, end, limit

    # disclosure

    def export(
        self,
        request_id: int,
        out: Path,
        now: datetime | None = None,
        enforcing_state_confirmed: bool = False,
    ) -> dict[str, Path]:
        """Write one signed package per region for the approved disclose items; the request
        becomes fulfilled. Returns the package folder of each region.

        While an e-Evidence enforcing state may still raise grounds for refusal, nothing is
        transferred unless it has confirmed (`enforcing_state_confirmed`)."""
        now = now or datetime.now(UTC)
        today = now.date()
        record = self.records.get(request_id)
        if record.state != "approved":
            raise TransitionError(
                f"request {request_id} is {record.state}: only an approved request is exported"
            )
        waiting = [
            (item, o)
            for item in record.items
            if item.outcome == "disclose"
            for o in item.decision.obligations
            if o.holds_transfer and o.due is not None and o.due > now
        ]
        if waiting and not enforcing_state_confirmed:
            item, obligation = waiting[0]
            raise LegalError(
                f"{item.id}: wait until {obligation.due.isoformat() if obligation.due else ''}"
                f" ({obligation.policy_id}: the enforcing state may refuse), or record that it"
                " confirmed (--enforcing-state-confirmed)"
            )
        groups: dict[str, list[ItemRecord]] = {}
        for item in record.items:
            if item.outcome == "disclose":
                groups.setdefault(self._region(item.account).id, []).append(item)
        targets = {
            rid: out / f"request-{record.id}-{_slug(record.reference)}-{rid}" for rid in groups
        }
        for target in targets.values():
            if target.exists():
                raise FileExistsError(f"{target} exists: choose another --out or remove it")
        writers = {rid: PackageWriter(target) for rid, target in targets.items()}
        folders: dict[str, Path] = {}
        try:
            for rid, items in groups.items():
                folders[rid] = _build(self.cloud.region(rid), record, items, writers[rid], today)
        except KeyReleaseDenied as exc:
            raise LegalError(f"the vault refused the key release: {exc}") from exc
        finally:
            for writer in writers.values():
                if not writer.final.exists():
                    writer.abandon()
        confirmed = "; the enforcing state confirmed (Art. 8)" if waiting else ""
        self.records.transition(
            request_id,
            "fulfilled",
            ", ".join(record.approvers),
            "disclosed: " + ", ".join(str(f) for f in folders.values()) + confirmed,
        )
        return folders


def refusal_note(record: RequestRecord) -> str:
    """What the refusal tells the authority, item by item: the ground and the lawful route (or
    that none exists)."""
    parts = []
    for item in record.items:
        d = item.decision
        why = " ".join(filter(None, (d.ground, d.route and f"Lawful route: {d.route}")))
        parts.append(f"{item.account}/{item.category}: {why or d.outcome}")
    return "refusal issued; " + "; ".join(parts)


def _emergency_note(record: RequestRecord) -> str:
    """What the approval records for an emergency: the approvers decided, on the danger stated."""
    request = record.request
    if not request.emergency:
        return ""
    kind = "voluntary " if any(i.decision.voluntary for i in record.items) else ""
    return f"; {kind}emergency disclosure decided on the danger stated: {request.danger}"


def _in_scope(request: LegalRequest, info: MessageInfo, until: datetime | None) -> bool:
    """In the request's period, and (for stored-data orders) existing when it was served."""
    scope = request.scope
    if scope.start and info.internal_date < _midnight(scope.start).timestamp():
        return False
    if until and info.internal_date > until.timestamp():
        return False
    end = scope.to
    return not (end and info.internal_date >= _midnight(end + timedelta(days=1)).timestamp())


def _messages(
    store: MailStore, request: LegalRequest, item: ItemRecord
) -> Iterator[tuple[str, MessageInfo]]:
    """Every message of the item's account in its period, including those a user expunged but
    a hold retains."""
    until = item.decision.data_until
    for box in sorted(store.mailboxes(item.account), key=lambda b: b.name):
        for info in store.messages(box.id):
            if _in_scope(request, info, until):
                yield box.name, info
    for info in store.retained(item.account):
        if _in_scope(request, info, until):
            yield "(retained)", info


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _build(
    region: Site,
    record: RequestRecord,
    items: list[ItemRecord],
    writer: PackageWriter,
    today: date,
) -> Path:
    request = record.request
    principal = ", ".join(record.approvers)
    sealed_until = record.ndo_until if record.ndo_in_force(today) else None
    entries: list[dict[str, Any]] = []
    for item in items:
        found = list(_messages(region.store, request, item))
        entry: dict[str, Any] = {
            "decision_id": item.id,
            "account": item.account,
            "category": item.category,
            "outcome": item.outcome,
            "policy_ids": item.decision.policy_ids,
            "citations": item.decision.citations,
            "messages": len(found),
            "key_release": None,
        }
        base = f"{_slug(item.account)}/{item.category}"
        if item.category == CONTENT:
            if found:
                key = region.vault.release(
                    item.account,
                    Justification.THIRD_PARTY_DATA_REQUEST,
                    principal,
                    decision_id=item.id,
                    request_id=public_request_id(record.id),
                    sealed_until=sealed_until,
                )
                entry["key_release"] = {
                    "log_index": key.log_index,
                    "log_origin": region.origin,
                    "sealed_until": sealed_until.isoformat() if sealed_until else None,
                }
                box = mailbox.mbox(writer.path(f"{base}/messages.mbox"), create=True)
                try:
                    for n, (name, info) in enumerate(found, 1):
                        eml = key.decrypt(region.store.blob(info.blob_id))
                        writer.write(f"{base}/{n:06d}-{_slug(name)}-{info.uid}.eml", eml)
                        box.add(eml)
                finally:
                    box.close()
        else:
            writer.write_json(f"{base}.json", _metadata(region, item, found))
        entries.append(entry)
    header = {
        "request": {
            "id": record.id,
            "reference": record.reference,
            "authority": request.authority.model_dump(mode="json"),
            "instrument": request.instrument.model_dump(mode="json"),
            "scope": request.scope.model_dump(mode="json", by_alias=True),
            "nondisclosure_until": record.ndo_until.isoformat() if record.ndo_until else None,
            "emergency": record.emergency(),
        },
        "region": region.id,
        "custodian": region.custodian.model_dump(mode="json"),
        "approved_by": list(record.approvers),
        "not_disclosed": [
            {
                "decision_id": i.id,
                "account": i.account,
                "category": i.category,
                "outcome": i.outcome,
                "ground": i.decision.ground,
                "route": i.decision.route,
            }
            for i in record.items
            if i.outcome != "disclose"
        ],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "items": entries,
    }
    return writer.seal(header, region.vault.signing_key)


def _metadata(
    region: Site, item: ItemRecord, found: list[tuple[str, MessageInfo]]
) -> dict[str, Any]:
    """Non-content records, read from the store's metadata without any key release."""
    account = {
        "address": item.account,
        "home_region": region.id,
        "region_location": region.section.location,
        "custodian": region.custodian.id,
    }
    if item.category in ("subscriber", "identification"):
        return {"category": item.category, "account": account}
    return {
        "category": item.category,
        "account": account,
        "count": len(found),
        "total_size": sum(info.size for _, info in found),
        "messages": [
            {
                "mailbox": name,
                "uid": info.uid,
                "internal_date": _iso(info.internal_date),
                "size": info.size,
            }
            for name, info in found
        ],
    }
