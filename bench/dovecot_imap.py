"""The IMAP peer of the benchmarks: a throwaway Dovecot 2.3 (Debian's dovecot-imapd) on a
loopback port, any user name with one static password, each user a Maildir under `root`."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

from processes import free_port, wait_for_port

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
PASSWORD = "benchpassword"  # a static passdb argument: no spaces
CONFIG = """base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
default_process_limit = 1000
default_client_limit = 2000
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def available() -> bool:
    return Path(DOVECOT).exists()


def start(
    root: Path, mail: dict[str, list[bytes]], hashed: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """Dovecot serving `root`, with each user's messages in its INBOX (already \\Seen-less
    files in cur/, as a migrated Maildir would have them); returns the process and port.
    `hashed`: the password is checked against an Argon2id hash (m=64 MiB, t=3, as
    Borderline's), so every login costs what it costs Borderline."""
    owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.getuid())
    port = free_port()
    for sub in ("run", "state", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stamp = int(time.time())
    for user, messages in mail.items():
        maildir = root / "home" / user / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for i, message in enumerate(messages):
            (maildir / "cur" / f"{stamp}.M{i}P1.bench:2,").write_bytes(message)
    for path in [root / "home", *(root / "home").rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    password = PASSWORD
    if hashed:
        hashing = [DOVEADM, "pw", "-s", "ARGON2ID", "-p", PASSWORD]
        done = subprocess.run(hashing, capture_output=True, text=True, check=True)
        password = done.stdout.strip()
    (root / "dovecot.conf").write_text(
        CONFIG.format(root=root, password=password, uid=owner.pw_uid, gid=owner.pw_gid, port=port)
    )
    server = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return server, port
