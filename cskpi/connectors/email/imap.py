"""The IMAP side of the email connector: connect, log in, and fetch new mail read-only.

Built on imapclient (https://imapclient.readthedocs.io/): it parses IMAP responses (FETCH
literals, LIST flags, SELECT data) into Python values, does STARTTLS and SPECIAL-USE folder
detection, and is maintained; imaplib would leave all of that to us.

Nothing here changes the mailbox: folders are opened with EXAMINE (``readonly=True``) and
bodies fetched with ``BODY.PEEK``, so no ``\\Seen`` flag is set (RFC 3501 §6.3.2, §6.4.5).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from imapclient.imapclient import SENT

from cskpi.connectors.email.oauth2 import TokenSource
from cskpi.connectors.email.sasl import sign_in
from cskpi.core.http.client import AuthError

log = logging.getLogger("cskpi.connectors.email.connector")

HEADER_FIELDS = (
    "MESSAGE-ID IN-REPLY-TO REFERENCES DATE FROM TO CC SUBJECT AUTO-SUBMITTED X-AUTOREPLY "
    "X-AUTORESPOND PRECEDENCE CONTENT-TYPE CONTENT-TRANSFER-ENCODING"
)
HEADER_ITEM = f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]"
TEXT_BYTES = 16384  # the start of the body holds the first text part; attachments stay put
TEXT_ITEM = f"BODY.PEEK[TEXT]<0.{TEXT_BYTES}>"
TIMEOUT = 60.0


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    tls: str  # ssl | starttls | none
    username: str
    password: str | None  # None: signed in with OAuth2 (``oauth``)
    ca_bundle: str | None
    secret_hint: str  # which setting holds the password, for the error message
    oauth: TokenSource | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    folder: str
    uid: int
    raw: bytes  # the header fields, then (when asked for) the start of the body
    received: datetime | None  # INTERNALDATE


@contextmanager
def session(login: Login) -> Iterator[IMAPClient]:
    """A logged-in client; a refused login raises AuthError naming the secret to fix."""
    context = ssl.create_default_context(cafile=login.ca_bundle)
    try:
        client = IMAPClient(
            login.host, port=login.port, ssl=login.tls == "ssl", ssl_context=context,
            timeout=TIMEOUT,
        )  # fmt: skip
    except OSError as exc:  # refused, unresolvable, timed out, or a TLS failure
        raise ConnectionError(
            f"cannot reach the IMAP server {login.host}:{login.port} (tls = {login.tls}): {exc}"
        ) from exc
    try:
        if login.tls == "starttls":
            client.starttls(context)
        client.normalise_times = False  # aware INTERNALDATEs, not local naive times
        _sign_in(client, login)
        yield client
    finally:
        _close(client)


def _sign_in(client: IMAPClient, login: Login) -> None:
    if login.oauth is not None:
        sign_in(client, login.username, login.oauth, login.host)
        return
    try:
        client.login(login.username, login.password)
    except LoginError:
        raise AuthError(
            f"the IMAP server {login.host} refused the login of {login.username}: "
            f"check {login.secret_hint}"
        ) from None


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # a dead connection is closed either way
        client.shutdown()


def sent_folder(client: IMAPClient) -> str | None:
    """The folder flagged ``\\Sent`` (RFC 6154 SPECIAL-USE), else a commonly named one."""
    found = client.find_special_folder(SENT)
    return str(found) if found else None


def examine(client: IMAPClient, folder: str) -> int:
    """Open ``folder`` read-only; its UIDVALIDITY."""
    info = client.select_folder(folder, readonly=True)
    return int(info[b"UIDVALIDITY"])


def new_mail(
    client: IMAPClient, folder: str, after_uid: int, chunk: int, with_text: bool
) -> Iterator[tuple[int, list[Fetched]]]:
    """The mail of the examined ``folder`` with a UID above ``after_uid``, in UID order, a
    chunk at a time with the chunk's last UID (mail expunged meanwhile is left out).
    ``UID n:*`` always matches the last message, hence the filter."""
    uids = sorted(u for u in client.search(["UID", f"{after_uid + 1}:*"]) if u > after_uid)
    items = [HEADER_ITEM, "INTERNALDATE"] + ([TEXT_ITEM] if with_text else [])
    for start in range(0, len(uids), chunk):
        batch = uids[start : start + chunk]
        answer = client.fetch(batch, items)
        yield batch[-1], [_fetched(folder, uid, answer[uid]) for uid in batch if uid in answer]


def _fetched(folder: str, uid: int, data: dict[bytes, object]) -> Fetched:
    header = _item(data, b"BODY[HEADER")
    text = _item(data, b"BODY[TEXT]")
    received = data.get(b"INTERNALDATE")
    return Fetched(
        folder, uid, header.rstrip(b"\r\n") + b"\r\n\r\n" + text,
        received if isinstance(received, datetime) else None,
    )  # fmt: skip


def _item(data: dict[bytes, object], prefix: bytes) -> bytes:
    """A FETCH item by the start of its name: servers echo section names differently."""
    for name, value in data.items():
        if name.upper().startswith(prefix) and isinstance(value, bytes):
            return value
    return b""


def check_folders(client: IMAPClient, folders: Sequence[str]) -> None:
    for folder in folders:
        examine(client, folder)
