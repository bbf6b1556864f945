"""Secret references (``env:VAR``, ``keyring:NAME``, ``file:PATH``, literals), the keyring
store, and redaction.

Every value resolved or stored here is remembered for the life of the process so that
:func:`redact` and :class:`RedactingFilter` can scrub it from anything that is printed or
logged, whatever path it took to get there.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import keyring
import keyring.errors
from keyring.backends import fail, null
from pydantic import BeforeValidator, SecretStr, ValidationInfo

SERVICE = "cskpi"
INDEX_ENTRY = "__cskpi_index__"  # keyring cannot enumerate, so the names live in one entry
MASK = "***"
_MIN_REDACTED = 4  # shorter values would mask ordinary words and digits

NO_BACKEND = "no keyring backend is available on this machine; use env:VAR or file:PATH instead"

_log = logging.getLogger("cskpi")
_registered: set[str] = set()


class SecretError(ValueError):
    """A secret reference that cannot be resolved, or a keyring operation that failed."""


def resolve_reference(ref: object, what: str | None = None, base: Path | None = None) -> SecretStr:
    """Turn ``env:VAR``, ``keyring:NAME``, ``file:PATH`` (relative to ``base``) or a literal
    into the secret, and register it."""
    if isinstance(ref, SecretStr):  # already resolved (settings built in code, or re-validated)
        register_secret(ref.get_secret_value())
        return ref
    if not isinstance(ref, str):
        raise SecretError("must be a string: env:VAR, keyring:NAME, file:PATH or the secret itself")
    if not ref:
        raise SecretError("the secret is empty")
    scheme, _, name = ref.partition(":")
    if scheme == "env":
        value = _from_env(name)
    elif scheme == "keyring":
        value = get_secret(name)
    elif scheme == "file":
        value = _from_file(name, base)
    else:
        # Says that a literal is used, never what it is.
        _log.warning(
            "%s is written into the config as a literal secret; prefer env:VAR, keyring:NAME "
            "or file:PATH",
            what or "a secret",
        )
        value = ref
    if not value:
        raise SecretError("the secret is empty")
    register_secret(value)
    return SecretStr(value)


def _validate_secret(value: object, info: ValidationInfo) -> SecretStr:
    base = info.context.get("base") if isinstance(info.context, dict) else None
    return resolve_reference(value, what=info.field_name, base=base)


Secret = Annotated[SecretStr, BeforeValidator(_validate_secret)]
"""A settings field holding a secret: give it a reference, get the resolved ``SecretStr``."""


def _from_env(var: str) -> str:
    if not var:
        raise SecretError("env: needs a variable name, e.g. env:ZENDESK_TOKEN")
    value = os.environ.get(var)
    if value is None:
        raise SecretError(f"environment variable {var} is not set")
    return value


def _from_file(reference: str, base: Path | None) -> str:
    """A file holding the secret: Docker and Kubernetes secrets, systemd's credentials
    (``file:$CREDENTIALS_DIRECTORY/zendesk``). One trailing newline, as editors and
    ``echo`` add, is not part of it."""
    if not reference:
        raise SecretError("file: needs a path, e.g. file:/run/secrets/zendesk_token")
    for var in re.findall(r"\$\{?(\w+)\}?", reference):
        if var not in os.environ:
            raise SecretError(f"file:{reference}: environment variable {var} is not set")
    path = Path(os.path.expandvars(reference)).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"cannot read the secret file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise SecretError(f"cannot read the secret file {path}: {exc.strerror}") from None
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text


def get_secret(name: str) -> str:
    """The secret stored in the keyring under ``name``."""
    _check_name(name)
    with _keyring_errors():
        value = keyring.get_password(SERVICE, name)
    if value is None:
        raise SecretError(f"keyring has no secret {name}; run `cskpi secrets set {name}`")
    register_secret(value)
    return value


def set_secret(name: str, value: str) -> None:
    """Store ``value`` under ``name`` in the OS keyring (replacing any previous value)."""
    _check_name(name)
    if not value:
        raise SecretError("the secret is empty")
    register_secret(value)
    with _keyring_errors():
        keyring.set_password(SERVICE, name, value)
        _write_index(_read_index() | {name})


def delete_secret(name: str) -> None:
    """Remove ``name`` from the keyring; a clear error if there is no such secret."""
    _check_name(name)
    with _keyring_errors():
        present = keyring.get_password(SERVICE, name) is not None
        if present:
            keyring.delete_password(SERVICE, name)
        _write_index(_read_index() - {name})
    if not present:
        raise SecretError(f"keyring has no secret {name}")


def check_backend() -> None:
    """:class:`SecretError` when no keyring backend can store a secret: said before anyone
    types one in."""
    if _no_backend():
        raise SecretError(NO_BACKEND)


def list_secrets() -> list[str]:
    """Names of the secrets stored through cskpi, sorted."""
    with _keyring_errors():
        return sorted(_read_index())


def _check_name(name: str) -> None:
    if not name or name != name.strip() or name == INDEX_ENTRY:
        raise SecretError(
            f"a secret name must be non-empty, without surrounding spaces, and not {INDEX_ENTRY}"
        )


def _read_index() -> set[str]:
    raw = keyring.get_password(SERVICE, INDEX_ENTRY)
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        names = []  # a damaged index only loses the listing, never a secret
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _write_index(names: set[str]) -> None:
    keyring.set_password(SERVICE, INDEX_ENTRY, json.dumps(sorted(names)))


@contextmanager
def _keyring_errors() -> Iterator[None]:
    if _no_backend():
        raise SecretError(NO_BACKEND)
    try:
        yield
    except keyring.errors.NoKeyringError:
        raise SecretError(NO_BACKEND) from None
    except keyring.errors.KeyringLocked:
        raise SecretError("the keyring is locked; unlock it and try again") from None
    except keyring.errors.KeyringError as exc:
        raise SecretError(f"the keyring failed ({type(exc).__name__}): {exc}") from None


def _no_backend() -> bool:
    return isinstance(keyring.get_keyring(), fail.Keyring | null.Keyring)


def register_secret(value: str) -> None:
    """Remember ``value``, its URL-encoded and its base64 forms, so that :func:`redact` hides
    it however it is echoed back (a proxy repeating ``Authorization: Basic …``). For a Basic
    credential register ``user:password`` too: its base64 is not made of the parts' own."""
    encoded = base64.b64encode(value.encode()).decode()
    forms = {
        value,
        quote(value, safe=""),
        encoded,
        encoded.rstrip("="),
        base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
    }
    _registered.update(form for form in forms if len(form) >= _MIN_REDACTED)


def forget_secrets() -> None:
    """Empty the redaction registry (tests; a process otherwise keeps it for its lifetime)."""
    _registered.clear()


# Credential-carrying header values, whoever's they are (a server or proxy echoing a request):
# `Authorization: Basic …`, `"x-api-key": "…"`, `Cookie=…`. The scheme word stays visible.
_HEADER = re.compile(
    r"""(?ix)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|(?:set-)?cookie)
    (["']?\s*[:=]\s*["']?)((?:basic|bearer|token|digest)\s+)?([^\s"',;)\]}]+)"""
)
_BASIC = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/_-]{6,}={0,2})")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/-]{12,}=*)")


def redact(text: str) -> str:
    """``text`` with every registered secret, its encodings, and any credential header value
    replaced by ``***``."""
    for value in sorted(_registered, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{MASK}", text)
    text = _BASIC.sub(lambda m: m[1] + MASK if _is_basic(m[2]) else m[0], text)
    return _BEARER.sub(lambda m: m[1] + MASK if re.search(r"[\d._~+/-]", m[2]) else m[0], text)


def _is_basic(token: str) -> bool:
    """A Basic credential: base64 of ``user:password`` (not the word after "basic" in prose)."""
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets from a record's message, exception and stack text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's to report, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


REDACTING_FILTER = RedactingFilter()


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Attach :data:`REDACTING_FILTER` to ``logger`` (default: root) and its current handlers.

    Filters on a logger only see records logged on that very logger; handler filters see
    everything that propagates, so handlers added later need ``addFilter(REDACTING_FILTER)``.
    """
    target = logger if logger is not None else logging.getLogger()
    for filterer in (target, *target.handlers):
        if REDACTING_FILTER not in filterer.filters:
            filterer.addFilter(REDACTING_FILTER)
