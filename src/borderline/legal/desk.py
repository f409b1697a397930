"""The legal desk: intake, decision, review, holds, disclosure and notification of requests.

It composes the law engine (what may be done), the records (what was done, by whom) and each
region's store and vault (holds, key release). It never reads content except through a logged
vault release naming an approved decision (invariants 4 and 5).
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

from borderline.config import Config, CustodianSection, RegionSection
from borderline.directory import Directory
from borderline.law import Facts, LawEngine, LegalRequest, load_request
from borderline.legal.actions import ActionKind, StaffAction, StaffActionLog
from borderline.legal.package import PackageWriter, sha256_file
from borderline.legal.records import (
    ItemRecord,
    LegalError,
    LegalRecords,
    NotFoundError,
    Notification,
    RequestRecord,
    Signed,
    State,
    TransitionError,
    decision_id,
    public_request_id,
)
from borderline.staff import REVIEWER_ROLES, PermissionDenied, Role, Signer
from borderline.store import Hold, MailStore, MessageInfo
from borderline.vault import Justification, KeyReleaseDenied, Vault

# US 2703(f) preserves for 90 days; used only if an instrument names no preservation deadline.
DEFAULT_PRESERVATION = timedelta(days=90)
ACTIONABLE = ("disclose", "preserve")
CONTENT = "content"
# What the public log names as the principal of a lawful key release: the desk, never a person
# (the people are in the package manifest and, as commitments, on the log).
PRINCIPAL = "legal desk (two-person approval)"
REVIEWERS = (Role.LEGAL_REVIEWER, Role.SECURITY_REVIEWER)
# Who may take each step (everyone with a role may read their custodian's requests).
MAY: dict[ActionKind, tuple[str, tuple[Role, ...]]] = {
    ActionKind.SUBMIT: ("submit requests", (Role.INTAKE,)),
    ActionKind.APPROVE: ("approve requests", REVIEWERS),
    ActionKind.REJECT: ("reject requests", REVIEWERS),
    ActionKind.EXPORT: ("export disclosures", REVIEWERS),
    ActionKind.CLOSE: ("close requests", REVIEWERS),
    ActionKind.NOTIFY: ("record user notices", (Role.INTAKE, Role.LEGAL_REVIEWER)),
    ActionKind.HOLD_EXTEND: ("extend holds", (Role.LEGAL_REVIEWER,)),
    ActionKind.HOLD_RELEASE: ("release holds", (Role.LEGAL_REVIEWER,)),
}


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
    """One cloud's legal workflow; records live in data_dir/legal.sqlite. Every step is taken
    by an authenticated person (a `Signer`) in a role that allows it, for the custodian that
    employs them; it is signed by them, recorded with who and when, and logged on the
    region's transparency log without naming them (`StaffActionLog`)."""

    def __init__(self, cloud: Sites, engine: LawEngine | None = None) -> None:
        self.cloud = cloud
        self._engine = engine
        self.records = LegalRecords(cloud.config.cloud.data_dir / "legal.sqlite")
        self._action_logs: dict[str, StaffActionLog] = {}

    @property
    def engine(self) -> LawEngine:
        if self._engine is None:
            self._engine = LawEngine.load()
        return self._engine

    def close_records(self) -> None:
        self.records.shutdown()
        for log in self._action_logs.values():
            log.close()

    def __enter__(self) -> LegalDesk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_records()

    # who may do what, and the record of it

    @staticmethod
    def _permit(signer: Signer, kind: ActionKind, served_on: str, what: str) -> str:
        """Check the person's role and employer; returns the role they act in."""
        words, roles = MAY[kind]
        signer.require(words, *roles)
        _for_custodian(signer, served_on, what)
        return next(r for r in roles if r in signer.member.roles).value

    def action_log(self, region_id: str) -> StaffActionLog:
        log = self._action_logs.get(region_id)
        if log is None:
            site = self.cloud.region(region_id)
            private = self.cloud.config.cloud.data_dir / region_id / "staff" / "actions.sqlite"
            log = self._action_logs[region_id] = StaffActionLog(
                region_id, site.vault.access_log, private
            )
        return log

    def _publish(self, signer: Signer, request_id: int, signed: Signed, action_id: int) -> None:
        """Log a recorded step on the transparency log of the region holding the person's
        key (a region of their employer)."""
        region = signer.member.key_region
        action = StaffAction(ActionKind(signed[0]), request_id, signed[1], datetime.now(UTC))
        self.records.set_logged(action_id, region, self.action_log(region).append(action))

    @staticmethod
    def _signed(
        signer: Signer, kind: ActionKind, record: RequestRecord, role: str, **extra: Any
    ) -> Signed:
        statement = {
            "action": kind.value,
            "request": _head(record.id, record.reference, record.served_on),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **extra,
        }
        return kind.value, signer.sign(statement, role)

    # intake

    def submit_file(self, path: Path, signer: Signer) -> RequestRecord:
        return self.submit(load_request(path), signer)

    def submit(self, request: LegalRequest, signer: Signer) -> RequestRecord:
        """Decide every item under the law of the service date, record it, place holds. The
        intake signs what was received and what the engine decided."""
        role = self._permit(signer, ActionKind.SUBMIT, request.instrument.served_on, "request")
        decisions = self.engine.decide(request, self.cloud.facts())
        received = hashlib.sha256(request.model_dump_json(by_alias=True).encode()).hexdigest()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        signed: list[Signed] = []

        def sign(request_id: int) -> list[Signed]:
            head = _head(request_id, request.reference, request.instrument.served_on)
            decided = [
                _item(decision_id(request_id, n), d.item.account, d.item.category, d.outcome)
                for n, d in enumerate(decisions, 1)
            ]
            signed[:] = [
                (
                    ActionKind.SUBMIT.value,
                    signer.sign(
                        {"action": "submit", "request": head, "sha256": received, "at": now},
                        role,
                    ),
                ),
                (
                    ActionKind.DECIDE.value,
                    signer.sign(
                        {"action": "decide", "request": head, "decisions": decided, "at": now},
                        role,
                    ),
                ),
            ]
            return signed

        request_id, action_ids = self.records.create(request, decisions, signer.member.label, sign)
        for pair, action_id in zip(signed, action_ids, strict=True):
            self._publish(signer, request_id, pair, action_id)
        self._preserve(self.records.get(request_id))
        return self.records.get(request_id)

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

    def approve(self, request_id: int, signer: Signer) -> RequestRecord:
        """Record a signed approval. Any disclosure needs two different people, a legal
        reviewer and a security reviewer; a request that only preserves needs one reviewer.
        The request becomes approved when enough have approved."""
        record = self.records.get(request_id)
        role = self._permit(signer, ActionKind.APPROVE, record.served_on, f"request {request_id}")
        outcomes = {i.outcome for i in record.items}
        if not outcomes & set(ACTIONABLE):
            raise LegalError(
                f"request {request_id} has nothing to approve (no item may be disclosed or "
                "preserved): reject it with a reason"
            )
        self._start_review(record, signer.member.label)
        approved = [
            _item(i.id, i.account, i.category, i.outcome)
            for i in record.items
            if i.outcome in ACTIONABLE
        ]
        signed = self._signed(signer, ActionKind.APPROVE, record, role, decisions=approved)
        note = _emergency_note(record)
        if "disclose" in outcomes:
            action_id = self.records.add_approval(
                request_id, signer.member.label, signed, REVIEWER_ROLES, note=note
            )
        else:
            done: tuple[State, str] = ("fulfilled", "preservation holds placed on receipt")
            action_id = self.records.add_approval(
                request_id, signer.member.label, signed, frozenset(), then=done, note=note
            )
        self._publish(signer, request_id, signed, action_id)
        return self.records.get(request_id)

    def reject(self, request_id: int, signer: Signer, reason: str) -> RequestRecord:
        """Reject the request and record the refusal sent to the authority, with its grounds."""
        reason = " ".join(reason.split())
        if not reason:
            raise LegalError("--reason: a rejection must give a reason")
        record = self.records.get(request_id)
        role = self._permit(signer, ActionKind.REJECT, record.served_on, f"request {request_id}")
        self._start_review(record, signer.member.label)
        signed = self._signed(signer, ActionKind.REJECT, record, role, reason=reason)
        action_id = self.records.reject(
            request_id, signer.member.label, reason, refusal_note(record), signed
        )
        self._publish(signer, request_id, signed, action_id)
        return self.records.get(request_id)

    def close(self, request_id: int, signer: Signer, today: date | None = None) -> RequestRecord:
        """Close the request; queue a notice to every account whose data was disclosed or
        preserved, due now, or when the nondisclosure order lapses."""
        today = today or datetime.now(UTC).date()
        record = self.records.get(request_id)
        role = self._permit(signer, ActionKind.CLOSE, record.served_on, f"request {request_id}")
        affected: list[str] = []
        if record.state == "fulfilled":
            affected = sorted({i.account for i in record.items if i.outcome in ACTIONABLE})
        due = record.ndo_until if record.ndo_in_force(today) and record.ndo_until else today
        note = f"{len(affected)} user notice(s) due {due}" if affected else "no user notices"
        signed = self._signed(signer, ActionKind.CLOSE, record, role, notices=len(affected))
        action_id = self.records.close(request_id, signer.member.label, note, affected, due, signed)
        self._publish(signer, request_id, signed, action_id)
        return self.records.get(request_id)

    def due_notifications(self, today: date, viewer: Signer | None = None) -> list[Notification]:
        """Notices the law now allows and that have not been sent."""
        return self.records.notifications(due_by=today, served_on=_custodian(viewer))

    def notifications(self, viewer: Signer | None = None) -> list[Notification]:
        """Every notice, sent or not."""
        return self.records.notifications(unsent=False, served_on=_custodian(viewer))

    def mark_notified(self, notification_id: int, signer: Signer) -> Notification:
        """Record (signed) that the notice was sent to the account holder."""
        found = self.records.notifications(unsent=False, notification_id=notification_id)
        if not found:
            raise NotFoundError(f"no user notice {notification_id} (see `request notifications`)")
        notice = found[0]
        record = self.records.get(notice.request_id)
        role = self._permit(signer, ActionKind.NOTIFY, record.served_on, f"notice {notice.id}")
        signed = self._signed(
            signer, ActionKind.NOTIFY, record, role, notice=notice.id, account=notice.account
        )
        action_id = self.records.mark_sent(notice, signer.member.label, signed)
        self._publish(signer, record.id, signed, action_id)
        return self.records.notifications(unsent=False, notification_id=notification_id)[0]

    # queries

    def get(self, request_id: int) -> RequestRecord:
        return self.records.get(request_id)

    def view(self, request_id: int, viewer: Signer) -> RequestRecord:
        """A request as its custodian's staff may see it; another custodian's is refused."""
        record = self.records.get(request_id)
        _for_custodian(viewer, record.served_on, f"request {request_id}")
        return record

    def requests(self, viewer: Signer | None = None) -> list[RequestRecord]:
        return [self.records.get(i) for i in self.records.ids(served_on=_custodian(viewer))]

    def holds(self, viewer: Signer | None = None) -> list[tuple[str, Hold]]:
        """Active holds in every region this process serves (of the viewer's custodian)."""
        custodian = _custodian(viewer)
        return [
            (rid, h)
            for rid, region in self.cloud.regions.items()
            if custodian in (None, region.custodian.id)
            for h in region.store.holds()
        ]

    def _live_hold(
        self, hold_id: int, region_id: str | None, signer: Signer
    ) -> tuple[str, Hold, list[ItemRecord]]:
        matches = [
            (rid, h)
            for rid, h in self.holds(signer)
            if h.id == hold_id and region_id in (None, rid)
        ]
        if not matches:
            where = f" in {region_id}" if region_id else ""
            raise NotFoundError(f"no live hold {hold_id}{where} (see `hold list`)")
        if len(matches) > 1:
            regions = ", ".join(rid for rid, _ in matches)
            raise LegalError(f"hold {hold_id} exists in {regions}: name one with --region")
        ((rid, hold),) = matches
        items = self.records.hold_items(rid, hold_id)
        if not items:
            raise LegalError(f"hold {hold_id} in {rid} was not placed by a legal request")
        return rid, hold, items

    def extend_hold(
        self,
        hold_id: int,
        signer: Signer,
        region_id: str | None = None,
        until: datetime | None = None,
        note: str = "",
    ) -> tuple[str, datetime, datetime]:
        """Extend a live preservation hold once, on the authority's renewed request, up to the
        legal maximum (the instrument's preservation deadline plus its extension: 90 + 90 days
        for 2703(f), 60 + 30 for an EPOC-PR); `until` defaults to that maximum. Returns the
        region, the new end and the maximum."""
        rid, hold, items = self._live_hold(hold_id, region_id, signer)
        record = self.records.get(items[0].request_id)
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
        self._change_hold(
            signer,
            ActionKind.HOLD_EXTEND,
            record,
            (rid, hold_id, end),
            note,
            lambda: store.extend_hold(hold_id, end.timestamp()),
        )
        return rid, end, limit

    def release_hold(
        self, hold_id: int, signer: Signer, reason: str, region_id: str | None = None
    ) -> str:
        """End a hold before its time (the authority withdrew it, or the case is over), with
        the reason recorded; returns its region."""
        reason = " ".join(reason.split())
        if not reason:
            raise LegalError("--reason: releasing a hold must give a reason")
        rid, _, items = self._live_hold(hold_id, region_id, signer)
        record = self.records.get(items[0].request_id)
        store = self.cloud.region(rid).store
        self._change_hold(
            signer,
            ActionKind.HOLD_RELEASE,
            record,
            (rid, hold_id, None),
            reason,
            lambda: store.release_hold(hold_id),
        )
        return rid

    def _change_hold(
        self,
        signer: Signer,
        kind: ActionKind,
        record: RequestRecord,
        hold: tuple[str, int, datetime | None],
        note: str,
        apply: Callable[[], None],
    ) -> None:
        """Sign, record and apply a hold's extension (to a new end) or release (no end)."""
        rid, hold_id, until = hold
        role = self._permit(signer, kind, record.served_on, f"hold {hold_id}")
        signed = self._signed(
            signer,
            kind,
            record,
            role,
            hold={"region": rid, "id": hold_id, "until": until.isoformat() if until else None},
            note=note,
        )
        action_id = self.records.change_hold(
            record.id, rid, hold_id, until, signer.member.label, note, apply, signed
        )
        self._publish(signer, record.id, signed, action_id)

    # disclosure

    def export(
        self,
        request_id: int,
        out: Path | Callable[[str], Path],
        signer: Signer,
        now: datetime | None = None,
        enforcing_state_confirmed: bool = False,
    ) -> dict[str, Path]:
        """Write one signed package per region for the approved disclose items, into `out` (or
        the folder `out(region)` names); the request becomes fulfilled, the exporter recorded.
        Returns the package folder of each region.

        While an e-Evidence enforcing state may still raise grounds for refusal, nothing is
        transferred unless it has confirmed (`enforcing_state_confirmed`)."""
        now = now or datetime.now(UTC)
        today = now.date()
        record = self.records.get(request_id)
        role = self._permit(signer, ActionKind.EXPORT, record.served_on, f"request {request_id}")
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
            rid: (out(rid) if callable(out) else out) / package_name(record, rid) for rid in groups
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
        packages = [
            {"region": rid, "folder": f.name, "manifest_sha256": sha256_file(f / "manifest.json")}
            for rid, f in folders.items()
        ]
        signed = self._signed(
            signer,
            ActionKind.EXPORT,
            record,
            role,
            packages=packages,
            enforcing_state_confirmed=bool(waiting),
        )
        action_id = self.records.transition(
            request_id,
            "fulfilled",
            signer.member.label,
            "disclosed: " + ", ".join(str(f) for f in folders.values()) + confirmed,
            signed,
        )
        assert action_id is not None
        self._publish(signer, request_id, signed, action_id)
        return folders


def package_name(record: RequestRecord, region_id: str) -> str:
    """The folder name of a request's package from one region."""
    return f"request-{record.id}-{_slug(record.reference)}-{region_id}"


def _head(request_id: int, reference: str, served_on: str) -> dict[str, Any]:
    return {"id": request_id, "reference": reference, "served_on": served_on}


def _item(item_id: str, account: str, category: str, outcome: str) -> dict[str, str]:
    """A decision as a person signs it."""
    return {"id": item_id, "account": account, "category": category, "outcome": outcome}


def _custodian(viewer: Signer | None) -> str | None:
    return None if viewer is None else viewer.member.custodian


def _for_custodian(signer: Signer, served_on: str, what: str) -> None:
    """A custodian's own people answer the requests served on it, and only those."""
    if signer.member.custodian != served_on:
        raise PermissionDenied(
            f"{what} was served on {served_on}; {signer.member.label} works for"
            f" {signer.member.custodian}, and only a custodian's own staff act on its requests"
        )


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
                    PRINCIPAL,
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
                written = 0
                try:
                    for name, info in found:
                        # Gone since it was listed (the user expunged it, or a lapsed hold's
                        # retained mail was deleted): counted, not a failed package.
                        blob = region.store.blobs([info.blob_id]).get(info.blob_id)
                        if blob is None:
                            continue
                        eml = key.decrypt(blob)
                        written += 1
                        writer.write(f"{base}/{written:06d}-{_slug(name)}-{info.uid}.eml", eml)
                        box.add(eml)
                finally:
                    box.close()
                entry["messages"] = written
                entry["vanished"] = len(found) - written
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
        "approvals": [{"name": a.actor, **a.signature.to_json()} for a in record.approvals],
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
