"""Transparency reports and the public view of the access logs they are checked against."""

from borderline.report.logview import Format1Details, LogEvent, LogSnapshot, region_verifier_key

__all__ = ["Format1Details", "LogEvent", "LogSnapshot", "region_verifier_key"]
