"""The mailbox signs in with OAuth2 (issue 25 item 5) against a real Dovecot whose ``oauth2``
passdb asks a token-introspection endpoint this test serves on 127.0.0.1, where cskpi also
trades its refresh token for access tokens (tests/connectors/email/authority.py).

Failed sign-ins cost half a second each (Dovecot answers failures on a 500 ms tick).
"""

from __future__ import annotations

import base64
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cskpi.cli import app
from cskpi.connectors.email import oauth2
from cskpi.connectors.email.connector import EmailConnector, EmailSettings
from cskpi.connectors.email.oauth2 import MARGIN, TokenEndpointUnreachableError, TokenRefusedError
from cskpi.connectors.email.sasl import choose, oauthbearer, xoauth2
from cskpi.core.clock import FakeClock
from cskpi.core.config.file import ConfigError, load_config
from cskpi.core.config.secrets import SecretError
from cskpi.core.http.client import AuthError, FatalAPIError
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, run_sync
from tests.conftest import MemoryKeyring
from tests.connectors.email.authority import CLIENT_ID, CLIENT_SECRET, Authority
from tests.connectors.email.dovecot import Dovecot, available

NOW = 1795392000.0  # 2026-11-23 00:00 UTC: the mail below is a week old

pytestmark = [
    pytest.mark.skipif(not available(), reason="Dovecot is not installed (apt dovecot-imapd)"),
    pytest.mark.usefixtures("no_real_sleep"),
]


@pytest.fixture(scope="module")
def authority() -> Iterator[Authority]:
    running = Authority()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(authority: Authority) -> Iterator[Dovecot]:
    running = Dovecot(introspection_url=f"{authority.url}/introspect")
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh(authority: Authority, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No grant cached from another test; the authority's defaults; the client secret."""
    oauth2.forget_tokens()
    authority.expires_in, authority.rotate, authority.outage = 3600, False, None
    authority.requests.clear()
    authority.issued.clear()
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", CLIENT_SECRET)
    yield
    oauth2.forget_tokens()


@pytest.fixture
def box(server: Dovecot) -> Dovecot:
    return server.mailbox()


def connector(
    box: Dovecot, authority: Authority, clock: FakeClock | None = None, **extra: Any
) -> EmailConnector:
    settings = EmailSettings(
        type="email", host="127.0.0.1", port=box.port, tls="none", username=box.user,
        agent_addresses=["*@acme.test"],
        oauth2={"provider": "custom", "client_id": CLIENT_ID,
                "client_secret": "env:OAUTH_CLIENT_SECRET", "refresh_token": "env:REFRESH_TOKEN",
                "token_url": f"{authority.url}/token", **extra},
    )  # fmt: skip
    return EmailConnector("box", settings, clock=clock or FakeClock(wall_start=NOW))


def granted(box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch) -> str:
    token = authority.grant(box.user)
    monkeypatch.setenv("REFRESH_TOKEN", token)
    return token


def methods(server: Dovecot, user: str) -> list[str]:
    """The SASL mechanism of each login of ``user``, from Dovecot's log."""
    log = (server.root / "dovecot.log").read_text()
    return [line.split("method=")[1].split(",")[0]
            for line in log.splitlines() if f"Login: user=<{user}>" in line]  # fmt: skip


def assert_no_secret(text: str, authority: Authority) -> None:
    """No refresh token, access token or client secret, nor their base64, in ``text``."""
    secrets = [*authority.refresh_tokens, *authority.issued, CLIENT_SECRET]
    for secret in secrets:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode().rstrip("=") not in text


# --- the SASL strings, against the providers' published examples ----------------------------


def test_xoauth2_is_googles_documented_string() -> None:
    # https://developers.google.com/gmail/imap/xoauth2-protocol, the example before and after
    raw = xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert raw == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        b"\x01\x01"
    )
    assert base64.b64encode(raw) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
        b"QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )  # fmt: skip


def test_oauthbearer_is_rfc_7628_without_host_and_port() -> None:
    # RFC 7628 §4.1's example, less its optional host and port
    raw = oauthbearer("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")
    assert raw == (
        b"n,a=user@example.com,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    assert oauthbearer("a,b=c@x.test", "t").startswith(b"n,a=a=2Cb=3Dc@x.test,\x01")  # RFC 5801


class Offers:
    def __init__(self, *capabilities: str) -> None:
        self.capabilities = capabilities

    def has_capability(self, name: str) -> bool:
        return name in self.capabilities


def test_the_mechanism_is_xoauth2_unless_only_oauthbearer_is_offered() -> None:
    both = Offers("AUTH=XOAUTH2", "AUTH=OAUTHBEARER")
    assert choose(both, None) == "XOAUTH2"  # type: ignore[arg-type]
    assert choose(Offers("AUTH=OAUTHBEARER"), None) == "OAUTHBEARER"  # type: ignore[arg-type]
    assert choose(Offers(), None) == "XOAUTH2"  # type: ignore[arg-type]
    assert choose(both, "OAUTHBEARER") == "OAUTHBEARER"  # type: ignore[arg-type]


# --- against Dovecot -------------------------------------------------------------------------

INBOX = (
    b"From: Carla <carla@customer.test>\r\nTo: support@acme.test\r\nSubject: Invoice\r\n"
    b"Date: Mon, 16 Nov 2026 09:00:00 +0000\r\nMessage-ID: <c1@customer.test>\r\n\r\nHi\r\n"
)
SENT = (
    b"From: Ana <ana@acme.test>\r\nTo: carla@customer.test\r\nSubject: Re: Invoice\r\n"
    b"Date: Mon, 16 Nov 2026 10:30:00 +0000\r\nMessage-ID: <a1@acme.test>\r\n"
    b"In-Reply-To: <c1@customer.test>\r\n\r\nDone\r\n"
)


def test_xoauth2_signs_in_and_syncs_the_mailbox(
    box: Dovecot, authority: Authority, server: Dovecot, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    refresh_token = granted(box, authority, monkeypatch)
    box.append("INBOX", [INBOX])
    box.append("Sent", [SENT])
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")

    report = run_sync(engine, [Source("box", connector(box, authority))])

    assert report.ok, [s.error for s in report.streams]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT subject, requester_id, created_at, first_reply_at, agent_replies FROM ticket"
        ).all()
    assert [tuple(r) for r in rows] == [("Invoice", "box:carla@customer.test", 1794819600,
                                         1794825000, 1)]  # fmt: skip
    assert authority.refreshes() == [{
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }]  # fmt: skip
    assert [m for m in methods(server, box.user) if m != "PLAIN"] == ["XOAUTH2"]  # PLAIN: append
    introspected = [form["token"] for path, form in authority.requests if path == "/introspect"]
    assert introspected == authority.issued  # Dovecot asked about the one token issued
    assert_no_secret(caplog.text, authority)


def test_oauthbearer_signs_in(
    box: Dovecot, authority: Authority, server: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    granted(box, authority, monkeypatch)
    connector(box, authority, mechanism="oauthbearer").check()
    assert methods(server, box.user) == ["OAUTHBEARER"]


def test_an_access_token_is_reused_then_refreshed_before_it_expires(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    granted(box, authority, monkeypatch)
    clock = FakeClock(wall_start=NOW)
    connector(box, authority, clock).check()
    clock.advance(3600 - MARGIN - 1)  # a daemon's later run: a new connector, the same process
    connector(box, authority, clock).check()
    assert len(authority.refreshes()) == 1

    clock.advance(2)  # now within the margin of the expiry
    connector(box, authority, clock).check()

    assert len(authority.refreshes()) == 2
    assert len(set(authority.issued)) == 2
    assert_no_secret(caplog.text, authority)


def test_a_cached_token_the_server_refuses_is_refreshed_once(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    granted(box, authority, monkeypatch)
    clock = FakeClock(wall_start=NOW)
    connector(box, authority, clock).check()
    authority.revoke_access(authority.issued[-1])  # expired early, as Dovecot now says

    connector(box, authority, clock).check()

    assert len(authority.refreshes()) == 2
    assert "refused the cached access token; refreshing it" in caplog.text
    assert_no_secret(caplog.text, authority)


def test_a_fresh_token_the_server_refuses_names_the_imap_step(
    box: Dovecot, server: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    other = server.mailbox()
    monkeypatch.setenv("REFRESH_TOKEN", authority.grant(other.user))  # a token for another box
    with pytest.raises(AuthError) as caught:
        connector(box, authority).check()
    assert str(caught.value) == (
        f"the IMAP server 127.0.0.1 refused the OAuth2 access token for {box.user} (XOAUTH2, "
        '{"status":"401","schemes":"bearer","scope":"mail"} [AUTHENTICATIONFAILED] '
        "Authentication failed.): the token endpoint issued it, so check that the app was "
        f"granted the mail scope and that {box.user} is the account that signed in"
    )
    assert len(authority.refreshes()) == 1  # no second refresh for a token just issued
    assert_no_secret(str(caught.value) + caplog.text, authority)


def test_a_revoked_refresh_token_is_named(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFRESH_TOKEN", "rt-revoked-long-ago-0123456789")
    with pytest.raises(TokenRefusedError) as caught:
        connector(box, authority).check()
    assert str(caught.value) == (
        f"the token endpoint {authority.url}/token of connector box refused the refresh token "
        "(invalid_grant: revoked or expired refresh token; Token has been expired or revoked.): "
        "check connectors.box.oauth2.refresh_token (sign in again for a new one)"
    )
    assert "rt-revoked" not in str(caught.value)


def test_a_wrong_client_secret_is_named(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    granted(box, authority, monkeypatch)
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "not-the-client-secret")
    with pytest.raises(TokenRefusedError, match=r"\(invalid_client: unknown client or wrong client "
                       r"secret; Unauthorized\): check connectors.box.oauth2.client_id and "
                       r"oauth2.client_secret$"):  # fmt: skip
        connector(box, authority).check()


def test_a_token_endpoint_out_of_order_is_named(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    granted(box, authority, monkeypatch)
    authority.outage = 503
    with pytest.raises(FatalAPIError) as caught:
        connector(box, authority).check()
    assert str(caught.value) == (
        f"the token endpoint {authority.url}/token of connector box answered 503 Service "
        "Unavailable"
    )


def test_an_unreachable_token_endpoint_is_named(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    granted(box, authority, monkeypatch)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        box_connector = connector(box, authority, token_url=f"http://127.0.0.1:{port}/token")
    with pytest.raises(TokenEndpointUnreachableError) as caught:
        box_connector.check()
    assert str(caught.value) == (
        f"cannot reach the token endpoint http://127.0.0.1:{port}/token of connector box: "
        "connection refused"
    )


def test_a_rotated_refresh_token_is_used_and_stored_in_the_keyring(
    box: Dovecot, authority: Authority, isolated: MemoryKeyring
) -> None:
    authority.rotate = True
    first = authority.grant(box.user)
    isolated.passwords[("cskpi", "box-oauth")] = first
    clock = FakeClock(wall_start=NOW)
    connector(box, authority, clock, refresh_token="keyring:box-oauth").check()
    second = isolated.passwords[("cskpi", "box-oauth")]
    assert second != first
    assert second in authority.refresh_tokens

    clock.advance(3600)
    connector(box, authority, clock, refresh_token="keyring:box-oauth").check()

    assert [form["refresh_token"] for form in authority.refreshes()] == [first, second]


def test_a_locked_keyring_keeps_the_rotated_token_in_memory(
    box: Dovecot, authority: Authority, isolated: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def locked(name: str, value: str) -> None:
        raise SecretError("the keyring is locked; unlock it and try again")

    monkeypatch.setattr(oauth2, "set_secret", locked)
    authority.rotate = True
    first = authority.grant(box.user)
    isolated.passwords[("cskpi", "box-oauth")] = first
    clock = FakeClock(wall_start=NOW)
    connector(box, authority, clock, refresh_token="keyring:box-oauth").check()
    clock.advance(3600)
    connector(box, authority, clock, refresh_token="keyring:box-oauth").check()

    assert isolated.passwords[("cskpi", "box-oauth")] == first
    assert authority.refreshes()[1]["refresh_token"] != first
    assert (
        "box: could not store the new refresh token in keyring:box-oauth (the keyring is "
        "locked; unlock it and try again); using it until exit"
    ) in caplog.text


def test_cskpi_check_names_a_revoked_refresh_token_and_exits_1(
    box: Dovecot, authority: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoked = "rt-revoked-in-the-console-42"
    monkeypatch.setenv("REFRESH_TOKEN", revoked)
    config = tmp_path / "cskpi.toml"
    config.write_text(f"""\
database = "sqlite:///{tmp_path / 'kpi.db'}"
[connectors.inbox]
type = "email"
host = "127.0.0.1"
port = {box.port}
tls = "none"
username = "{box.user}"
agent_addresses = ["*@acme.test"]
oauth2 = {{ provider = "custom", client_id = "{CLIENT_ID}", token_url = "{authority.url}/token", \
client_secret = "env:OAUTH_CLIENT_SECRET", refresh_token = "env:REFRESH_TOKEN" }}
""")  # fmt: skip

    result = CliRunner().invoke(app, ["check", "-c", str(config)])

    assert result.exit_code == 1
    line = " ".join(result.output.split())  # the table wraps its cells
    assert "refused the refresh token (invalid_grant: revoked or expired refresh token" in line
    assert "check connectors.inbox.oauth2.refresh_token" in line
    assert revoked not in result.output
    assert CLIENT_SECRET not in result.output


# --- config ----------------------------------------------------------------------------------


def load(tmp_path: Path, mailbox: str) -> None:
    config = tmp_path / "cskpi.toml"
    config.write_text(
        '[connectors.inbox]\ntype = "email"\nhost = "imap.gmail.com"\nusername = "s@acme.test"\n'
        f'agent_addresses = ["*@acme.test"]\n{mailbox}\n'
    )
    from cskpi.connectors.registry import installed

    load_config(config, installed())


@pytest.mark.parametrize(
    ("mailbox", "error"),
    [
        ('password = "env:REFRESH_TOKEN"\noauth2 = { provider = "google", client_id = "c", '
         'refresh_token = "env:REFRESH_TOKEN" }',
         "[connectors.inbox]: give either password or oauth2, not both"),
        ("", "[connectors.inbox]: needs password or oauth2 (an OAuth2 refresh token) to sign in"),
        ('oauth2 = { provider = "custom", client_id = "c", refresh_token = "env:REFRESH_TOKEN" }',
         '[connectors.inbox.oauth2]: provider = "custom" needs token_url'),
        ('oauth2 = { provider = "custom", client_id = "c", refresh_token = "env:REFRESH_TOKEN", '
         'token_url = "http://auth.acme.test/token" }',
         "[connectors.inbox.oauth2]: token_url is plain http; use https:// (http:// is allowed "
         "only for 127.0.0.1 and localhost)"),
        ('oauth2 = { provider = "google", client_id = "c", refresh_token = "env:NOT_SET" }',
         "[connectors.inbox.oauth2] refresh_token: environment variable NOT_SET is not set"),
        ('oauth2 = { provider = "gmail", client_id = "c", refresh_token = "env:REFRESH_TOKEN" }',
         "[connectors.inbox.oauth2] provider:"),
    ],
)  # fmt: skip
def test_config_errors_are_one_line(
    mailbox: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFRESH_TOKEN", "a-refresh-token-value")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, mailbox)
    lines = [line for line in str(caught.value).splitlines() if "cskpi.toml" in line]
    assert len(lines) == 1
    assert lines[0].split("cskpi.toml: ", 1)[1].startswith(error)
    assert "a-refresh-token-value" not in str(caught.value)


def test_the_token_url_defaults_by_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFRESH_TOKEN", "a-refresh-token-value")

    def url(**given: str) -> tuple[str, str | None]:
        settings = oauth2.OAuth2Settings.model_validate(
            {"client_id": "c", "refresh_token": "env:REFRESH_TOKEN", **given}
        )
        return settings.url, settings.refresh_scope()

    assert url(provider="google") == ("https://oauth2.googleapis.com/token", None)
    assert url(provider="microsoft") == (
        "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    )
    assert url(provider="microsoft", tenant="acme.onmicrosoft.com")[0] == (
        "https://login.microsoftonline.com/acme.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert url(provider="custom", token_url="http://localhost:8080/t", scope="mail") == (
        "http://localhost:8080/t", "mail",
    )  # fmt: skip


def test_microsoft_refreshes_send_the_scope_and_use_the_rotated_token_until_exit(
    box: Dovecot, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority.rotate = True  # as Microsoft: every refresh returns a new refresh token
    first = granted(box, authority, monkeypatch)
    clock = FakeClock(wall_start=NOW)
    connector(box, authority, clock, provider="microsoft").check()
    clock.advance(3600)
    connector(box, authority, clock, provider="microsoft").check()

    forms = authority.refreshes()
    second = forms[1]["refresh_token"]
    assert [form["refresh_token"] for form in forms] == [first, second]
    assert second != first
    assert {form["scope"] for form in forms} == {
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    }
    issued = list(authority.refresh_tokens)  # in the order the authority made them
    assert second == issued[issued.index(first) + 1]  # the one the first refresh returned
    assert os.environ["REFRESH_TOKEN"] == first  # env: is never written
