"""Legal request files (TOML or JSON), as DESIGN.md section 5 "Request files" describes them.

Every error names the file and the field, shows the offending value as it was written (never a
Python object) and, for a date, which part of it is wrong: the people who read these errors are
legal staff, not the authors of the code.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from borderline.law.knowledge import Category, IssuerKind, date_problem, describe_errors

_CODE = r"^[A-Z]{2}$"
_ID = r"^[a-z0-9_]+$"
V = TypeVar("V")
# `[table]` headers of a TOML file, to name the field an unparseable value belongs to.
_TABLE = re.compile(r"^\s*\[+\s*([A-Za-z0-9_.\-]+)\s*\]+")
_AT = re.compile(r"\(at line (\d+), column (\d+)\)")
# Validation context for a request read back from the records: the intake rules (not in the
# future, an emergency states its danger) applied when it was received, not again.
STORED = "stored"


class RequestFileError(ValueError):
    """A request file cannot be read or is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _day(value: Any) -> date | None:
    """A date as TOML writes it or a JSON string; anything else is an error saying what is wrong.
    None (JSON null, as records store an absent date) stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        raise ValueError("expected a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        problem = date_problem(value)
        if problem:
            raise ValueError(f"{value} is not a date: {problem}")
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected a date (YYYY-MM-DD)")


def _instant(value: Any) -> datetime | None:
    """Dates mean midnight UTC and naive times are UTC, so deadlines are absolute instants."""
    if value is None:
        return None
    if isinstance(value, str) and "T" not in value.upper() and " " not in value.strip():
        value = _day(value)
    elif isinstance(value, str):
        problem = date_problem(value)
        if problem:
            raise ValueError(f"{value} is not a date-time: {problem}")
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "expected a date (YYYY-MM-DD) or a date-time (YYYY-MM-DDTHH:MM:SSZ)"
            ) from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    raise ValueError("expected a date (YYYY-MM-DD) or a date-time (YYYY-MM-DDTHH:MM:SSZ)")


def _not_future(value: datetime | None, info: ValidationInfo) -> datetime | None:
    context = info.context or {}
    now = context.get("now") or datetime.now(UTC)
    if value is not None and value > now and not context.get(STORED):
        raise ValueError(
            f"{value.isoformat()} is in the future (now: {now.isoformat(timespec='seconds')})"
        )
    return value


class Authority(_Strict):
    name: str = Field(min_length=1)
    country: str = Field(pattern=_CODE)
    kind: str = Field(min_length=1)


class InstrumentSpec(_Strict):
    type: str = Field(pattern=_ID)
    issued_by: IssuerKind
    served_on: str = Field(min_length=1, description="custodian id")
    served: datetime | None = Field(default=None, description="defaults to `received`")
    citation: str | None = None
    offence: str | None = None
    offence_country: str | None = Field(default=None, pattern=_CODE)
    max_penalty_years: StrictInt | None = Field(default=None, ge=0)
    # An offence of e-Evidence Art. 5(4)(b)-(c), by id (see instruments.toml), never by its name.
    listed_offence: str | None = Field(default=None, pattern=_ID)
    by_information_system: StrictBool = False

    _instant = field_validator("served", mode="before")(_instant)
    _not_future = field_validator("served")(_not_future)


class Scope(_Strict):
    accounts: tuple[str, ...] = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=1)
    start: date | None = Field(default=None, alias="from")
    to: date | None = None
    subject_residence: str | None = Field(default=None, pattern=_CODE)

    _days = field_validator("start", "to", mode="before")(_day)

    @field_validator("accounts")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
                raise ValueError(f"not an email address: {json.dumps(address)}")
        return _distinct([a.lower() for a in value], value)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: tuple[Category, ...]) -> tuple[Category, ...]:
        return _distinct(list(value), value)

    @model_validator(mode="after")
    def _ordered(self) -> Scope:
        if self.start and self.to and self.to < self.start:
            raise ValueError(f"'to' ({self.to}) is before 'from' ({self.start})")
        return self


def _distinct(keys: list[str], value: V) -> V:
    """Each demand item must be unique: it gets exactly one decision."""
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return value


class Nondisclosure(_Strict):
    until: date

    _day = field_validator("until", mode="before")(_day)


class LegalRequest(_Strict):
    reference: str = Field(min_length=1)
    received: datetime
    authority: Authority
    instrument: InstrumentSpec
    scope: Scope
    nondisclosure: Nondisclosure | None = None
    emergency: StrictBool = False
    # The danger the requester states (required with `emergency = true`): recorded with who
    # decided and when, because an emergency disclosure is reported as one.
    danger: str | None = Field(default=None, min_length=1)
    _source: Path | None = PrivateAttr(default=None)

    _instant = field_validator("received", mode="before")(_instant)
    _not_future = field_validator("received")(_not_future)

    @model_validator(mode="after")
    def _danger_with_emergency(self, info: ValidationInfo) -> LegalRequest:
        if (info.context or {}).get(STORED):
            return self
        if self.emergency and self.danger is None:
            raise ValueError('an emergency must state the danger: add danger = "..."')
        if self.danger is not None and not self.emergency:
            raise ValueError("'danger' is given but 'emergency' is not true")
        return self

    @property
    def where(self) -> str:
        """What errors about this request name: its file, else its reference."""
        return str(self._source) if self._source else f"request {self.reference}"

    @property
    def served_at(self) -> datetime:
        """When the instrument was served: the moment its deadlines run from."""
        return self.instrument.served or self.received

    @property
    def law_date(self) -> date:
        """The day whose law decides the request."""
        return self.served_at.date()


def parse_request(raw: dict[str, Any], source: Path, now: datetime | None = None) -> LegalRequest:
    """Validate a request; `now` (default: the clock) is what 'in the future' is measured by."""
    try:
        request = LegalRequest.model_validate(raw, context={"now": now})
    except ValidationError as exc:
        raise RequestFileError(describe_errors(source, exc, LegalRequest)) from exc
    request._source = source
    return request


def _toml_problem(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """Name the field of a value TOML cannot parse, and for a date which part is wrong."""
    at = _AT.search(str(exc))
    if at:
        lines = text.splitlines()
        number, column = int(at.group(1)), int(at.group(2))
        line = lines[number - 1] if number <= len(lines) else ""
        key, equals, value = line.partition("=")
        token = value.split("#")[0].split()
        problem = date_problem(token[0]) if token and equals and column > len(key) else None
        if problem:
            tables = [m.group(1) for m in map(_TABLE.match, lines[: number - 1]) if m]
            field = ".".join([*tables[-1:], key.strip()])
            return f"{path}: {field}: {token[0]} is not a date: {problem}"
    return f"{path}: not valid TOML: {exc}"


def load_request(path: Path, now: datetime | None = None) -> LegalRequest:
    """Read a request file; `.json` is JSON, anything else TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RequestFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise RequestFileError(f"{path}: not UTF-8 text") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestFileError(f"{path}: not valid JSON: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RequestFileError(_toml_problem(path, text, exc)) from exc
    if not isinstance(raw, dict):
        raise RequestFileError(f"{path}: (top level): expected a table/object")
    return parse_request(raw, path, now)
