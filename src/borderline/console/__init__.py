"""The web console for legal staff: server-rendered pages over the legal office."""

from borderline.console.routes import mount_console

__all__ = ["mount_console"]
