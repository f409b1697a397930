"""A real rspamd (Debian's package) on a loopback port: its normal worker only, with a
minimal configuration of its own (no Redis, no DNS lists), for spam-scoring tests.

rspamd scores the GTUBE test string without any rule set, at its reject threshold (15
here); rspamd 3.4 knows no other test strings."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from tests.internet.components import free_port, require_program, wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_SCORE = 15.0
STARTUP_SECONDS = 120  # it compiles its TLD list first: tens of seconds on a busy machine


class RspamdServer:
    def __init__(self) -> None:
        self.rspamd = require_program("/usr/bin/rspamd", "rspamd")
        self.root = Path(tempfile.mkdtemp(prefix="borderline-rspamd-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.root / "db").mkdir()
        config = self.root / "rspamd.conf"
        config.write_text(
            "options {\n"
            f'  pidfile = "{self.root}/rspamd.pid";\n'
            f'  dbdir = "{self.root}/db";\n'
            f'  tempdir = "{self.root}";\n'
            '  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.5s; retransmits = 1; }\n'
            "}\n"
            f'logging {{ type = "file"; filename = "{self.root}/rspamd.log"; level = "info"; }}\n'
            f"actions {{ reject = {GTUBE_SCORE}; add_header = 6; }}\n"
            f'worker "normal" {{ bind_socket = "127.0.0.1:{self.port}"; count = 1; }}\n'
        )
        user: list[str] = []
        if os.geteuid() == 0:  # rspamd refuses to run as root: its own user, then
            owner = pwd.getpwnam("_rspamd")
            for path in (self.root, self.root / "db"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            user = ["-u", "_rspamd", "-g", "_rspamd"]
        self.process = subprocess.Popen(
            [self.rspamd, "-f", *user, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, STARTUP_SECONDS, f"rspamd on port {self.port} ({self.root})")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as reply:
                return bool(reply.read().strip() == b"pong")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)
