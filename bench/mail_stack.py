"""The stack a provider runs, as a benchmark peer: Postfix -> Dovecot LMTP -> Maildir.

A throwaway instance in a temporary folder, on loopback ports: Postfix (its own config,
queue and log; `postfix -c DIR start`) relays the cloud's domain over LMTP to Dovecot
(`mail_fsync = always`), which writes each message into the recipient's Maildir. Postfix
answers 250 once the message is in its queue (fsynced); it is delivered when Dovecot has
written it to `Maildir/new`. Needs root (Postfix's master runs as root) and Debian's
postfix and dovecot-lmtpd packages (`make bench` installs them).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from processes import free_port, wait_for_port

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
DOVECOT_LMTP = "/usr/lib/dovecot/lmtp"

DOVECOT_CONFIG = """base_dir = {root}/dovecot/run
state_dir = {root}/dovecot/state
log_path = {root}/dovecot/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = always
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
"""
# Debian's defaults except what a second instance on loopback needs: its own folders, no
# local delivery, the cloud's domain relayed to Dovecot over LMTP.
POSTFIX_MAIN = """compatibility_level = 3.6
queue_directory = {root}/postfix/queue
data_directory = {root}/postfix/data
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/postfix/postfix.log
maillog_file_prefixes = {root}
myhostname = peer.example.org
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domain}
relay_recipient_maps =
relay_transport = lmtp:inet:127.0.0.1:{lmtp_port}
alias_maps =
alias_database =
biff = no
"""
# Debian's master.cf services, not chrooted (the queue is a temporary folder).
POSTFIX_MASTER = """127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    if os.geteuid() != 0:
        return "Postfix's master must run as root"
    for path, package in ((POSTFIX, "postfix"), (DOVECOT_LMTP, "dovecot-lmtpd")):
        if not Path(path).exists():
            return f"{path} not found (apt-get install {package})"
    return None


class MailStack:
    """Postfix and Dovecot LMTP under `root`, for mail to `domain`."""

    def __init__(self, root: Path, domain: str) -> None:
        self.root = root
        self.smtp_port = free_port()
        lmtp_port = free_port()
        nobody = pwd.getpwnam("nobody")
        postfix = pwd.getpwnam("postfix")
        for sub in ("dovecot/run", "dovecot/state", "home", "postfix/queue", "postfix/data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        os.chown(root / "home", nobody.pw_uid, nobody.pw_gid)
        os.chown(root / "postfix/data", postfix.pw_uid, postfix.pw_gid)
        (root / "dovecot/dovecot.conf").write_text(
            DOVECOT_CONFIG.format(
                root=root, uid=nobody.pw_uid, gid=nobody.pw_gid, lmtp_port=lmtp_port
            )
        )
        (root / "postfix/main.cf").write_text(
            POSTFIX_MAIN.format(root=root, domain=domain, lmtp_port=lmtp_port)
        )
        (root / "postfix/master.cf").write_text(POSTFIX_MASTER.format(smtp_port=self.smtp_port))
        # Both daemonize: their output goes to their logs, not to pipes they would keep open.
        for command in (
            [DOVECOT, "-c", str(root / "dovecot/dovecot.conf")],
            [POSTFIX, "-c", str(root / "postfix"), "start"],
        ):
            subprocess.run(
                command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        wait_for_port(lmtp_port)
        wait_for_port(self.smtp_port)

    def delivered(self, user: str) -> int:
        """Messages Dovecot has written into the user's Maildir."""
        try:
            return len(os.listdir(self.root / "home" / user / "Maildir" / "new"))
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        for command in (
            [POSTFIX, "-c", str(self.root / "postfix"), "stop"],
            [DOVECOT, "-c", str(self.root / "dovecot/dovecot.conf"), "stop"],
        ):
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.root, ignore_errors=True)
