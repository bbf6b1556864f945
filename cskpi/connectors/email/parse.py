"""One fetched mail to the facts threading needs, decoded best-effort and never raising.

Parsing is the stdlib ``email`` package with ``policy.default`` (RFC 5322/6532 header objects:
parsed addresses, ``Date`` as a datetime, encoded words decoded, defects recorded instead of
raised). Mail in the wild breaks every rule, so what it cannot do is done here: 8-bit headers
in a legacy charset are decoded before parsing, an unknown charset falls back to cp1252 and
Latin-1, message ids are picked out of ``References`` junk with a pattern, and a missing or
absurd ``Date`` gives way to the server's INTERNALDATE. https://docs.python.org/3/library/email.policy.html
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

log = logging.getLogger("cskpi.connectors.email.connector")

EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # a sender's clock a few hours fast is not absurd
_MSGID = re.compile(r"<([^<>\s]+)>")
# Address lists plain enough for email.utils: ASCII words, dots and dashes in names, no
# encoded words, quotes, comments, groups or escapes (those go to policy.default).
_SIMPLE_ADDRESSES = re.compile(r"[A-Za-z0-9 .,@<>_+'=-]*")
_FALLBACK_CHARSETS = ("cp1252", "latin-1")  # latin-1 decodes any byte: the last resort
# Auto-replies and bulk mail: RFC 3834 (Auto-Submitted) and the de-facto X- headers.
# https://www.rfc-editor.org/rfc/rfc3834#section-5
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply", "list"})
# Not X-Auto-Response-Suppress: Outlook and Exchange put it on people's own mail too.
_AUTO_HEADERS = ("x-autoreply", "x-autorespond")


@dataclass(frozen=True, slots=True)
class Mail:
    """What the threading needs from one message, wherever it was found."""

    folder: str
    uid: int
    id: str  # stable: a hash of Message-ID, or of date, sender and subject without one
    parents: tuple[str, ...]  # keys of References then In-Reply-To
    sender: str | None  # lower-cased address
    sender_name: str | None
    recipients: tuple[str, ...]  # To and Cc, lower-cased
    subject: str
    sent_at: datetime
    auto: bool
    text: str  # subject and first text part, for a rating pattern (empty when not fetched)


def key(message_id: str) -> str:
    """The short, stable key of a Message-ID (its angle-bracket content)."""
    return hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def parse_mail(folder: str, uid: int, raw: bytes, received: datetime | None, now: datetime) -> Mail:
    """The facts of ``raw`` (headers, and the start of the body when fetched)."""
    head = _Headers(raw, f"{folder} UID {uid}")
    plain_subject = head.raw("subject")
    subject = _clean(plain_subject if "=?" not in plain_subject else str(head.parsed("subject")))
    sender_name, sender = _first_address(head, "from")
    sent_at = _date(head, received, now)
    own = _MSGID.findall(head.raw("message-id"))
    # Without a Message-ID, the same mail still hashes the same way in every rescan.
    mail_id = key(own[0]) if own else key(f"{sent_at.isoformat()}|{sender}|{subject}")
    refs = _MSGID.findall(head.raw("references")) + _MSGID.findall(head.raw("in-reply-to"))
    parents = tuple(dict.fromkeys(key(r) for r in refs if not own or r != own[0]))
    return Mail(
        folder, uid, mail_id, parents, sender, sender_name,
        _addresses(head, ("to", "cc")), subject, sent_at, _is_auto(head),
        _body_text(raw, subject, head.where),
    )  # fmt: skip


class _Headers:
    """The header block: raw values where a pattern is enough (ids, auto-reply markers, plain
    ASCII subjects and addresses), and ``policy.default``'s header objects where structure is
    needed (encoded words, quoted or commented addresses). The default policy's parser is
    exact but costs about a millisecond a message, half of a whole sync, on headers that
    ``email.utils`` reads the same way (benchmarks/email.py)."""

    def __init__(self, raw: bytes, where: str) -> None:
        self.where = where
        head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:  # decoded here, a legacy 8-bit header reads as text
            text = _decode(head, _declared_charset(raw))
            log.warning("%s: headers are not UTF-8; decoded best-effort", where)
        self.msg = Parser(policy=policy.compat32).parsestr(text, headersonly=True)

    def raw(self, name: str) -> str:
        value = self.msg.get(name)
        return "" if value is None else str(value)

    def parsed(self, name: str) -> Any:
        value = self.msg.get(name)
        if value is None:
            return None
        try:
            return policy.default.header_fetch_parse(name, str(value))
        except Exception as exc:  # the registry records defects; this is for the unexpected
            log.warning("%s: unreadable %s header (%s)", self.where, name, exc)
            return None


def _declared_charset(raw: bytes) -> str | None:
    found = re.search(rb'charset="?([A-Za-z0-9_.:-]+)', raw[:8192], re.IGNORECASE)
    return found.group(1).decode("ascii") if found else None


def _decode(raw: bytes, charset: str | None) -> str:
    for candidate in (charset, *_FALLBACK_CHARSETS):
        if not candidate:
            continue
        try:
            return raw.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("latin-1")  # pragma: no cover - latin-1 decodes any byte


def _clean(text: str) -> str:
    """Undecodable bytes (surrogates) as replacement characters; whitespace collapsed."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split())


def _addresses(head: _Headers, names: Sequence[str]) -> tuple[str, ...]:
    found: list[str] = []
    for name in names:
        found += [addr for _, addr in _parsed(head, name) if addr]
    return tuple(dict.fromkeys(found))


def _first_address(head: _Headers, name: str) -> tuple[str | None, str | None]:
    parsed = _parsed(head, name)
    if not parsed:
        return None, None
    display, addr = parsed[0]
    return display or None, addr or None


def _parsed(head: _Headers, name: str) -> list[tuple[str, str]]:
    raw = head.raw(name)
    if _SIMPLE_ADDRESSES.fullmatch(raw):
        pairs = getaddresses([raw])
    else:
        value = head.parsed(name)
        if value is None:
            return []
        try:
            addresses: Sequence[Address] = value.addresses
            pairs = [(a.display_name, a.addr_spec) for a in addresses]
        except Exception:  # a broken address list: the stdlib's lenient splitter instead
            pairs = getaddresses([raw])
    return [(_clean(n), _clean(a).lower()) for n, a in pairs if "@" in a]


def _date(head: _Headers, received: datetime | None, now: datetime) -> datetime:
    """The Date header, unless missing, unparseable or absurd: then INTERNALDATE."""
    try:  # what policy.default's DateHeader does, without building the header object
        stated: datetime | None = parsedate_to_datetime(head.raw("date"))
    except (TypeError, ValueError, IndexError, OverflowError):
        stated = None
    if stated is not None:
        stated = stated.replace(tzinfo=UTC) if stated.tzinfo is None else stated.astimezone(UTC)
        if EARLIEST <= stated <= now + FUTURE_SLACK:
            return stated
    fallback = received.astimezone(UTC) if received is not None else now
    log.warning("%s: Date missing, unparseable or absurd; using INTERNALDATE", head.where)
    return fallback


def _is_auto(head: _Headers) -> bool:
    # "auto-replied; owner-email=..." or "no (comment)": the keyword decides.
    submitted = re.split(r"[\s;(]", head.raw("auto-submitted").strip().lower(), maxsplit=1)[0]
    if submitted and submitted != "no":
        return True
    if any(head.raw(name) for name in _AUTO_HEADERS):
        return True
    return head.raw("precedence").strip().lower() in _BULK_PRECEDENCE


def _body_text(raw: bytes, subject: str, where: str) -> str:
    """Subject and the first text part, for a rating pattern; never the attachments. The
    body is parsed from bytes, so each part is decoded by its own charset."""
    if re.search(rb"\r?\n\r?\n.", raw, re.DOTALL) is None:
        return subject  # headers only were fetched
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        part = msg.get_body(("plain", "html")) if isinstance(msg, EmailMessage) else None
    except Exception:  # a broken MIME tree
        log.warning("%s: broken MIME structure; no body text read", where)
        return subject
    if part is None:
        return subject
    try:
        content = part.get_content()
        body = content if isinstance(content, str) else ""
    except (LookupError, UnicodeError, ValueError, KeyError):
        payload = part.get_payload(decode=True)
        body = _decode(payload, None) if isinstance(payload, bytes) else ""
        log.warning("%s: body in an unknown or broken charset; decoded best-effort", where)
    return f"{subject}\n{body}"
