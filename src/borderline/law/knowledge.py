"""The law as data: the TOML files operators edit, validated with pydantic at load.

Every error names the file, the key (a dotted path) and the offending value, because the people
who edit these files are counsel and operators, not the authors of the code.
"""

from __future__ import annotations

import calendar
import json
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

DATA_DIR = Path(__file__).parent / "data"
# Request files for the demo, the docs and the tests: the Dublin warrant, the MLAT route.
EXAMPLES = Path(__file__).parent / "examples"

Category = Literal["subscriber", "identification", "traffic", "content"]
CATEGORIES: tuple[Category, ...] = ("subscriber", "identification", "traffic", "content")
IssuerKind = Literal[
    "judge", "court", "investigating_judge", "prosecutor", "police", "agency", "central_authority"
]
Family = Literal["national", "eevidence", "agreement", "voluntary", "mla"]
Role = Literal["basis", "ground", "route", "obligation", "engine"]

TEXT_FIELDS = frozenset(
    {
        "instrument",
        "issuing",
        "issuer",
        "issuers",
        "served",
        "served_jurisdiction",
        "holder",
        "holder_jurisdiction",
        "region",
        "data_jurisdiction",
        "category",
        "account",
        "target",
        "target_central_authority",
        "law_date",
        "served_at",
        "scope_from",
        "scope_to",
        "agreement",
        "serious_crime",
        "penalty",
        "listed_offence",
        "offence_basis",
        "alternatives",
        "danger",
    }
)
_CODE = r"^[A-Z]{2}$"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
_ID = r"^[a-z0-9_]+$"


class LawDataError(ValueError):
    """A law data file is malformed or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Period(_Strict):
    """A span of days: `start` inclusive, `until` exclusive; no `start` means never."""

    start: date | None = Field(default=None, alias="from")
    until: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.start and self.until and self.until <= self.start:
            raise ValueError(f"'until' ({self.until}) must be after 'from' ({self.start})")
        return self

    def covers(self, day: date) -> bool:
        return (
            self.start is not None
            and self.start <= day
            and (self.until is None or day < self.until)
        )


class Bloc(_Strict):
    id: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    name: str


class Membership(Period):
    """Membership of a bloc: between two dates, or for as long as a law is in force (a CLOUD
    Act executive agreement makes its partner a qualifying foreign government), so a date lives
    in one place only."""

    bloc: str
    law: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Membership:
        if self.law is not None and (self.start is not None or self.until is not None):
            raise ValueError("give either 'law' or 'from'/'until', not both")
        return self


class Jurisdiction(_Strict):
    code: str = Field(pattern=_CODE)
    name: str
    central_authority: str | None = None
    memberships: tuple[Membership, ...] = ()


class Law(Period):
    id: str = Field(pattern=_ID)
    kind: Literal["statute", "treaty", "agreement", "regulation", "directive", "case"]
    title: str
    citation: str
    source: str | None = None
    note: str | None = None


class DeadlineRule(_Strict):
    id: str = Field(pattern=_ID)
    label: str
    days: int | None = Field(default=None, gt=0)
    hours: int | None = Field(default=None, gt=0)
    extension_days: int | None = Field(default=None, gt=0)
    when: Literal["always", "normal", "emergency"] = "always"
    law: str

    @model_validator(mode="after")
    def _one_period(self) -> DeadlineRule:
        if (self.days is None) == (self.hours is None):
            raise ValueError("give exactly one of 'days' or 'hours'")
        return self


class SeriousCrime(_Strict):
    """A CLOUD Act agreement's definition of serious crime, by maximum term of imprisonment."""

    years: int = Field(gt=0)
    inclusive: bool

    def describe(self) -> str:
        return f"{'at least' if self.inclusive else 'more than'} {self.years} years"


class InstrumentType(_Strict):
    id: str = Field(pattern=_ID)
    name: str
    issued_in: str
    family: Family
    preservation: bool = False
    # Stored-data instruments reach only data that exists when they are served.
    prospective: bool = False
    issuers: tuple[IssuerKind, ...] = Field(min_length=1)
    reaches: tuple[Category, ...] = Field(min_length=1)
    laws: tuple[str, ...]
    agreement: str | None = None
    serious_crime: SeriousCrime | None = None
    deadlines: tuple[DeadlineRule, ...] = ()

    @model_validator(mode="after")
    def _agreement(self) -> InstrumentType:
        if (self.family == "agreement") != (self.agreement is not None):
            raise ValueError("'agreement' is required for, and only for, family 'agreement'")
        return self


class ListedOffence(_Strict):
    """An offence Art. 5(4)(b)-(c) of Regulation 2023/1543 lists, with the act defining it."""

    id: str = Field(pattern=_ID)
    name: str
    source: str
    article: str
    by_information_system: bool

    def describe(self) -> str:
        return f"{self.name} ({self.source}; Regulation (EU) 2023/1543, {self.article})"


class EEvidence(_Strict):
    listed_offence: tuple[ListedOffence, ...] = Field(min_length=1)


class LaterHistory(_Strict):
    """An authority decided after some service dates: shown as later history, never as the
    law that applied on the day."""

    law: str
    text: str


class PolicyMeaning(_Strict):
    role: Role
    laws: tuple[str, ...]
    text: str
    days: int | None = Field(default=None, gt=0)
    hours: int | None = Field(default=None, gt=0)
    until: Literal["nondisclosure"] | None = None
    # An obligation that bars the transfer until it falls due (the enforcing state may refuse).
    holds_transfer: bool = False
    # A ground that is a defect of the instrument itself: rejected even where a route exists.
    defect: bool = False
    later: tuple[LaterHistory, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> PolicyMeaning:
        unknown = set(re.findall(r"{(\w+)}", self.text)) - TEXT_FIELDS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in text")
        if self.days is not None and self.hours is not None:
            raise ValueError("give at most one of 'days' or 'hours'")
        if self.holds_transfer and (self.role != "obligation" or self.due_in() is None):
            raise ValueError("'holds_transfer' needs role 'obligation' and 'days' or 'hours'")
        if self.defect and self.role != "ground":
            raise ValueError("'defect' is for role 'ground'")
        return self

    def due_in(self) -> timedelta | None:
        if self.days is None and self.hours is None:
            return None
        return timedelta(days=self.days or 0, hours=self.hours or 0)


class _JurisdictionsFile(_Strict):
    bloc: tuple[Bloc, ...]
    jurisdiction: tuple[Jurisdiction, ...]


class _LawsFile(_Strict):
    law: tuple[Law, ...]


class _InstrumentsFile(_Strict):
    instrument: tuple[InstrumentType, ...]
    eevidence: EEvidence


class _PoliciesFile(_Strict):
    policy: dict[str, PolicyMeaning]


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2}))?)?")
_PATTERNS = {
    _CODE: "a two-letter country code in capitals (ISO 3166-1, e.g. IE)",
    _ID: "an id of lower-case letters, digits and '_'",
}


def date_problem(text: str) -> str | None:
    """Which part of a date or date-time is impossible ("February 2026 has 28 days"), if any."""
    m = _DATE.match(text.strip())
    if m is None:
        return None
    year, month, day = (int(g) for g in m.groups()[:3])
    if not 1 <= month <= 12:
        return f"there is no month {month:02d}"
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        return f"day {day:02d} does not exist: {calendar.month_name[month]} {year} has {last} days"
    hour, minute, second = (None if g is None else int(g) for g in m.groups()[3:])
    for value, name, top in ((hour, "hour", 23), (minute, "minute", 59), (second, "second", 59)):
        if value is not None and value > top:
            return f"there is no {name} {value:02d} (00-{top})"
    return None


def shown(value: object) -> str | None:
    """A value as the file wrote it (TOML/JSON style), or None for tables and lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return None


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys a table at `loc` may hold, following the model's fields."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = {f.alias or name: f for name, f in current.model_fields.items()}
        field = fields.get(part)
        if field is None:
            return None
        current = next(
            (a for a in (field.annotation, *get_args(field.annotation)) if isinstance(a, type)),
            None,
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return None


def _message(err: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, shown(err["input"])
    suffix = f" (got {got})" if got is not None else ""
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        allowed = _fields_at(model, err["loc"][:-1]) if model else None
        return "unknown field" + (f" (allowed here: {', '.join(allowed)})" if allowed else "")
    if kind == "value_error":
        text = str(ctx.get("error", err["msg"]))
        plain = err["input"] if isinstance(err["input"], str) else got
        quoted = plain is None or re.search(rf"(?<![\w-]){re.escape(plain)}(?![\w-])", text)
        return text if quoted else text + suffix
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}{suffix}"
    if kind == "bool_type":
        return f"must be true or false{suffix}"
    if kind == "int_type":
        return f"must be a whole number{suffix}"
    if kind == "string_type":
        return f"must be text in quotes{suffix}"
    if kind == "string_pattern_mismatch":
        return f"must be {_PATTERNS.get(str(ctx.get('pattern')), err['msg'])}{suffix}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list{suffix}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a table{suffix}"
    return f"{err['msg']}{suffix}"


def describe_errors(path: Path, exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per error: file, dotted key, what is wrong and the value as written. An error
    that only follows from one inside it (an empty list after a bad item) is left out."""
    errors = exc.errors()
    locs = [e["loc"] for e in errors]
    return "\n".join(
        f"{path}: {_location(err['loc'])}: {_message(err, model)}"
        for err in errors
        if not any(len(o) > len(err["loc"]) and o[: len(err["loc"])] == err["loc"] for o in locs)
    )


def _parse(model: type[M], path: Path) -> M:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LawDataError(f"{path}: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise LawDataError(describe_errors(path, exc)) from exc


class LawBook:
    """The validated, cross-checked contents of the data folder."""

    def __init__(self, data_dir: Path = DATA_DIR) -> None:
        jur = _parse(_JurisdictionsFile, data_dir / "jurisdictions.toml")
        laws = _parse(_LawsFile, data_dir / "laws.toml")
        ins = _parse(_InstrumentsFile, data_dir / "instruments.toml")
        pol = _parse(_PoliciesFile, data_dir / "policies.toml")
        self.blocs = _unique(data_dir / "jurisdictions.toml", "bloc", [(b.id, b) for b in jur.bloc])
        self.jurisdictions = _unique(
            data_dir / "jurisdictions.toml", "jurisdiction", [(j.code, j) for j in jur.jurisdiction]
        )
        self.laws = _unique(data_dir / "laws.toml", "law", [(law.id, law) for law in laws.law])
        self.instruments = _unique(
            data_dir / "instruments.toml", "instrument", [(i.id, i) for i in ins.instrument]
        )
        self.listed_offences = _unique(
            data_dir / "instruments.toml",
            "eevidence.listed_offence",
            [(o.id, o) for o in ins.eevidence.listed_offence],
        )
        self.policies = pol.policy
        self._check_references(data_dir)

    def _check_references(self, data_dir: Path) -> None:
        def need(ok: bool, file: str, key: str, value: str, what: str) -> None:
            if not ok:
                raise LawDataError(f"{data_dir / file}: {key}: unknown {what} (got {shown(value)})")

        for i, j in enumerate(self.jurisdictions.values()):
            for k, m in enumerate(j.memberships):
                key = f"jurisdiction[{i}].memberships[{k}]"
                need(m.bloc in self.blocs, "jurisdictions.toml", f"{key}.bloc", m.bloc, "bloc")
                if m.law is not None:
                    need(m.law in self.laws, "jurisdictions.toml", f"{key}.law", m.law, "law")
        for i, ins in enumerate(self.instruments.values()):
            known = ins.issued_in == "*" or ins.issued_in in self.blocs
            known = known or ins.issued_in in self.jurisdictions
            key = f"instrument[{i}]"
            need(known, "instruments.toml", f"{key}.issued_in", ins.issued_in, "jurisdiction/bloc")
            for k, law in enumerate(ins.laws):
                need(law in self.laws, "instruments.toml", f"{key}.laws[{k}]", law, "law")
            for k, dl in enumerate(ins.deadlines):
                key_dl = f"{key}.deadlines[{k}].law"
                need(dl.law in self.laws, "instruments.toml", key_dl, dl.law, "law")
            if ins.agreement is not None:
                key_ag = f"{key}.agreement"
                need(ins.agreement in self.laws, "instruments.toml", key_ag, ins.agreement, "law")
        for pid, meaning in self.policies.items():
            cited = [(f"laws[{k}]", law) for k, law in enumerate(meaning.laws)]
            cited += [(f"later[{k}].law", h.law) for k, h in enumerate(meaning.later)]
            for where, law in cited:
                key = f'policy."{pid}".{where}'
                need(law in self.laws, "policies.toml", key, law, "law")

    def in_force(self, day: date) -> list[str]:
        """Ids of the laws that apply on `day`."""
        return sorted(law_id for law_id, law in self.laws.items() if law.covers(day))

    def blocs_on(self, code: str, day: date) -> list[str]:
        """The blocs `code` belongs to on `day`."""
        j = self.jurisdictions.get(code)
        if j is None:
            return []
        return sorted(
            {
                m.bloc
                for m in j.memberships
                if (self.laws[m.law].covers(day) if m.law is not None else m.covers(day))
            }
        )

    def member_of(self, code: str, bloc: str, day: date) -> bool:
        return bloc in self.blocs_on(code, day)

    def citations(self, law_ids: list[str], day: date) -> list[str]:
        """Citations of those laws that apply on `day`: a 2013 decision cites no 2016 case."""
        return [self.laws[i].citation for i in law_ids if self.laws[i].covers(day)]


def _unique(path: Path, key: str, pairs: list[tuple[str, T]]) -> dict[str, T]:
    out: dict[str, T] = {}
    for i, (ident, value) in enumerate(pairs):
        if ident in out:
            raise LawDataError(f"{path}: {key}[{i}]: duplicate id (got {shown(ident)})")
        out[ident] = value
    return out
