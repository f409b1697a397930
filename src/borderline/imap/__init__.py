"""The IMAP server: IMAP4rev1 with the extensions real clients use, per region."""

from borderline.imap.server import LoginThrottle, RegionImap

__all__ = ["LoginThrottle", "RegionImap"]
