"""The law as data (jurisdictions, instruments, laws, Cedar policies) and the policy engine."""

from borderline.law.engine import (
    CedarEvaluationError,
    Deadline,
    Decision,
    Item,
    LawEngine,
    LawError,
    Location,
    Obligation,
    Outcome,
    Reason,
)
from borderline.law.explain import explain_json, explain_text
from borderline.law.facts import AccountLocation, Custodian, Facts, Region, StaticFacts
from borderline.law.knowledge import CATEGORIES, EXAMPLES, Category, LawBook, LawDataError
from borderline.law.request import LegalRequest, RequestFileError, load_request, parse_request

__all__ = [
    "CATEGORIES",
    "EXAMPLES",
    "AccountLocation",
    "Category",
    "CedarEvaluationError",
    "Custodian",
    "Deadline",
    "Decision",
    "Facts",
    "Item",
    "LawBook",
    "LawDataError",
    "LawEngine",
    "LawError",
    "LegalRequest",
    "Location",
    "Obligation",
    "Outcome",
    "Reason",
    "Region",
    "RequestFileError",
    "StaticFacts",
    "explain_json",
    "explain_text",
    "load_request",
    "parse_request",
]
