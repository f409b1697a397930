"""What one IMAP connection may cost: line and literal sizes, output buffering, timeouts."""

LINE_LIMIT = 64 * 1024
OTHER_LITERAL_LIMIT = 64 * 1024
FLUSH_AT = 256 * 1024
PREAUTH_TIMEOUT = 120.0
AUTOLOGOUT = 30 * 60.0  # RFC 9051 5.4: at least 30 minutes, IDLE included
MAX_BAD_COMMANDS = 20
