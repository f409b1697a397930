"""Thunderbird, the real client, against a fresh Borderline: a development check like
imaptest, not part of `make test`.

It serves the example cloud (alice homed in eu-dublin), delivers a few messages to her, and
runs Thunderbird under Xvfb with a profile for her account: IMAP and submission both with
STARTTLS and the region's self-signed certificate accepted, Sent as the identity's copy
folder. Through Thunderbird's remote protocol (Marionette, chrome context) it then loads the
folders and INBOX's headers, sends a message from a compose window (Send Now, which saves
the copy to Sent), renames a folder and moves it to Trash. It checks on the server, with
imaplib, that the message reached INBOX and its copy Sent, and reads Thunderbird's own
protocol log (MOZ_LOG=IMAP:5) to count the commands it sent and print any NO or BAD it got
(with the command that got it).

    .venv/bin/python bench/thunderbird.py [--messages 20] [--keep DIR]

Needs `thunderbird` and `xvfb-run` (Debian: apt-get install thunderbird xvfb); without them
it says so and exits 0. Exit status 1 when a check fails or the server answered NO or BAD.
"""

from __future__ import annotations

import argparse
import collections
import email
import email.policy
import imaplib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import Config, example_config, load_config
from processes import free_port, stop, wait_for_port

ADDRESS = "alice@example.test"
PASSWORD = "thunderbird-password"
REGION = "eu-dublin"
SUBJECT = "Sent from Thunderbird: café"
ROOT = Path(__file__).resolve().parent.parent

# Chrome-context scripts. Each ends by calling `resolve` with what it found.
TRUST = """
const [pem, ports, user, password] = arguments;
const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\\s+/g, "");
const certdb = Cc["@mozilla.org/security/x509certdb;1"].getService(Ci.nsIX509CertDB);
const overrides = Cc["@mozilla.org/security/certoverride;1"].getService(Ci.nsICertOverrideService);
const cert = certdb.constructX509FromBase64(b64);
for (const port of ports) {
  overrides.rememberValidityOverride("127.0.0.1", port, {}, cert, false);
}
const LoginInfo = Components.Constructor(
  "@mozilla.org/login-manager/loginInfo;1", Ci.nsILoginInfo, "init");
(async () => {
  for (const origin of ["imap://127.0.0.1", "smtp://127.0.0.1"]) {
    const login = new LoginInfo(origin, null, origin, user, password, "", "");
    await Services.logins.addLoginAsync(login);
  }
  resolve("ok");
})().catch(e => resolve("error: " + e));
"""

PRELUDE = """
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const sleep = ms => new Promise(r => setTimeout(r, ms));
const server = MailServices.accounts.accounts
  .find(a => a.incomingServer.type == "imap").incomingServer;
const root = server.rootFolder;
const main = Services.wm.getMostRecentWindow("mail:3pane");
const folderNames = () => root.descendants.map(f => f.URI.replace(/^.*?127\\.0\\.0\\.1/, ""));
async function until(test, seconds) {
  for (let i = 0; i < seconds * 4 && !test(); i++) await sleep(250);
  return test();
}
"""

SYNC = """
const [expected] = arguments;
(async () => {
  server.QueryInterface(Ci.nsIImapIncomingServer).performExpand(main.msgWindow);
  let inbox = null;
  await until(() => (inbox = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox)), 30);
  const pane = main.gTabmail.currentAbout3Pane;
  pane.displayFolder(inbox.URI);
  await until(() => pane.gDBView && pane.gDBView.rowCount >= expected, 60);
  // The folder pane fills in as discovery goes (and may briefly drop a folder it re-adds).
  await until(() => ["/Drafts", "/Sent", "/Trash"].every(f => folderNames().includes(f)), 30);
  resolve({ folders: folderNames(), shown: pane.gDBView.rowCount });
})().catch(e => resolve("error: " + e));
"""

SEND = """
const [to, subject, body] = arguments;
(async () => {
  const params = Cc["@mozilla.org/messengercompose/composeparams;1"]
    .createInstance(Ci.nsIMsgComposeParams);
  const fields = Cc["@mozilla.org/messengercompose/composefields;1"]
    .createInstance(Ci.nsIMsgCompFields);
  Object.assign(fields, { to, subject, body });
  Object.assign(params, {
    composeFields: fields,
    identity: MailServices.accounts.defaultAccount.defaultIdentity,
    format: Ci.nsIMsgCompFormat.PlainText,
    type: Ci.nsIMsgCompType.New,
  });
  MailServices.compose.OpenComposeWindowWithParams(null, params);
  let win = null;
  await until(() => (win = Services.wm.getMostRecentWindow("msgcompose"))
    && win.gMsgCompose && win.document.readyState == "complete", 30);
  await sleep(2000);  // the compose window finishes its own setup after "load"
  win.goDoCommand("cmd_sendNow");
  // The window closes once the message is sent and its copy saved to Sent.
  resolve({ closed: await until(() => win.closed, 60) });
})().catch(e => resolve("error: " + e));
"""

FOLDERS = """
const [name, renamed] = arguments;
(async () => {
  Services.prefs.setBoolPref("mailnews.confirm.moveFoldersToTrash", false);
  root.createSubfolder(name, main.msgWindow);
  await until(() => root.getChildNamed(name), 30);
  root.getChildNamed(name).rename(renamed, main.msgWindow);
  await until(() => root.containsChildNamed(renamed), 30);
  await sleep(1000);
  root.getChildNamed(renamed).deleteSelf(main.msgWindow);  // into Trash
  const trash = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Trash);
  await until(() => trash.containsChildNamed(renamed), 30);
  resolve({ folders: folderNames() });
})().catch(e => resolve("error: " + e));
"""

QUIT = """
setTimeout(() => Services.startup.quit(Ci.nsIAppStartup.eAttemptQuit), 200);
resolve("ok");
"""


class Marionette:
    """Just enough of Marionette's protocol (`<length>:<json>` packets, commands
    `[0, id, name, params]` and replies `[1, id, error, result]`) to run chrome scripts."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.file = self.sock.makefile("rb")
        self.ids = 0
        self._packet()  # the server's hello
        self.command("WebDriver:NewSession", {"strictFileInteractability": True})
        self.command("Marionette:SetContext", {"value": "chrome"})
        self.command("WebDriver:SetTimeouts", {"script": 180_000})  # above every `until`

    def _packet(self) -> Any:
        length = b""
        while not length.endswith(b":"):
            byte = self.file.read(1)
            if not byte:
                raise ConnectionError("Marionette closed the connection")
            length += byte
        return json.loads(self.file.read(int(length[:-1])))

    def command(self, name: str, params: dict[str, Any]) -> Any:
        self.ids += 1
        data = json.dumps([0, self.ids, name, params]).encode()
        self.sock.sendall(b"%d:%s" % (len(data), data))
        _, _, error, result = self._packet()
        if error is not None:
            raise RuntimeError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result

    def run(self, script: str, *args: Any) -> Any:
        """A chrome script with `resolve` bound to the callback that ends it."""
        body = "const resolve = arguments[arguments.length - 1];\n" + script
        params = {"script": body, "args": list(args), "sandbox": "system", "newSandbox": False}
        reply = self.command("WebDriver:ExecuteAsyncScript", params)
        value = reply["value"]
        if isinstance(value, str) and value.startswith("error:"):
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextmanager
def cloud(root: Path) -> Iterator[Config]:
    """`borderline serve` for the example cloud with alice's account."""
    config_path = root / "borderline.toml"
    text = example_config(root / "data", base_port=free_base_port())
    config_path.write_text(text + "\n[inbound]\nauthenticate = false\n")
    config = load_config(config_path)
    with Cloud(config) as made:
        made.add_account(ADDRESS, REGION, PASSWORD)
    command = [sys.executable, "-m", "borderline", "serve", "-c", str(config_path)]
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - the process owns it
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
    try:
        for name in ("imap", "submission", "smtp"):
            listen = getattr(config.region(REGION), name)
            wait_for_port(listen.port)
        yield config
    finally:
        stop(server)
        log.close()


def deliver(config: Config, count: int) -> None:
    """`count` messages for alice through her region's MX port."""
    listen = config.region(REGION).smtp
    assert listen is not None
    with smtplib.SMTP(listen.host, listen.port) as smtp:
        for i in range(count):
            message = EmailMessage()
            message["From"] = f"Sender {i} <sender{i}@example.org>"
            message["To"] = ADDRESS
            message["Subject"] = f"message {i}: ünïcode"
            message.set_content(f"body of message {i}\n")
            smtp.send_message(message)


def write_profile(profile: Path, config: Config, marionette_port: int) -> None:
    """prefs for alice's account: what the account setup would have written."""
    section = config.region(REGION)
    assert section.imap is not None and section.submission is not None
    user = ADDRESS.replace("@", "%40")
    prefs: dict[str, object] = {
        "marionette.port": marionette_port,
        "mail.shell.checkDefaultClient": False,
        "mailnews.start_page.enabled": False,
        "mail.rights.version": 1,
        "datareporting.policy.dataSubmissionEnabled": False,
        "app.update.disabledForTesting": True,
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.account.account1.server": "server1",
        "mail.account.account1.identities": "id1",
        "mail.account.account2.server": "server2",
        "mail.server.server1.type": "imap",
        "mail.server.server1.hostname": section.imap.host,
        "mail.server.server1.port": section.imap.port,
        "mail.server.server1.userName": ADDRESS,
        "mail.server.server1.name": "Borderline",
        "mail.server.server1.socketType": 2,  # STARTTLS
        "mail.server.server1.authMethod": 3,  # normal password
        "mail.server.server1.login_at_startup": False,  # until TRUST stored the password
        "mail.server.server2.type": "none",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.identity.id1.fullName": "Alice",
        "mail.identity.id1.useremail": ADDRESS,
        "mail.identity.id1.smtpServer": "smtp1",
        "mail.identity.id1.valid": True,
        "mail.identity.id1.fcc": True,
        "mail.identity.id1.fcc_folder": f"imap://{user}@{section.imap.host}/Sent",
        "mail.identity.id1.draft_folder": f"imap://{user}@{section.imap.host}/Drafts",
        "mail.smtpservers": "smtp1",
        "mail.smtp.defaultserver": "smtp1",
        "mail.smtpserver.smtp1.type": "smtp",
        "mail.smtpserver.smtp1.hostname": section.submission.host,
        "mail.smtpserver.smtp1.port": section.submission.port,
        "mail.smtpserver.smtp1.try_ssl": 2,  # STARTTLS
        "mail.smtpserver.smtp1.authMethod": 3,
        "mail.smtpserver.smtp1.username": ADDRESS,
    }
    profile.mkdir(parents=True)
    lines = (f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
    (profile / "user.js").write_text("".join(lines))


@contextmanager
def thunderbird(profile: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Thunderbird under Xvfb with Marionette, logging its IMAP conversation to `log`."""
    # Thunderbird appends ".moz_log" to the file name it is given.
    env = dict(os.environ, MOZ_LOG="sync,timestamp,IMAP:5", MOZ_LOG_FILE=str(log.with_suffix("")))
    command = ["xvfb-run", "-a", "thunderbird", "--profile", str(profile), "--no-remote"]
    command += ["--marionette", "-remote-allow-system-access"]
    output = open(profile.parent / "thunderbird.out", "wb")  # noqa: SIM115 - the process owns it
    process = subprocess.Popen(
        command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output.close()


def certificate(config: Config) -> Path:
    """The region's self-signed certificate, which `borderline serve` made at start."""
    return config.cloud.data_dir / REGION / "tls" / "cert.pem"


def subjects(config: Config, mailbox: str) -> list[str]:
    """The subjects in `mailbox`, read with imaplib over STARTTLS."""
    listen = config.region(REGION).imap
    assert listen is not None
    context = ssl.create_default_context(cafile=certificate(config))
    with imaplib.IMAP4(listen.host, listen.port) as imap:
        imap.starttls(context)
        imap.login(ADDRESS, PASSWORD)
        imap.select(mailbox, readonly=True)
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        headers = [
            email.message_from_bytes(item[1], policy=email.policy.default)
            for item in data
            if isinstance(item, tuple)
        ]
        return [str(header["Subject"]) for header in headers]


LINE = re.compile(rb"I/IMAP [0-9a-f]+:[^:]*:[^:]*:(SendData|CreateNewLineFromSocket): (.*)")


def conversation(log: Path) -> tuple[collections.Counter[str], list[str]]:
    """Thunderbird's commands by name (`UID FETCH`, ...) and the server's NO and BAD
    replies, from its MOZ_LOG."""
    commands: collections.Counter[str] = collections.Counter()
    refusals = []
    sent: dict[bytes, bytes] = {}
    for match in LINE.finditer(log.read_bytes()):
        kind, text = match.group(1), match.group(2).rstrip(b"\r")
        words = text.split(b" ")
        if kind == b"SendData" and len(words) > 1 and words[0].isdigit():
            name = words[1].upper()
            if name == b"UID" and len(words) > 2:
                name += b" " + words[2].upper()
            commands[name.decode()] += 1
            sent[words[0]] = text
        elif len(words) > 1 and words[1] in (b"NO", b"BAD") and words[0] != b"*":
            refusals.append(f"{sent.get(words[0], b'?').decode()!r} -> {text.decode()!r}")
    return commands, refusals


def check(messages: int, workdir: Path) -> bool:
    with cloud(workdir) as config:
        deliver(config, messages)
        section = config.region(REGION)
        assert section.imap is not None and section.submission is not None
        pem = certificate(config).read_text()
        marionette_port = free_port()
        write_profile(workdir / "profile", config, marionette_port)
        log = workdir / "imap.moz_log"
        results: dict[str, bool] = {}
        with thunderbird(workdir / "profile", log):
            driver = Marionette(marionette_port)
            try:
                ports = [section.imap.port, section.submission.port]
                driver.run(TRUST, pem, ports, ADDRESS, PASSWORD)
                synced = driver.run(PRELUDE + SYNC, messages)
                print(f"folders: {' '.join(synced['folders'])}; INBOX shows {synced['shown']}")
                results["INBOX headers shown"] = synced["shown"] == messages
                results["Sent found"] = "/Sent" in synced["folders"]
                sent = driver.run(PRELUDE + SEND, ADDRESS, SUBJECT, "Hello, Zoë.\n")
                results["compose window sent and closed"] = sent["closed"]
                moved = driver.run(PRELUDE + FOLDERS, "Projects", "Projekte ü")
                results["folder renamed, moved to Trash"] = "/Trash/Projekte ü" in moved["folders"]
                driver.run(QUIT)
            finally:
                driver.close()
        results["message in INBOX"] = SUBJECT in subjects(config, "INBOX")
        results["copy in Sent"] = subjects(config, "Sent") == [SUBJECT]
    commands, refusals = conversation(log)
    print("commands:", ", ".join(f"{name} {n}" for name, n in sorted(commands.items())))
    for name, passed in results.items():
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    for refusal in refusals:
        print("refused:", refusal)
    return all(results.values()) and not refusals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20, help="messages in INBOX first")
    parser.add_argument("--keep", type=Path, help="work here and keep it (logs, profile)")
    args = parser.parse_args()
    missing = [tool for tool in ("thunderbird", "xvfb-run") if shutil.which(tool) is None]
    if missing:
        print(f"skipped: no {' or '.join(missing)} (apt-get install thunderbird xvfb)")
        return 0
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        return 0 if check(args.messages, args.keep) else 1
    with tempfile.TemporaryDirectory() as workdir:
        return 0 if check(args.messages, Path(workdir)) else 1


if __name__ == "__main__":
    sys.exit(main())
