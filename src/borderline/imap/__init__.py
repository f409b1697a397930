"""The IMAP server: IMAP4rev1 with the extensions real clients use, per region."""

from borderline.imap.server import RegionImap
from borderline.throttle import LoginThrottle

__all__ = ["LoginThrottle", "RegionImap"]
