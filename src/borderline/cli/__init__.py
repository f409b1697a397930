"""The `borderline` command."""

from borderline.cli.app import app, main

__all__ = ["app", "main"]
