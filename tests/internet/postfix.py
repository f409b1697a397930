"""A real Postfix (Debian's package) as "the remote MTA": its own config, queue and log
under a temporary directory, one SMTP listener on a free loopback port.

It receives mail over SMTP (STARTTLS offered with a certificate the test chooses) and
delivers it with virtual(8) into Maildirs the test reads; and it sends mail wherever the
test routes a domain (a transport map entry `smtp:[host]:port`), so a test can inject
"Internet" mail into a server under test and read the outcome from Postfix's own log."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from tests.internet.components import component_missing, free_port, require_program, wait_for

# One line of a delivery attempt in Postfix's log, e.g.
# "postfix/smtp[12]: 4Xyz: to=<a@b.test>, relay=127.0.0.1[127.0.0.1]:2525, ..., dsn=2.0.0,
#  status=sent (250 ok)"
_STATUS = re.compile(
    r"postfix(?:-\S+)?/(?P<agent>[\w-]+)\[\d+\]: (?P<queue_id>[0-9A-Za-z]+): "
    r"to=<(?P<recipient>[^>]*)>,(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]*), .*?"
    r"dsn=(?P<dsn>[\d.]+), status=(?P<status>\w+) \((?P<detail>.*)\)$"
)
_QUEUED = re.compile(r"queued as (?P<queue_id>[0-9A-Za-z]+)")

# Daemons master(8) runs; none chrooted (column 5 "n"), so no copy of /etc is needed.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass(frozen=True)
class Outcome:
    """What Postfix logged for one recipient of one queued message."""

    recipient: str
    status: str  # sent, deferred, bounced, expired
    dsn: str
    relay: str
    detail: str


class PostfixServer:
    def __init__(
        self,
        domains: Iterable[str] = ("remote.test",),
        hostname: str = "mx.remote.test",
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        if os.geteuid() != 0:
            component_missing("the Postfix fixture runs `postfix start`, which needs root")
        self.postfix = require_program("/usr/sbin/postfix", "postfix")
        try:
            self.owner = pwd.getpwnam("postfix")
        except KeyError:
            component_missing("no `postfix` user (apt-get install postfix)")
        self.domains = tuple(domains)
        self.hostname = hostname
        self.root = Path(tempfile.mkdtemp(prefix="borderline-postfix-"))
        self.port = free_port()
        self.certificate = certificate
        self.routes: dict[str, tuple[str, int]] = {}
        self.running = False

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log_file(self) -> Path:
        return self.root / "maillog"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    def start(self) -> None:
        self.root.chmod(0o755)  # the postfix and nobody users must reach their directories
        self.config_dir.mkdir()
        (self.root / "queue").mkdir()
        nobody = pwd.getpwnam("nobody")
        self.mail_dir.mkdir()
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        (self.config_dir / "vmailbox").write_text(
            "".join(f"@{domain} {domain}/\n" for domain in self.domains)
        )
        self._write_transport()
        tls = ""
        if self.certificate is not None:
            cert, key = self.certificate
            tls = f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
        (self.config_dir / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            f"queue_directory = {self.root}/queue\n"
            f"data_directory = {self.root}/data\n"
            f"maillog_file = {self.log_file}\nmaillog_file_prefixes = {self.root}\n"
            "mail_owner = postfix\n"
            "setgid_group = postdrop\n"
            f"myhostname = {self.hostname}\n"
            "mydestination =\n"
            "inet_interfaces = 127.0.0.1\n"
            "inet_protocols = ipv4\n"
            "mynetworks = 127.0.0.0/8\n"
            "smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination\n"
            "smtpd_peername_lookup = no\n"
            "smtp_dns_support_level = disabled\n"
            "alias_maps =\nalias_database =\nbiff = no\nappend_dot_mydomain = no\n"
            "smtputf8_enable = yes\n"
            f"virtual_mailbox_domains = {' '.join(self.domains)}\n"
            f"virtual_mailbox_base = {self.mail_dir}\n"
            f"virtual_mailbox_maps = texthash:{self.config_dir}/vmailbox\n"
            f"virtual_uid_maps = static:{nobody.pw_uid}\n"
            f"virtual_gid_maps = static:{nobody.pw_gid}\n"
            f"transport_maps = texthash:{self.config_dir}/transport\n"
            "smtpd_tls_security_level = may\n"
            f"{tls}"
            "smtp_tls_security_level = may\n"
            "smtp_tls_loglevel = 1\n"
            "smtpd_tls_loglevel = 1\n"
            "smtpd_tls_received_header = yes\n"
            # Fast retries, so a test of a deferral does not wait minutes.
            "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"
            "delay_warning_time = 0\n"
        )
        (self.config_dir / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n" + _SERVICES
        )
        self._postfix("start")
        self.running = True
        wait_for(self._accepts, 15, f"Postfix smtpd on port {self.port}")

    def route(self, domain: str, host: str, port: int) -> None:
        """Send mail for `domain` (and nothing else changes) to host:port, no MX lookup."""
        self.routes[domain] = (host, port)
        self._write_transport()
        self._reload()

    def postconf(self, **parameters: str) -> None:
        """Change main.cf parameters (e.g. smtp_tls_security_level="encrypt") and reload."""
        self._run(
            "postconf",
            "-c",
            str(self.config_dir),
            "-e",
            *(f"{name}={value}" for name, value in parameters.items()),
        )
        self._reload()

    def _reload(self) -> None:
        """Reload, and wait until the daemons started under the old configuration are gone,
        so the next connection is served with the new one."""
        old = self._daemons()
        self._postfix("reload")
        wait_for(lambda: not (old & self._daemons()), 15, "Postfix daemons to restart")

    def _daemons(self) -> set[int]:
        """The processes master(8) started (itself excluded)."""
        master = self._master_pid()
        found = set()
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
            except (OSError, ValueError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found.add(int(entry.name))
        return found

    def send(self, message: EmailMessage | bytes, sender: str, recipients: list[str]) -> str:
        """Hand a message to this Postfix over SMTP (as a local client, so it may relay);
        returns its queue id."""
        data = message.as_bytes() if isinstance(message, EmailMessage) else message
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("client.test")
            code, reply = client.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, sender)
            for recipient in recipients:
                code, reply = client.rcpt(recipient)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            code, reply = client.data(data)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        found = _QUEUED.search(reply.decode())
        if found is None:
            raise RuntimeError(f"no queue id in the reply to DATA: {reply!r}")
        return found["queue_id"]

    def log_lines(self, queue_id: str | None = None) -> list[str]:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        if queue_id is None:
            return lines
        return [line for line in lines if f" {queue_id}: " in line]

    def outcomes(self, queue_id: str) -> list[Outcome]:
        """Every delivery attempt logged for the queue id so far, in order."""
        found = []
        for line in self.log_lines(queue_id):
            match = _STATUS.search(line)
            if match is not None:
                found.append(
                    Outcome(
                        match["recipient"],
                        match["status"],
                        match["dsn"],
                        match["relay"],
                        match["detail"],
                    )
                )
        return found

    def wait_outcome(self, queue_id: str, timeout: float = 30) -> Outcome:
        """The first delivery attempt Postfix logs for the queue id (sent, deferred, bounced)."""
        return wait_for(
            lambda: next(iter(self.outcomes(queue_id)), None),
            timeout,
            f"a delivery outcome for {queue_id} in {self.log_file}",
        )

    def maildir(self, domain: str) -> Path:
        return self.mail_dir / domain

    def delivered(self, domain: str) -> list[bytes]:
        """The messages delivered to `domain` so far, oldest first."""
        new = self.maildir(domain) / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda path: path.stat().st_mtime_ns)
        return [path.read_bytes() for path in files]

    def wait_delivered(self, domain: str, count: int = 1, timeout: float = 30) -> list[bytes]:
        return wait_for(
            lambda: (lambda got: got if len(got) >= count else None)(self.delivered(domain)),
            timeout,
            f"{count} message(s) in the Maildir of {domain}",
        )

    def stop(self) -> None:
        if self.running:
            master = self._master_pid()
            self._postfix("stop")
            self.running = False
            if master is not None:
                wait_for(lambda: not Path(f"/proc/{master}").exists(), 15, "master(8) to exit")
        shutil.rmtree(self.root, ignore_errors=True)

    def _master_pid(self) -> int | None:
        try:
            return int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def _write_transport(self) -> None:
        (self.config_dir / "transport").write_text(
            "".join(f"{d} smtp:[{host}]:{port}\n" for d, (host, port) in self.routes.items())
        )

    def _postfix(self, command: str) -> None:
        self._run(self.postfix, "-c", str(self.config_dir), command)

    def _run(self, *command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = "\n".join(self.log_lines()[-20:])
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}\n{log}")

    def _accepts(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                return client.noop()[0] == 250
        except OSError:
            return False
