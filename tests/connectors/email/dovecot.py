"""A throwaway Dovecot IMAP server on 127.0.0.1, for the email connector's tests and benchmark.

Debian's ``dovecot-imapd`` (``/usr/sbin/dovecot``, installed by ``scripts/test`` when missing)
is started with its own config, base_dir, passwd-file user and Maildir in a fresh temporary
folder; nothing of the system's Dovecot is used. Plain IMAP without TLS: the connector allows
``tls = "none"`` only for 127.0.0.1.

Run as root (CI), Dovecot's login processes drop to ``dovenull`` and refuse to serve mail as
uid 0, so the mail user is ``nobody`` and owns the folder. Run as another user, everything runs
as that user. https://doc.dovecot.org/2.3/configuration_manual/
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "support@acme.test", "dovecot-test-password"
SPARE_USERS = 32

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:{root}/mail/%n
mail_uid = {uid}
mail_gid = {gid}
mail_privileged_group =
mail_access_groups =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
  mechanisms = plain login
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Resolved {{
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


# Dovecot 2.3's oauth2 passdb (built into dovecot-core), asking a test's introspection
# endpoint about each token: https://doc.dovecot.org/2.3/configuration_manual/authentication/oauth2/
# No failure delay and no anvil penalty for 127.0.0.1, so refused tokens answer at once.
_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
_OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
"""


def available() -> bool:
    return Path(DOVECOT).is_file() and os.access(DOVECOT, os.X_OK)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accounts() -> tuple[str, str, int, int]:
    """(internal user, login user, mail uid, mail gid) for the current process."""
    if os.getuid() == 0:
        mail = pwd.getpwnam("nobody")
        return "dovecot", "dovenull", mail.pw_uid, mail.pw_gid
    me = pwd.getpwuid(os.getuid())
    return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid


@dataclass
class Dovecot:
    """One running Dovecot: ``start()``, fill it over IMAP with ``append``, ``stop()``."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cskpi-dovecot-")))
    port: int = field(default_factory=_free_port)
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD
    handed_out: int = 0
    introspection_url: str | None = None  # set: XOAUTH2 and OAUTHBEARER asking this URL

    def start(self) -> None:
        internal, login, uid, gid = _accounts()
        self.root.chmod(0o755)  # login processes (dovenull) must reach base_dir
        (self.root / "mail").mkdir()
        os.chown(self.root / "mail", uid, gid)
        users = [self.user] + [f"box{n}@acme.test" for n in range(1, SPARE_USERS + 1)]
        (self.root / "users").write_text("".join(f"{u}:{{PLAIN}}{self.password}\n" for u in users))
        config = self.root / "dovecot.conf"
        values = {"root": self.root, "port": self.port, "uid": uid, "gid": gid}
        values.update(self._oauth2())
        config.write_text(_CONFIG.format(internal=internal, login=login, **values))
        # Without -F the master daemonizes after its listeners are bound: ready on return.
        # Its output goes to a file: a pipe would stay open in the daemon and block run().
        with (self.root / "start.log").open("wb") as out:
            subprocess.run([DOVECOT, "-c", str(config)], check=True, stdout=out, stderr=out)

    def _oauth2(self) -> dict[str, str]:
        if self.introspection_url is None:
            return {"oauth2_mechanisms": "", "oauth2_passdb": ""}
        ext = self.root / "dovecot-oauth2.conf.ext"
        ext.write_text(_OAUTH2_CONF.format(url=self.introspection_url))
        return {"oauth2_mechanisms": " xoauth2 oauthbearer",
                "oauth2_passdb": _OAUTH2_PASSDB.format(root=self.root)}  # fmt: skip

    def mailbox(self) -> Dovecot:
        """Another empty mailbox on this server, so that tests can share one server; the
        users are written before start (Dovecot caches the passwd-file by its mtime, which
        a quick second write may not change). Do not stop() the copy."""
        self.handed_out += 1
        if self.handed_out > SPARE_USERS:
            raise RuntimeError(f"only {SPARE_USERS} spare mailboxes; start another Dovecot")
        return replace(self, user=f"box{self.handed_out}@acme.test")

    def stop(self) -> None:
        """SIGTERM to the master, which ends its children and itself: `dovecot stop` does the
        same and then waits for it, 2.5 s a server that no test needs (each server has its
        own folder and port)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.root / "run" / "master.pid").read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self) -> IMAPClient:
        imap = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        imap.login(self.user, self.password)
        return imap

    def append(self, folder: str, messages: list[bytes], when: datetime | None = None) -> None:
        """APPEND each message to ``folder`` (created when missing), in order."""
        with self.client() as imap:
            if not imap.folder_exists(folder):
                imap.create_folder(folder)
            for raw in messages:
                imap.append(folder, raw, msg_time=when)

    def recreate(self, folder: str) -> list[bytes]:
        """Delete ``folder`` and create it again with the same mail: a new UIDVALIDITY."""
        with self.client() as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search("ALL")
            fetched = imap.fetch(uids, ["RFC822", "INTERNALDATE"]) if uids else {}
            imap.close_folder()
            imap.delete_folder(folder)
            imap.create_folder(folder)
            for uid in sorted(fetched):
                item = fetched[uid]
                imap.append(folder, item[b"RFC822"], msg_time=item[b"INTERNALDATE"])
        return [fetched[uid][b"RFC822"] for uid in sorted(fetched)]
