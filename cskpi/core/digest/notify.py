"""Delivering a digest: Slack (incoming webhook, or a bot token through slack_sdk) and email
over SMTP; and the cheap authenticated check of each target for `cskpi check`.

Every error raised here is a :class:`DeliveryError` whose message is redacted and names the
digest, the target and the setting to fix.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from cskpi.core.clock import Clock, SystemClock
from cskpi.core.config.file import EmailTarget, SlackTarget
from cskpi.core.config.hosts import is_loopback
from cskpi.core.config.secrets import redact, register_secret
from cskpi.core.digest.errors import DeliveryError
from cskpi.core.http.client import APIError, FatalAPIError, HttpClient, RetriableAPIError
from cskpi.core.http.ratelimit import MAX_RETRY_AFTER

TIMEOUT = 30.0
SLACK_ATTEMPTS = 4
# A webhook given an empty payload answers 400 with one of these and posts nothing; a
# revoked or unknown hook answers 403 invalid_token / 404 no_service / 410 channel_is_archived.
# https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks#handling-errors
_HOOK_ALIVE = ("no_text", "invalid_payload", "missing_text_or_fallback_or_attachments")


@dataclass(frozen=True)
class Chart:
    png: bytes
    filename: str
    title: str


# --- Slack: incoming webhook ------------------------------------------------------------


class _WebhookClient(HttpClient):
    """Retries a webhook post only on 429 and when no connection was made: a 5xx or a read
    timeout may come after Slack posted the message, and a retry would post it twice."""

    def _send(self, prepared: requests.PreparedRequest) -> requests.Response:
        try:
            return super()._send(prepared)
        except RetriableAPIError as exc:
            if isinstance(
                exc.__cause__, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError
            ):
                raise FatalAPIError(f"{exc} (not retried: it may have been posted)") from None
            raise

    def _check(self, response: Any) -> None:
        try:
            super()._check(response)
        except RetriableAPIError as exc:
            if exc.status == 429:
                raise
            raise FatalAPIError(str(exc), status=exc.status) from None


def _webhook_client(where: str, url: str, clock: Clock | None) -> tuple[_WebhookClient, str]:
    hook = url.strip()
    register_secret(urlsplit(hook).path)  # the path is the credential, wherever it is quoted
    client = _WebhookClient(
        where, hook, clock=clock, timeout=TIMEOUT, max_attempts=SLACK_ATTEMPTS,
        secret_hint="webhook_url",  # noqa: S106 - the name of the setting
    )  # fmt: skip
    return client, hook


def post_webhook(
    where: str, target: SlackTarget, message: dict[str, Any], clock: Clock | None
) -> None:
    assert target.webhook_url is not None
    client, url = _webhook_client(where, target.webhook_url.get_secret_value(), clock)
    try:
        client.post(url, json=message)
    except APIError as exc:  # its message starts with the client's name: `where`
        raise DeliveryError(str(exc)) from None
    finally:
        client.close()


def check_webhook(where: str, target: SlackTarget) -> str:
    """Posts an empty payload: a live hook refuses it with 400 no_text and posts nothing."""
    assert target.webhook_url is not None
    client, url = _webhook_client(where, target.webhook_url.get_secret_value(), None)
    try:
        client.post(url, json={})
    except FatalAPIError as exc:
        if exc.status == 400 and any(code in str(exc) for code in _HOOK_ALIVE):
            return "webhook accepted (empty test payload refused as expected; nothing posted)"
        raise DeliveryError(str(exc)) from None
    except APIError as exc:
        raise DeliveryError(str(exc)) from None
    finally:
        client.close()
    return "webhook accepted an empty payload"


# --- Slack: bot token through slack_sdk -------------------------------------------------


class _ClockedRateLimitHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler waiting ``Retry-After`` on our clock (theirs calls time.sleep)."""

    def __init__(self, clock: Clock, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.clock = clock

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:
            raise error or RuntimeError("rate-limit retry without a response")
        state.next_attempt_requested = True
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after") or ["1"]
        try:
            seconds = float(values[0])
        except ValueError:
            seconds = 1.0
        self.clock.sleep(min(max(seconds, 0.0), MAX_RETRY_AFTER))
        state.increment_current_attempt()


def web_client(target: SlackTarget, clock: Clock | None = None) -> WebClient:
    assert target.token is not None
    handlers: list[RetryHandler] = [
        _ClockedRateLimitHandler(clock or SystemClock(), SLACK_ATTEMPTS - 1)
    ]
    return WebClient(
        token=target.token.get_secret_value(),
        base_url=target.base_url.rstrip("/") + "/",
        timeout=int(TIMEOUT),
        retry_handlers=handlers,
    )


def post_api(
    where: str,
    target: SlackTarget,
    message: dict[str, Any],
    chart: Chart | None,
    clock: Clock | None,
) -> str | None:
    """chat.postMessage, then the chart through the files API (files_upload_v2) into the
    same channel. Returns a warning when only the chart failed: the digest itself is sent."""
    client = web_client(target, clock)
    try:
        posted = client.chat_postMessage(channel=target.channel or "", **message)
    except (SlackApiError, SlackClientError) as exc:
        raise DeliveryError(f"{where}: chat.postMessage failed: {_slack_reason(exc)}") from None
    if chart is None:
        return None
    try:
        # files.completeUploadExternal takes a channel ID; the post answers with it.
        client.files_upload_v2(
            channel=str(posted["channel"]), file=chart.png, filename=chart.filename,
            title=chart.title, alt_txt=chart.title,
        )  # fmt: skip
    except (SlackApiError, SlackClientError) as exc:
        return redact(f"{where}: the chart upload failed: {_slack_reason(exc)}")
    return None


def check_api(where: str, target: SlackTarget) -> str:
    """auth.test: https://docs.slack.dev/reference/methods/auth.test"""
    try:
        answer = web_client(target).auth_test()
    except (SlackApiError, SlackClientError) as exc:
        raise DeliveryError(
            f"{where}: auth.test failed: {_slack_reason(exc)}; check token"
        ) from None
    return f"token ok (team {answer.get('team', '?')}, bot {answer.get('user', '?')})"


def _slack_reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "error")) + f" (HTTP {exc.response.status_code})"
    return f"{type(exc).__name__}: {exc}"


# --- email ------------------------------------------------------------------------------


def email_message(
    target: EmailTarget, subject: str, text: str, html_for: Any, chart: Chart | None,
    attachment: tuple[str, str] | None = None,
) -> EmailMessage:  # fmt: skip
    """multipart/alternative: text/plain, then multipart/related (text/html + the chart
    inline by Content-ID). ``html_for(image_src)`` renders the HTML around the image.
    ``attachment``: (file name, HTML) attached after them (multipart/mixed): the report."""
    msg = EmailMessage()
    domain = target.from_.rpartition("@")[2]
    msg["Subject"] = subject
    msg["From"] = target.from_
    msg["To"] = ", ".join(target.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid("cskpi", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to a report
    msg.set_content(text)
    cid = make_msgid("chart", domain=domain)
    msg.add_alternative(html_for(f"cid:{cid[1:-1]}" if chart else None), subtype="html")
    if chart is not None:
        html_part = msg.get_body(("html",))
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(chart.png, "image", "png", cid=cid, filename=chart.filename)
    if attachment is not None:
        name, html = attachment
        msg.add_attachment(html, subtype="html", filename=name)  # text/html; charset=utf-8
    return msg


def smtp_session(where: str, target: EmailTarget) -> smtplib.SMTP:
    """Connected, encrypted (smtps: TLS from the start; smtp: STARTTLS) and logged in."""
    parts = urlsplit(target.smtp_url)
    host, implicit = parts.hostname or "", parts.scheme == "smtps"
    port = parts.port or (465 if implicit else 587)
    context = ssl.create_default_context()
    try:
        smtp = (
            smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=context)
            if implicit
            else smtplib.SMTP(host, port, timeout=TIMEOUT)
        )
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{where}: cannot connect to {host}:{port}: {exc}") from None
    try:
        _secure_and_login(where, smtp, target, implicit, host)
    except BaseException:
        smtp.close()
        raise
    return smtp


def _secure_and_login(
    where: str, smtp: smtplib.SMTP, target: EmailTarget, implicit: bool, host: str
) -> None:
    try:
        smtp.ehlo()
        if not implicit:
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            elif not is_loopback(host):
                # Never send a password or a report in clear text over a network.
                raise DeliveryError(f"{where}: {host} does not offer STARTTLS; use smtps://")
        if target.password is not None:
            user = target.username or target.from_
            smtp.login(user, target.password.get_secret_value())
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"{where}: {host} refused the login ({exc.smtp_code}); check username and password"
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{where}: {host}: {type(exc).__name__}: {exc}") from None


def send_email(where: str, target: EmailTarget, msg: EmailMessage) -> str | None:
    """Sends; returns a warning naming the recipients the server refused (the others got
    it, so the digest counts as sent and is not sent to them twice)."""
    smtp = smtp_session(where, target)
    try:
        refused = smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{where}: sending failed: {type(exc).__name__}: {exc}") from None
    finally:
        _quit(smtp)
    if refused:
        return f"{where}: the server refused {', '.join(sorted(refused))}"
    return None


def check_email(where: str, target: EmailTarget) -> str:
    smtp = smtp_session(where, target)
    _quit(smtp)
    return "SMTP login ok" if target.password is not None else "SMTP connect ok (no login)"


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
