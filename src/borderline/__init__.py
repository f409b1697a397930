"""Borderline: an email cloud that makes a legal boundary technical."""

__version__ = "0.1.0"
