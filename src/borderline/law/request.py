"""Legal request files (TOML or JSON), as DESIGN.md section 5 "Request files" describes them."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from borderline.law.knowledge import Category, IssuerKind, describe_errors

_CODE = r"^[A-Z]{2}$"
V = TypeVar("V")


class RequestFileError(ValueError):
    """A request file cannot be read or is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _as_utc(value: Any) -> Any:
    """Dates mean midnight UTC and naive times are UTC, so deadlines are absolute instants."""
    if isinstance(value, str) and len(value) == 10:
        value = date.fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Authority(_Strict):
    name: str = Field(min_length=1)
    country: str = Field(pattern=_CODE)
    kind: str = Field(min_length=1)


class InstrumentSpec(_Strict):
    type: str = Field(pattern=r"^[a-z0-9_]+$")
    issued_by: IssuerKind
    served_on: str = Field(min_length=1, description="custodian id")
    served: datetime | None = Field(default=None, description="defaults to `received`")
    citation: str | None = None
    offence: str | None = None
    offence_country: str | None = Field(default=None, pattern=_CODE)
    max_penalty_years: int | None = Field(default=None, ge=0)

    _utc = field_validator("served", mode="before")(_as_utc)


class Scope(_Strict):
    accounts: tuple[str, ...] = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=1)
    start: date | None = Field(default=None, alias="from")
    to: date | None = None
    subject_residence: str | None = Field(default=None, pattern=_CODE)

    @field_validator("accounts")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
                raise ValueError(f"not an email address: {address!r}")
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


class LegalRequest(_Strict):
    reference: str = Field(min_length=1)
    received: datetime
    authority: Authority
    instrument: InstrumentSpec
    scope: Scope
    nondisclosure: Nondisclosure | None = None
    emergency: bool = False

    _utc = field_validator("received", mode="before")(_as_utc)

    @property
    def served_at(self) -> datetime:
        """When the instrument was served: the moment its deadlines run from."""
        return self.instrument.served or self.received

    @property
    def law_date(self) -> date:
        """The day whose law decides the request."""
        return self.served_at.date()


def parse_request(raw: dict[str, Any], source: Path) -> LegalRequest:
    try:
        return LegalRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestFileError(describe_errors(source, exc)) from exc


def load_request(path: Path) -> LegalRequest:
    """Read a request file; `.json` is JSON, anything else TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RequestFileError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RequestFileError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raise RequestFileError(f"{path}: (top level): expected a table/object")
    return parse_request(raw, path)
