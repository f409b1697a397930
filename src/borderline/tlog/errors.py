"""Errors of the transparency log; callers tell tampering apart from misuse by type."""


class TlogError(Exception):
    """Base class for every transparency-log error."""


class VerificationError(TlogError):
    """A proof, signature, checkpoint or stored tile did not verify."""


class CorruptLogError(TlogError):
    """The stored log contradicts its own signed checkpoint; it must not be extended."""


class LogLockedError(TlogError):
    """Another process holds the log open."""
