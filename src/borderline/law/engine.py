"""The policy engine: decides each demand item under the law in force on the day of service.

The law is split between data (which rules exist, what they cite and when they apply) and Cedar
policies (what each rule requires). The engine only gathers facts, asks Cedar four questions in
turn (bind, disclose/preserve, refer, oblige) and assembles the answers with their citations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import cedarpy
from pydantic import BaseModel, ConfigDict, model_validator

from borderline.law.facts import AccountLocation, Custodian, Facts
from borderline.law.knowledge import (
    DATA_DIR,
    Category,
    InstrumentType,
    LawBook,
    LawDataError,
    ListedOffence,
)
from borderline.law.request import LegalRequest

POLICY_DIR = Path(__file__).parent / "policies"
NO_ACCOUNT = "account.not_found"
# What a refusal says when no route exists: across a border, or at home.
NO_ROUTE = "route.none"
NO_ROUTE_DOMESTIC = "route.none_domestic"
NO_ROUTES = (NO_ROUTE, NO_ROUTE_DOMESTIC)
ART8_NOTIFICATION = "eu.eevidence.art8_notification"
# How each kind of issuer reads in a sentence ("issued by the police").
ISSUER_WORDS = {
    "judge": "a judge",
    "court": "a court",
    "investigating_judge": "an investigating judge",
    "prosecutor": "a prosecutor",
    "police": "the police",
    "agency": "an agency",
    "central_authority": "a central authority",
}

Outcome = Literal["disclose", "reject", "refer", "preserve", "no_data"]
Action = Literal["bind", "disclose", "preserve", "refer", "oblige"]


class LawError(ValueError):
    """The request cannot be decided: it names something the law data or the facts do not know."""


class CedarEvaluationError(RuntimeError):
    """Cedar reported errors while evaluating: a broken policy must never pass as a deny."""


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Item(_Out):
    account: str
    category: Category


class Reason(_Out):
    """One policy that produced (part of) a decision, with what it means in this case."""

    policy_id: str
    role: str
    text: str
    citations: list[str]


class Obligation(_Out):
    policy_id: str
    text: str
    due: datetime | None
    citations: list[str]
    # The transfer must wait until `due` (unless the enforcing state confirms earlier).
    holds_transfer: bool = False

    @model_validator(mode="before")
    @classmethod
    def _recorded_before_holds_transfer(cls, data: Any) -> Any:
        """Decisions recorded before `holds_transfer` existed: then the 10-day Art. 8
        notification was the one obligation that held the transfer back."""
        if isinstance(data, dict) and "holds_transfer" not in data:
            return {**data, "holds_transfer": data.get("policy_id") == ART8_NOTIFICATION}
        return data


class Deadline(_Out):
    id: str
    label: str
    due: datetime
    extension_days: int | None
    citation: str


class Location(_Out):
    region: str
    jurisdiction: str
    custodian: str


class Decision(_Out):
    item: Item
    outcome: Outcome
    ground: str | None
    # Every refusal (reject or refer) names the lawful route, or says plainly that none exists.
    route: str | None
    obligations: list[Obligation]
    deadlines: list[Deadline]
    policy_ids: list[str]
    citations: list[str]
    reasons: list[Reason]
    law_date: date
    served_at: datetime
    location: Location | None
    routes: list[str] = []
    # Disclosure the custodian may, but need not, make (an emergency under 2702(b)(8)).
    voluntary: bool = False
    # A stored-data order reaches data that existed when it was served: nothing after this.
    data_until: datetime | None = None
    # Authorities from after the service date: context, never the law applied.
    later_history: list[str] = []

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class _Target:
    item: Item
    location: AccountLocation

    @property
    def uid(self) -> str:
        return f"{self.item.account}/{self.item.category}"


_IN_FORCE = {"type": "InForce", "id": "on_service_date"}


def _ref(kind: str, ident: str) -> dict[str, dict[str, str]]:
    return {"__entity": {"type": kind, "id": ident}}


class LawEngine:
    """Loads, validates and applies the law; one instance serves any number of requests."""

    def __init__(self, book: LawBook, policies: str, schema: str) -> None:
        self.book = book
        self._schema = cedarpy.Schema.from_json_str(schema)
        self._policies = cedarpy.PolicySet.from_str(policies)
        self._order = {pid: n for n, pid in enumerate(book.policies)}
        self._check(policies)

    @classmethod
    def load(cls, data_dir: Path = DATA_DIR, policy_dir: Path = POLICY_DIR) -> LawEngine:
        book = LawBook(data_dir)
        files = sorted(policy_dir.glob("*.cedar"))
        if not files:
            raise LawDataError(f"{policy_dir}: no *.cedar policy files")
        text = "\n".join(f.read_text(encoding="utf-8") for f in files)
        try:
            return cls(book, text, (policy_dir / "schema.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            if isinstance(exc, LawDataError):
                raise
            raise LawDataError(f"{policy_dir}: {exc}") from exc

    def _check(self, policies: str) -> None:
        """Schema-validate the policies and tie every @id to the data, both ways."""
        result = cedarpy.validate_policies(policies, self._schema)
        if not result.validation_passed:
            names = result.id_annotations_by_policy_id
            raise LawDataError(
                "policies fail schema validation:\n"
                + "\n".join(
                    f"  {names.get(e.policy_id, e.policy_id)}: {e.error}" for e in result.errors
                )
            )
        static = json.loads(cedarpy.policies_to_json_str(policies))["staticPolicies"]
        ids = [p.get("annotations", {}).get("id") for p in static.values()]
        if None in ids:
            raise LawDataError("every Cedar policy needs an @id annotation")
        known = {pid for pid, m in self.book.policies.items() if m.role != "engine"}
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        missing = sorted(set(ids) - known)
        unused = sorted(known - set(ids))
        for problem, found in (
            ("duplicate @id", dupes),
            ("@id without an entry in data/policies.toml", missing),
            ("data/policies.toml entry without a Cedar policy", unused),
        ):
            if found:
                raise LawDataError(f"{problem}: {', '.join(map(str, found))}")
        for law in sorted(set(re.findall(r'Law::"([^"]+)"', policies))):
            if law not in self.book.laws:
                raise LawDataError(f'policies name Law::"{law}", not in data/laws.toml')
        for pid, meaning in self.book.policies.items():
            if meaning.role == "engine" and pid in ids:
                raise LawDataError(f"{pid}: role 'engine' but also a Cedar policy")

    def decide(self, request: LegalRequest, facts: Facts) -> list[Decision]:
        """One decision per (account, category), in request order."""
        spec = self._instrument(request)
        served = facts.custodian(request.instrument.served_on)
        if served is None:
            known = ", ".join(c.id for c in facts.custodians())
            raise LawError(
                f"{request.where}: instrument.served_on: unknown custodian "
                f"{json.dumps(request.instrument.served_on)} (known: {known})"
            )
        decisions: dict[tuple[str, str], Decision] = {}
        targets: list[_Target] = []
        for account in request.scope.accounts:
            location = facts.locate(account)
            for category in request.scope.categories:
                item = Item(account=account, category=category)
                if location is None:
                    decisions[(account, category)] = self._no_data(request, item)
                else:
                    targets.append(_Target(item, location))
        if targets:
            for target, decision in zip(
                targets, self._decide(request, spec, served, targets), strict=True
            ):
                decisions[(target.item.account, target.item.category)] = decision
        return [decisions[(a, c)] for a in request.scope.accounts for c in request.scope.categories]

    @staticmethod
    def _unknown(
        request: LegalRequest, field: str, what: str, value: str, known: Iterable[str]
    ) -> LawError:
        names = ", ".join(sorted(known))
        return LawError(
            f"{request.where}: {field}: unknown {what} {json.dumps(value)} (known: {names})"
        )

    def _instrument(self, request: LegalRequest) -> InstrumentType:
        ins = request.instrument
        spec = self.book.instruments.get(ins.type)
        if spec is None:
            raise self._unknown(
                request, "instrument.type", "instrument type", ins.type, self.book.instruments
            )
        jurisdictions = self.book.jurisdictions
        for field, code in (
            ("authority.country", request.authority.country),
            ("instrument.offence_country", ins.offence_country),
            ("scope.subject_residence", request.scope.subject_residence),
        ):
            if code is not None and code not in jurisdictions:
                raise self._unknown(request, field, "jurisdiction", code, jurisdictions)
        if ins.listed_offence is not None and ins.listed_offence not in self.book.listed_offences:
            raise self._unknown(
                request,
                "instrument.listed_offence",
                "listed offence",
                ins.listed_offence,
                self.book.listed_offences,
            )
        country, where = request.authority.country, spec.issued_in
        if not (where in ("*", country) or self.book.member_of(country, where, request.law_date)):
            raise LawError(
                f"{request.where}: authority.country: a {spec.id} is issued in {where}, not by an"
                f" authority of {jurisdictions[country].name} ({country}) on {request.law_date}"
            )
        return spec

    def _decide(
        self,
        request: LegalRequest,
        spec: InstrumentType,
        served: Custodian,
        targets: list[_Target],
    ) -> list[Decision]:
        entities = self._entities(request, spec, served, targets)
        base = {
            "bound": False,
            "denied_by": [],
            "nondisclosure": request.nondisclosure is not None,
        }
        bind = self._ask(entities, "bind", targets, [base] * len(targets))
        act: Literal["disclose", "preserve"] = "preserve" if spec.preservation else "disclose"
        acted = self._ask(entities, act, targets, [{**base, "bound": ok} for ok, _ in bind])
        refer = self._ask(
            entities,
            "refer",
            targets,
            [{**base, "denied_by": ids if not ok else []} for ok, ids in acted],
        )
        oblige = self._ask(entities, "oblige", targets, [base] * len(targets))
        out = []
        for n, target in enumerate(targets):
            fields = self._fields(request, spec, served, target)
            bound, bind_ids = bind[n]
            allowed, act_ids = acted[n]
            if allowed:
                ids = bind_ids + act_ids
                outcome: Outcome = act
                obligations = [self._obligation(pid, fields, request) for pid in oblige[n][1]]
                ids += [o.policy_id for o in obligations]
                deadlines = self._deadlines(request, spec)
            else:
                ids = ([] if bound else bind_ids) + act_ids
                routes = refer[n][1]
                defect = any(self.book.policies[pid].defect for pid in ids)
                outcome = "refer" if routes and not defect else "reject"
                ids += routes or [self._no_route(request, target)]
                obligations, deadlines = [], []
            out.append(
                self._decision(request, target, outcome, ids, fields, obligations, deadlines)
            )
        return out

    @staticmethod
    def _target(request: LegalRequest, target: _Target) -> str:
        """The state a route goes to: where the data is, unless its keys are held by a custodian
        established outside the issuing state, whose state alone can compel it."""
        holder = target.location.custodian.jurisdiction
        return (
            holder if holder != request.authority.country else target.location.region_jurisdiction
        )

    def _no_route(self, request: LegalRequest, target: _Target) -> str:
        home = self._target(request, target) == request.authority.country
        return NO_ROUTE_DOMESTIC if home else NO_ROUTE

    def _ask(
        self,
        entities: cedarpy.Entities,
        action: Action,
        targets: list[_Target],
        contexts: list[dict[str, Any]],
    ) -> list[tuple[bool, list[str]]]:
        """One Cedar batch; any evaluation error raises instead of counting as a deny."""
        requests = [
            {
                "principal": {"type": "Instrument", "id": "instrument"},
                "action": {"type": "Action", "id": action},
                "resource": {"type": "Item", "id": t.uid},
                "context": ctx,
            }
            for t, ctx in zip(targets, contexts, strict=True)
        ]
        try:
            results = cedarpy.is_authorized_batch(requests, self._policies, entities, self._schema)
        except ValueError as exc:
            raise CedarEvaluationError(f"Cedar rejected the {action} request: {exc}") from exc
        answers = []
        for target, result in zip(targets, results, strict=True):
            diagnostics = result.diagnostics
            if diagnostics.errors:
                raise CedarEvaluationError(
                    f"{action} {target.uid}: " + "; ".join(map(str, diagnostics.errors))
                )
            names = diagnostics.id_annotations_by_reason
            ids = sorted((names[r] for r in diagnostics.reasons), key=self._order.__getitem__)
            answers.append((result.allowed, ids))
        return answers

    def _entities(
        self,
        request: LegalRequest,
        spec: InstrumentType,
        served: Custodian,
        targets: list[_Target],
    ) -> cedarpy.Entities:
        day = request.law_date
        country = request.authority.country
        custodians = {served.id: served} | {
            t.location.custodian.id: t.location.custodian for t in targets
        }
        for custodian in custodians.values():
            if custodian.jurisdiction not in self.book.jurisdictions:
                raise LawError(
                    f"custodian {custodian.id!r}: unknown jurisdiction {custodian.jurisdiction!r}"
                )
        for t in targets:
            if t.location.region_jurisdiction not in self.book.jurisdictions:
                raise LawError(
                    f"region {t.location.region_id!r}: unknown jurisdiction "
                    f"{t.location.region_jurisdiction!r}"
                )
        scope = request.scope
        agreement = spec.agreement
        instrument: dict[str, Any] = {
            "kind": spec.id,
            "family": spec.family,
            "issuing": _ref("Jurisdiction", country),
            "issuer": request.instrument.issued_by,
            "issuers": list(spec.issuers),
            "served_on": _ref("Custodian", served.id),
            "reaches": list(spec.reaches),
            "preservation": spec.preservation,
            "prospective": spec.prospective,
            "emergency": request.emergency,
            "listed_offence": self._listed_offence(request) is not None,
            "offence_in_issuing_state": request.instrument.offence_country == country,
            "scope_starts_after_service": scope.start is not None and scope.start > day,
            "scope_ends_after_service": scope.to is not None and scope.to > day,
            "domestic_reach": sorted({c for s in self._domestic(request) for c in s.reaches}),
            "agreement_in_force": agreement is not None and self.book.laws[agreement].covers(day),
            "serious_crime_inclusive": bool(spec.serious_crime and spec.serious_crime.inclusive),
        }
        if spec.serious_crime is not None:
            instrument["serious_crime_years"] = spec.serious_crime.years
        if request.instrument.max_penalty_years is not None:
            instrument["max_penalty_years"] = request.instrument.max_penalty_years
        residence = request.scope.subject_residence
        entities: list[dict[str, Any]] = [
            {"uid": {"type": "Bloc", "id": b}, "attrs": {}, "parents": []} for b in self.book.blocs
        ]
        # The law in force on the service date is data: each applicable law is placed in
        # InForce::"on_service_date", which the policies test with `in`.
        in_force = set(self.book.in_force(day))
        entities.append({"uid": _IN_FORCE, "attrs": {}, "parents": []})
        entities += [
            {
                "uid": {"type": "Law", "id": law},
                "attrs": {},
                "parents": [_IN_FORCE] if law in in_force else [],
            }
            for law in self.book.laws
        ]
        entities += [
            {
                "uid": {"type": "Jurisdiction", "id": code},
                "attrs": {},
                "parents": [{"type": "Bloc", "id": b} for b in self.book.blocs_on(code, day)],
            }
            for code in self.book.jurisdictions
        ]
        entities += [
            {
                "uid": {"type": "Custodian", "id": c.id},
                "attrs": {"jurisdiction": _ref("Jurisdiction", c.jurisdiction)},
                "parents": [],
            }
            for c in custodians.values()
        ]
        entities.append(
            {"uid": {"type": "Instrument", "id": "instrument"}, "attrs": instrument, "parents": []}
        )
        for t in targets:
            attrs: dict[str, Any] = {
                "target": _ref("Jurisdiction", self._target(request, t)),
                "account": t.item.account,
                "category": t.item.category,
                "region": t.location.region_id,
                "data_jurisdiction": _ref("Jurisdiction", t.location.region_jurisdiction),
                "custodian": _ref("Custodian", t.location.custodian.id),
            }
            if residence is not None:
                attrs["subject_residence"] = _ref("Jurisdiction", residence)
            entities.append({"uid": {"type": "Item", "id": t.uid}, "attrs": attrs, "parents": []})
        try:
            return cedarpy.Entities.from_json_str(json.dumps(entities), self._schema)
        except ValueError as exc:
            raise CedarEvaluationError(f"entities do not fit the Cedar schema: {exc}") from exc

    def _listed_offence(self, request: LegalRequest) -> ListedOffence | None:
        """The Art. 5(4) offence the order names, if it counts (some need an information system)."""
        ins = request.instrument
        offence = self.book.listed_offences.get(ins.listed_offence or "")
        if offence is None or (offence.by_information_system and not ins.by_information_system):
            return None
        return offence

    def _domestic(self, request: LegalRequest) -> list[InstrumentType]:
        """National orders the issuing state's authorities can use at home."""
        country, day = request.authority.country, request.law_date
        return [
            s
            for s in self.book.instruments.values()
            if s.family == "national"
            and not s.preservation
            and (s.issued_in == country or self.book.member_of(country, s.issued_in, day))
        ]

    def _fields(
        self, request: LegalRequest, spec: InstrumentType, served: Custodian, target: _Target
    ) -> dict[str, str]:
        names = self.book.jurisdictions
        holder = target.location.custodian
        ins = request.instrument
        data = names[target.location.region_jurisdiction]
        state = names[self._target(request, target)]
        category = target.item.category
        penalty = (
            f"a maximum of {ins.max_penalty_years} year{'s' * (ins.max_penalty_years != 1)}"
            if ins.max_penalty_years is not None
            else "no maximum penalty"
        )
        named = self.book.listed_offences.get(ins.listed_offence or "")
        if named is not None and self._listed_offence(request) is None:
            offence_basis = (
                f"the order names {named.name}, which counts only if committed wholly or partly"
                " by means of an information system, and does not say it was"
            )
        else:
            offence_basis = f"the order states {penalty} and names no listed offence"
        alternatives = "; or ".join(
            f"{s.name}, issued by {_either(s.issuers)}"
            for s in self._domestic(request)
            if category in s.reaches
        )
        agreement = self.book.laws[spec.agreement].title if spec.agreement else ""
        return {
            "instrument": spec.name,
            "issuing": names[request.authority.country].name,
            "issuer": ISSUER_WORDS[ins.issued_by],
            "issuers": _either(spec.issuers),
            "served": served.name,
            "served_jurisdiction": names[served.jurisdiction].name,
            "holder": holder.name,
            "holder_jurisdiction": names[holder.jurisdiction].name,
            "region": target.location.region_id,
            "data_jurisdiction": data.name,
            "target": state.name,
            "target_central_authority": state.central_authority
            or f"the central authority of {state.name}",
            "category": category,
            "account": target.item.account,
            "law_date": request.law_date.isoformat(),
            "served_at": request.served_at.isoformat(),
            "scope_from": str(request.scope.start or ""),
            "scope_to": str(request.scope.to or ""),
            "agreement": agreement,
            "serious_crime": spec.serious_crime.describe() if spec.serious_crime else "",
            "penalty": penalty,
            "listed_offence": named.describe() if named else "",
            "offence_basis": offence_basis,
            "alternatives": alternatives,
            "danger": request.danger or "",
        }

    def _reason(self, policy_id: str, fields: dict[str, str], day: date) -> Reason:
        meaning = self.book.policies[policy_id]
        return Reason(
            policy_id=policy_id,
            role=meaning.role,
            text=_sentence(meaning.text.format(**fields)),
            citations=self.book.citations(list(meaning.laws), day),
        )

    def _obligation(
        self, policy_id: str, fields: dict[str, str], request: LegalRequest
    ) -> Obligation:
        reason = self._reason(policy_id, fields, request.law_date)
        meaning = self.book.policies[policy_id]
        period = meaning.due_in()
        due = request.served_at + period if period else None
        if meaning.until == "nondisclosure" and request.nondisclosure:
            due = datetime.combine(request.nondisclosure.until, time(), UTC)
        return Obligation(
            policy_id=policy_id,
            text=reason.text,
            due=due,
            citations=reason.citations,
            holds_transfer=meaning.holds_transfer,
        )

    def _deadlines(self, request: LegalRequest, spec: InstrumentType) -> list[Deadline]:
        wanted = {"always", "emergency" if request.emergency else "normal"}
        return [
            Deadline(
                id=rule.id,
                label=rule.label,
                due=request.served_at + timedelta(days=rule.days or 0, hours=rule.hours or 0),
                extension_days=rule.extension_days,
                citation=self.book.laws[rule.law].citation,
            )
            for rule in spec.deadlines
            if rule.when in wanted
        ]

    def _decision(
        self,
        request: LegalRequest,
        target: _Target,
        outcome: Outcome,
        ids: list[str],
        fields: dict[str, str],
        obligations: list[Obligation],
        deadlines: list[Deadline],
    ) -> Decision:
        day = request.law_date
        reasons = [self._reason(pid, fields, day) for pid in ids]
        grounds = [r.text for r in reasons if r.role == "ground"]
        routes = [r.text for r in reasons if r.role == "route" or r.policy_id in NO_ROUTES]
        spec = self.book.instruments[request.instrument.type]
        laws = [*spec.laws, *([spec.agreement] if spec.agreement else [])]
        citations = self.book.citations(laws, day)
        for reason in reasons:
            citations += reason.citations
        refused = outcome in ("reject", "refer")
        return Decision(
            item=target.item,
            outcome=outcome,
            ground=grounds[0] if grounds and refused else None,
            route=routes[0] if refused else None,
            routes=routes if refused else [],
            obligations=obligations,
            deadlines=deadlines,
            policy_ids=ids,
            citations=list(dict.fromkeys(citations)),
            reasons=reasons,
            law_date=day,
            served_at=request.served_at,
            location=Location(
                region=target.location.region_id,
                jurisdiction=target.location.region_jurisdiction,
                custodian=target.location.custodian.id,
            ),
            voluntary="disclose.voluntary" in ids,
            data_until=None if spec.prospective else request.served_at,
            later_history=self._later(ids, day),
        )

    def _later(self, ids: list[str], day: date) -> list[str]:
        """Authorities a policy names that came after the service date, as later history."""
        notes = []
        for pid in ids:
            for later in self.book.policies[pid].later:
                law = self.book.laws[later.law]
                if law.start is None or law.start > day:
                    when = law.start.isoformat() if law.start else "not in force"
                    notes.append(f"{when}: {law.citation} {later.text}.")
        return list(dict.fromkeys(notes))

    def _no_data(self, request: LegalRequest, item: Item) -> Decision:
        meaning = self.book.policies[NO_ACCOUNT]
        text = _sentence(meaning.text.format(account=item.account))
        citations = self.book.citations(list(meaning.laws), request.law_date)
        return Decision(
            item=item,
            outcome="no_data",
            ground=None,
            route=None,
            obligations=[],
            deadlines=[],
            policy_ids=[NO_ACCOUNT],
            citations=citations,
            reasons=[Reason(policy_id=NO_ACCOUNT, role="engine", text=text, citations=citations)],
            law_date=request.law_date,
            served_at=request.served_at,
            location=None,
        )


def _either(kinds: Iterable[str]) -> str:
    """("judge", "court") -> "a judge or a court"."""
    words = [ISSUER_WORDS.get(k, k) for k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _sentence(text: str) -> str:
    """Capitalised, and no doubled full stop where a name ends with one ("Inc.")."""
    text = re.sub(r"\.\.(?=\s|$)", ".", text)
    return text[:1].upper() + text[1:]
