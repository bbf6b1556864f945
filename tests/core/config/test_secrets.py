from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail, null
from pydantic import BaseModel, SecretStr

from cskpi.core.config import secrets
from cskpi.core.config.secrets import (
    INDEX_ENTRY,
    SERVICE,
    RedactingFilter,
    Secret,
    SecretError,
    delete_secret,
    install_redaction,
    list_secrets,
    redact,
    register_secret,
    resolve_reference,
    set_secret,
)
from tests.conftest import MemoryKeyring

TOKEN = "tok-8f3a9c1e77"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def collected() -> Iterator[tuple[logging.Logger, _Collect]]:
    logger = logging.getLogger("cskpi.tests.redaction")
    handler = _Collect()
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)
    logger.filters.clear()
    logger.propagate = True


# --- resolving references ---------------------------------------------------------------


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZD_TOKEN", TOKEN)
    assert resolve_reference("env:ZD_TOKEN").get_secret_value() == TOKEN
    assert redact(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"


def test_env_reference_unset() -> None:
    with pytest.raises(SecretError) as info:
        resolve_reference("env:ZD_TOKEN")
    assert str(info.value) == "environment variable ZD_TOKEN is not set"


def test_keyring_reference(isolated: MemoryKeyring) -> None:
    isolated.passwords[(SERVICE, "acme")] = TOKEN
    assert resolve_reference("keyring:acme").get_secret_value() == TOKEN
    assert redact(TOKEN) == "***"


def test_keyring_reference_missing_names_the_fix() -> None:
    with pytest.raises(SecretError) as info:
        resolve_reference("keyring:acme")
    assert str(info.value) == "keyring has no secret acme; run `cskpi secrets set acme`"


@pytest.mark.parametrize("backend", [fail.Keyring, null.Keyring])
def test_no_keyring_backend(backend: type[keyring.backend.KeyringBackend]) -> None:
    keyring.set_keyring(backend())
    expected = "no keyring backend is available on this machine; use env:VAR or file:PATH instead"
    for attempt in (lambda: resolve_reference("keyring:acme"), lambda: set_secret("a", "b"),
                    list_secrets):  # fmt: skip
        with pytest.raises(SecretError) as info:
            attempt()
        assert str(info.value) == expected


def test_literal_is_used_with_a_warning_that_does_not_repeat_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cskpi"):
        assert resolve_reference(TOKEN, what="api_token").get_secret_value() == TOKEN
    [record] = caplog.records
    assert record.name == "cskpi"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "api_token is written into the config as a literal secret; prefer env:VAR, keyring:NAME "
        "or file:PATH"
    )
    assert redact(TOKEN) == "***"


def test_env_and_keyring_references_do_not_warn(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_TOKEN", TOKEN)
    set_secret("x", TOKEN)
    with caplog.at_level(logging.DEBUG):
        resolve_reference("env:X_TOKEN")
        resolve_reference("keyring:x")
    assert caplog.records == []


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (42, "must be a string: env:VAR, keyring:NAME, file:PATH or the secret itself"),
        ("", "the secret is empty"),
        ("env:", "env: needs a variable name, e.g. env:ZENDESK_TOKEN"),
    ],
)
def test_bad_references(ref: object, message: str) -> None:
    with pytest.raises(SecretError) as info:
        resolve_reference(ref)
    assert str(info.value) == message


# --- file:PATH (issue 23 item 10): Docker/Kubernetes secrets, systemd credentials -------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{TOKEN}\n", TOKEN),  # echo and editors add a newline: one is stripped
        (f"{TOKEN}\r\n", TOKEN),
        (TOKEN, TOKEN),
        (f"{TOKEN}\n\n", f"{TOKEN}\n"),  # only one
        (f" {TOKEN} ", f" {TOKEN} "),  # spaces may belong to a password
    ],
)
def test_file_reference(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "token").write_bytes(content.encode())
    assert resolve_reference(f"file:{tmp_path / 'token'}").get_secret_value() == expected
    assert redact(f"sent {expected}") == "sent ***"  # registered like every secret


def test_file_reference_is_relative_to_the_base_and_expands_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "zendesk").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    expanded = resolve_reference("file:$CREDENTIALS_DIRECTORY/zendesk")
    relative = resolve_reference("file:creds/zendesk", base=tmp_path)
    assert expanded.get_secret_value() == relative.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("file:", "file: needs a path, e.g. file:/run/secrets/zendesk_token"),
        (
            "file:{tmp}/missing",
            "cannot read the secret file {tmp}/missing: No such file or directory",
        ),
        ("file:{tmp}", "cannot read the secret file {tmp}: Is a directory"),
        ("file:{tmp}/empty", "the secret is empty"),
        ("file:{tmp}/binary", "cannot read the secret file {tmp}/binary: not UTF-8 text"),
        (
            "file:$NO_SUCH_DIRECTORY/x",
            "file:$NO_SUCH_DIRECTORY/x: environment variable NO_SUCH_DIRECTORY is not set",
        ),
    ],
)
def test_bad_file_references(tmp_path: Path, ref: str, message: str) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SecretError) as info:
        resolve_reference(ref.format(tmp=tmp_path))
    assert str(info.value) == message.format(tmp=tmp_path)


def test_unreadable_file_reference(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN)
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("running as a user who can read anything")
        with pytest.raises(SecretError, match="Permission denied"):
            resolve_reference(f"file:{secret}")
    finally:
        secret.chmod(0o600)


def test_empty_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZD_TOKEN", "")
    with pytest.raises(SecretError, match="the secret is empty"):
        resolve_reference("env:ZD_TOKEN")


def test_an_already_resolved_secret_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        resolved = resolve_reference(SecretStr("env:NOT_A_REFERENCE_ANY_MORE"))
    assert resolved.get_secret_value() == "env:NOT_A_REFERENCE_ANY_MORE"
    assert caplog.records == []
    assert redact("env:NOT_A_REFERENCE_ANY_MORE") == "***"


def test_secret_field_in_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    class Settings(BaseModel):
        api_token: Secret

    monkeypatch.setenv("ZD_TOKEN", TOKEN)
    settings = Settings(api_token="env:ZD_TOKEN")
    assert settings.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())


# --- the keyring store ------------------------------------------------------------------


def test_set_list_delete(isolated: MemoryKeyring) -> None:
    assert list_secrets() == []
    set_secret("zendesk", "one-value")
    set_secret("slack-daily", "two-value")
    set_secret("zendesk", "one-value-replaced")
    assert list_secrets() == ["slack-daily", "zendesk"]
    assert isolated.passwords[(SERVICE, "zendesk")] == "one-value-replaced"

    delete_secret("zendesk")
    assert list_secrets() == ["slack-daily"]
    assert (SERVICE, "zendesk") not in isolated.passwords
    with pytest.raises(SecretError) as info:
        delete_secret("zendesk")
    assert str(info.value) == "keyring has no secret zendesk"


def test_set_secret_registers_the_value_for_redaction() -> None:
    set_secret("zendesk", TOKEN)
    assert redact(f"token={TOKEN}") == "token=***"


@pytest.mark.parametrize("name", ["", " padded ", INDEX_ENTRY])
def test_bad_secret_names(name: str) -> None:
    with pytest.raises(SecretError, match="a secret name must be non-empty"):
        set_secret(name, "value")


def test_a_damaged_index_loses_only_the_listing(isolated: MemoryKeyring) -> None:
    isolated.passwords[(SERVICE, INDEX_ENTRY)] = "{not json"
    assert list_secrets() == []
    set_secret("a", "value-a")
    assert list_secrets() == ["a"]


def test_delete_of_a_secret_removed_behind_our_back_cleans_the_index(
    isolated: MemoryKeyring,
) -> None:
    set_secret("a", "value-a")
    del isolated.passwords[(SERVICE, "a")]
    with pytest.raises(SecretError):
        delete_secret("a")
    assert list_secrets() == []


# --- redaction --------------------------------------------------------------------------


def test_redact_replaces_every_registered_value() -> None:
    register_secret("abcd1234")
    register_secret("abcd1234-longer")
    register_secret("abc")  # too short to redact safely
    text = "x abcd1234-longer y abcd1234 z abc"
    assert redact(text) == "x *** y *** z abc"


def test_redact_catches_the_url_encoded_form() -> None:
    register_secret("p@ss/w0rd")
    assert redact("https://h/?key=p%40ss%2Fw0rd") == "https://h/?key=***"


def test_forget_secrets_empties_the_registry() -> None:
    register_secret(TOKEN)
    secrets.forget_secrets()
    assert redact(TOKEN) == TOKEN


def test_filter_redacts_message_args_and_exception(
    collected: tuple[logging.Logger, _Collect],
) -> None:
    logger, handler = collected
    handler.addFilter(RedactingFilter())
    register_secret(TOKEN)
    logger.warning("calling with token=%s", TOKEN)
    try:
        raise RuntimeError(f"401 for {TOKEN}")
    except RuntimeError:
        logger.exception("request failed")
    output = "\n".join(handler.lines)
    assert TOKEN not in output
    assert handler.lines[0] == "WARNING calling with token=***"
    assert "RuntimeError: 401 for ***" in output


def test_install_redaction_covers_handlers_of_the_given_logger(
    collected: tuple[logging.Logger, _Collect],
) -> None:
    logger, handler = collected
    install_redaction(logger)
    install_redaction(logger)  # idempotent
    assert handler.filters == [secrets.REDACTING_FILTER]
    register_secret(TOKEN)
    logger.error("%s", {"token": TOKEN})
    assert handler.lines == ["ERROR {'token': '***'}"]


def test_install_redaction_on_root_covers_propagated_records() -> None:
    root = logging.getLogger()
    handler = _Collect()
    root.addHandler(handler)
    try:
        install_redaction()
        register_secret(TOKEN)
        logging.getLogger("cskpi.some.module").error("got %s back", TOKEN)
    finally:
        root.removeHandler(handler)
        root.removeFilter(secrets.REDACTING_FILTER)
    assert handler.lines == ["ERROR got *** back"]


def test_without_the_filter_the_secret_would_be_logged(
    collected: tuple[logging.Logger, _Collect],
) -> None:
    # Guards the tests above: the collecting handler does show what it is given.
    logger, handler = collected
    register_secret(TOKEN)
    logger.warning("token=%s", TOKEN)
    assert handler.lines == [f"WARNING token={TOKEN}"]


def test_redact_hides_the_base64_forms_of_a_secret() -> None:
    register_secret(TOKEN)
    alone = base64.b64encode(TOKEN.encode()).decode()
    assert redact(f"x-echo: {alone} / {alone.rstrip('=')}") == "x-echo: *** / ***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # whoever's credentials a server echoes, registered or not
        ("Authorization: Basic dXNlcjpzM2NyZXQ=", "Authorization: Basic ***"),
        ('{"authorization": "Bearer abc.def-123"}', '{"authorization": "Bearer ***"}'),
        ("Proxy-Authorization=Basic dXNlcjpzM2NyZXQ", "Proxy-Authorization=Basic ***"),
        ("'X-Api-Key': 'k-12345'", "'X-Api-Key': '***'"),
        ("sent Basic dXNlcjpzM2NyZXQ= upstream", "sent Basic *** upstream"),
        ("Bearer eyJhbGciOi.J9-x", "Bearer ***"),
        # prose stays readable
        ("Basic authentication failed", "Basic authentication failed"),
        ("check the Bearer token", "check the Bearer token"),
    ],
)
def test_redact_hides_credential_header_values(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_header_values_with_nothing_registered(
    collected: tuple[logging.Logger, _Collect],
) -> None:
    logger, handler = collected
    handler.addFilter(RedactingFilter())
    logger.warning("proxy said %s", "Authorization: Basic dXNlcjpzM2NyZXQ=")
    assert handler.lines == ["WARNING proxy said Authorization: Basic ***"]
