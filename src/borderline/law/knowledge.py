"""The law as data: the TOML files operators edit, validated with pydantic at load.

Every error names the file, the key (a dotted path) and the offending value, because the people
who edit these files are counsel and operators, not the authors of the code.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATA_DIR = Path(__file__).parent / "data"

Category = Literal["subscriber", "identification", "traffic", "content"]
CATEGORIES: tuple[Category, ...] = ("subscriber", "identification", "traffic", "content")
IssuerKind = Literal[
    "judge", "court", "investigating_judge", "prosecutor", "police", "agency", "central_authority"
]
Family = Literal["national", "eevidence", "voluntary", "mla"]
Role = Literal["basis", "ground", "route", "obligation", "gate", "engine"]

TEXT_FIELDS = frozenset(
    {
        "instrument",
        "issuing",
        "issuer",
        "served",
        "served_jurisdiction",
        "holder",
        "holder_jurisdiction",
        "region",
        "data_jurisdiction",
        "category",
        "account",
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
    bloc: str


class Jurisdiction(_Strict):
    code: str = Field(pattern=_CODE)
    name: str
    memberships: tuple[Membership, ...] = ()

    def blocs_on(self, day: date) -> list[str]:
        return sorted({m.bloc for m in self.memberships if m.covers(day)})


class Law(Period):
    id: str = Field(pattern=_ID)
    kind: Literal["statute", "treaty", "agreement", "regulation", "directive", "case"]
    title: str
    citation: str
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


class InstrumentType(_Strict):
    id: str = Field(pattern=_ID)
    name: str
    issued_in: str
    family: Family
    preservation: bool = False
    issuers: tuple[IssuerKind, ...] = Field(min_length=1)
    reaches: tuple[Category, ...] = Field(min_length=1)
    laws: tuple[str, ...]
    deadlines: tuple[DeadlineRule, ...] = ()


class EEvidence(_Strict):
    listed_offences: tuple[str, ...]


class PolicyMeaning(_Strict):
    role: Role
    laws: tuple[str, ...]
    text: str
    days: int | None = Field(default=None, gt=0)
    until: Literal["nondisclosure"] | None = None

    @model_validator(mode="after")
    def _known_fields(self) -> PolicyMeaning:
        unknown = set(re.findall(r"{(\w+)}", self.text)) - TEXT_FIELDS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in text")
        return self


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


def describe_errors(path: Path, exc: ValidationError) -> str:
    """One line per error: file, dotted key, message and the offending value."""
    return "\n".join(
        f"{path}: {_location(err['loc'])}: {err['msg']} (got {err['input']!r})"
        for err in exc.errors()
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
        self.listed_offences = tuple(o.lower() for o in ins.eevidence.listed_offences)
        self.policies = pol.policy
        self._check_references(data_dir)

    def _check_references(self, data_dir: Path) -> None:
        def need(ok: bool, file: str, key: str, value: str, what: str) -> None:
            if not ok:
                raise LawDataError(f"{data_dir / file}: {key}: unknown {what} (got {value!r})")

        for i, j in enumerate(self.jurisdictions.values()):
            for k, m in enumerate(j.memberships):
                key = f"jurisdiction[{i}].memberships[{k}].bloc"
                need(m.bloc in self.blocs, "jurisdictions.toml", key, m.bloc, "bloc")
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
        for pid, meaning in self.policies.items():
            for k, law in enumerate(meaning.laws):
                key = f'policy."{pid}".laws[{k}]'
                need(law in self.laws, "policies.toml", key, law, "law")

    def in_force(self, day: date) -> list[str]:
        """Ids of the laws that apply on `day`."""
        return sorted(law_id for law_id, law in self.laws.items() if law.covers(day))

    def member_of(self, code: str, bloc: str, day: date) -> bool:
        j = self.jurisdictions.get(code)
        return j is not None and bloc in j.blocs_on(day)

    def citations(self, law_ids: list[str], day: date) -> list[str]:
        """Citations of those laws that apply on `day`: a 2013 decision cites no 2016 case."""
        return [self.laws[i].citation for i in law_ids if self.laws[i].covers(day)]


def _unique(path: Path, key: str, pairs: list[tuple[str, T]]) -> dict[str, T]:
    out: dict[str, T] = {}
    for i, (ident, value) in enumerate(pairs):
        if ident in out:
            raise LawDataError(f"{path}: {key}[{i}]: duplicate id (got {ident!r})")
        out[ident] = value
    return out
