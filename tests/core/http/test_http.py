"""The shared HTTP layer: retries, the error taxonomy, redaction and pacing, on a fake clock."""

from __future__ import annotations

import base64
import email.utils
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from requests.auth import HTTPBasicAuth
from responses.registries import OrderedRegistry

from cskpi.core.clock import FakeClock
from cskpi.core.http import client as http
from cskpi.core.http.client import (
    AuthError,
    FatalAPIError,
    HttpClient,
    RetriableAPIError,
    retry_after_seconds,
    safe_url,
)
from cskpi.core.http.ratelimit import (
    FRESHDESK_HEADERS,
    INTERCOM_HEADERS,
    ZENDESK_HEADERS,
    Budget,
    Quota,
    RateLimiter,
)
from tests.sample_data import SAMPLES as ALL_SAMPLES

BASE = "https://acme.zendesk.com/api/v2"
URL = f"{BASE}/tickets.json"
SAMPLES = ALL_SAMPLES
Handler = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], str]]


# Rate limits and retries wait on a FakeClock: any real sleep fails the test.
pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    """Scripted responses, consumed in order; every one must be used."""
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        yield mock


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    """Responses that repeat, for callbacks that play a server."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_client(clock: FakeClock, **kwargs: Any) -> HttpClient:
    return HttpClient("acme", BASE, clock=clock, **kwargs)


def sample_headers(name: str) -> dict[str, str]:
    path = SAMPLES / name
    recorded = json.loads(path.read_text())["headers"]
    return {key: values[0] for key, values in recorded.items()}


# --- retries ---------------------------------------------------------------------------


def test_429_with_retry_after_waits_that_long_then_succeeds(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(URL, status=429, headers={"Retry-After": "7"})
    api.get(URL, json={"tickets": []})

    assert make_client(clock).get_json("tickets.json") == {"tickets": []}
    assert clock.sleeps == [7.0]
    assert len(api.calls) == 2


def test_retry_after_as_an_http_date_is_waited_until(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    when = email.utils.formatdate(clock.wall() + 30, usegmt=True)
    api.get(URL, status=503, headers={"Retry-After": when})
    api.get(URL, json={})

    make_client(clock).get("tickets.json")
    assert clock.sleeps == [30.0]


def test_503_twice_then_200_backs_off_exponentially_with_jitter(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(URL, status=503)
    api.get(URL, status=502)
    api.get(URL, json={"ok": 1})

    assert make_client(clock).get_json("tickets.json") == {"ok": 1}
    assert len(api.calls) == 3
    first, second = clock.sleeps
    assert 1.0 <= first <= 2.0  # 1 s, plus up to 1 s of jitter
    assert 2.0 <= second <= 3.0


@pytest.mark.parametrize(
    "failure", [requests.ConnectionError("reset by peer"), requests.ReadTimeout("read timed out")]
)
def test_a_dropped_connection_or_timeout_is_retried(
    api: responses.RequestsMock, clock: FakeClock, failure: Exception
) -> None:
    api.get(URL, body=failure)
    api.get(URL, json={"ok": 1})

    assert make_client(clock).get_json("tickets.json") == {"ok": 1}
    assert len(api.calls) == 2
    assert len(clock.sleeps) == 1


def test_404_is_fatal_at_once(api: responses.RequestsMock, clock: FakeClock) -> None:
    api.get(URL, status=404, json={"error": "RecordNotFound"})

    with pytest.raises(FatalAPIError) as caught:
        make_client(clock).get("tickets.json")
    assert not isinstance(caught.value, RetriableAPIError)
    assert caught.value.status == 404
    assert "404 Not Found on GET https://acme.zendesk.com/api/v2/tickets.json" in str(caught.value)
    assert "RecordNotFound" in str(caught.value)
    assert len(api.calls) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_name_the_secret_and_never_show_it(
    api: responses.RequestsMock, clock: FakeClock, status: int
) -> None:
    token = "zd-T0ken-4f9c2e71"
    api.get(URL, status=status, json={"error": f"Couldn't authenticate you with {token}"})
    client = make_client(
        clock, auth=HTTPBasicAuth("agent@acme.test/token", token), secret_hint="api_token"
    )

    with pytest.raises(AuthError) as caught:
        client.get("tickets.json", params={"api_key": token})
    message = str(caught.value)
    assert message.startswith(f"the token for connector acme is rejected ({status} ")
    assert "check api_token" in message
    assert token not in message
    assert "Basic " not in message
    assert "api_key=***" in message
    assert len(api.calls) == 1


def test_gives_up_after_max_attempts_with_the_last_error(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    for status in (500, 502, 504):
        api.get(URL, status=status)

    with pytest.raises(RetriableAPIError) as caught:
        make_client(clock, max_attempts=3).get("tickets.json")
    assert caught.value.status == 504
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(clock.sleeps) == 2


def test_backoff_is_capped(api: responses.RequestsMock, clock: FakeClock) -> None:
    for _ in range(10):
        api.get(URL, status=500)

    with pytest.raises(RetriableAPIError):
        make_client(clock, max_attempts=10, max_backoff=60).get("tickets.json")
    assert len(clock.sleeps) == 9
    assert max(clock.sleeps) <= 60.0
    assert clock.sleeps[-1] == 60.0  # 2^8 s is long past the cap


def test_tls_failure_is_fatal_and_points_at_ca_bundle(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(URL, body=requests.exceptions.SSLError("certificate verify failed"))

    with pytest.raises(FatalAPIError, match="set ca_bundle"):
        make_client(clock).get("tickets.json")
    assert clock.sleeps == []


def test_a_body_that_is_not_json_is_fatal(api: responses.RequestsMock, clock: FakeClock) -> None:
    api.get(URL, body="<html>captive portal</html>", content_type="text/html")

    with pytest.raises(FatalAPIError, match=r"not JSON \(text/html\).*captive portal"):
        make_client(clock).get_json("tickets.json")


# --- URLs, bodies, session -------------------------------------------------------------


def test_absolute_urls_must_stay_on_the_base_host(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    client = make_client(clock)
    api.get(f"{BASE}/incremental/tickets.json", json={"next": 2})

    assert client.get_json(f"{BASE}/incremental/tickets.json?start_time=5") == {"next": 2}
    for elsewhere in (
        "https://evil.example/api/v2/tickets.json",
        "http://acme.zendesk.com/api/v2/tickets.json",  # no downgrade to plain HTTP
        "https://acme.zendesk.com:8443/api/v2/tickets.json",
    ):
        with pytest.raises(FatalAPIError, match="refusing to follow"):
            client.get(elsewhere)
    assert len(api.calls) == 1


def test_post_json_sends_the_body(api: responses.RequestsMock, clock: FakeClock) -> None:
    query = {"query": {"field": "updated_at", "operator": ">", "value": 1}}
    api.post(
        f"{BASE}/conversations/search",
        match=[responses.matchers.json_params_matcher(query)],
        json={"conversations": []},
    )

    assert make_client(clock).post_json("/conversations/search", query) == {"conversations": []}


def test_session_settings(clock: FakeClock) -> None:
    client = make_client(clock, ca_bundle="/etc/cskpi/ca.pem", headers={"Intercom-Version": "2.11"})

    assert client.session.verify == "/etc/cskpi/ca.pem"
    assert client.session.headers["Intercom-Version"] == "2.11"
    assert client.url("tickets.json") == f"{BASE}/tickets.json"
    assert client.url("/tickets.json") == f"{BASE}/tickets.json"


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("12", 0.0) == 12.0
    assert retry_after_seconds("-3", 0.0) == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after_seconds("soon", 0.0) is None
    assert retry_after_seconds(None, 0.0) is None


def test_safe_url_masks_credentials() -> None:
    assert (
        safe_url("https://u:pw@h.example/x?access_token=abc&page[after]=Q&key=k")
        == "https://h.example/x?access_token=***&page[after]=Q&key=***"
    )


# --- rate-limit headers ----------------------------------------------------------------


def test_zendesk_headers_from_real_recordings() -> None:
    cursor = sample_headers("zendesk/response_headers_incremental_cursor.json")
    audits = sample_headers("zendesk/response_headers_ticket_audits.json")

    assert ZENDESK_HEADERS.read(cursor, 0.0) == [Quota(698, 700, 12.0)]
    assert ZENDESK_HEADERS.read(audits, 0.0) == [Quota(671, 700, 53.0)]


def test_zendesk_per_endpoint_header_is_read_too() -> None:
    headers = {
        "x-rate-limit": "700",
        "x-rate-limit-remaining": "699",
        "zendesk-ratelimit-tickets-index": "total=100; remaining=99; resets=41",
    }
    assert sorted(ZENDESK_HEADERS.read(headers, 0.0)) == [
        Quota(99, 100, 41.0),
        Quota(699, 700, None),
    ]


def test_intercom_and_freshdesk_headers() -> None:
    intercom = {
        "X-RateLimit-Limit": "167",
        "X-RateLimit-Remaining": "166",
        "X-RateLimit-Reset": "1487332510",
    }
    freshdesk = {
        "X-RateLimit-Total": "200",
        "X-RateLimit-Remaining": "199",
        "X-RateLimit-Used-CurrentRequest": "1",
    }

    assert INTERCOM_HEADERS.read(intercom, 1487332500.0) == [Quota(166, 167, 10.0)]
    assert FRESHDESK_HEADERS.read(freshdesk, 0.0) == [Quota(199, 200, None)]
    assert FRESHDESK_HEADERS.read({"X-RateLimit-Remaining": "many"}, 0.0) == []


# --- pacing ----------------------------------------------------------------------------


def record_sends(
    server: responses.RequestsMock, clock: FakeClock, reply: Handler | None = None
) -> list[float]:
    """Serve URL, noting the fake time each request reaches the server."""
    sent: list[float] = []

    def handle(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent.append(clock.now())
        return reply(request) if reply else (200, {}, "{}")

    server.add_callback(responses.GET, URL, callback=handle)
    return sent


def test_budget_pacing_keeps_every_60_s_window_to_10_requests(
    server: responses.RequestsMock, clock: FakeClock
) -> None:
    sent = record_sends(server, clock)
    client = make_client(clock, limiter=RateLimiter(Budget(10, 60), clock=clock))

    for _ in range(25):
        client.get("tickets.json")

    assert len(sent) == 25
    assert sent[-1] - sent[0] >= 120
    assert sent[-1] <= 121  # paced, not throttled harder than the budget asks
    assert all(sent[i + 10] - sent[i] >= 60 for i in range(len(sent) - 10))


@pytest.mark.parametrize(
    ("headers", "spec", "wait"),
    [
        ({"ratelimit-remaining": "0", "ratelimit-reset": "12"}, ZENDESK_HEADERS, 13),
        (
            {"zendesk-ratelimit-tickets-index": "total=100; remaining=0; resets=41"},
            ZENDESK_HEADERS,
            42,
        ),
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(1_700_000_010)},
            INTERCOM_HEADERS,
            10,
        ),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Total": "200"}, FRESHDESK_HEADERS, 60),
        ({"ratelimit-remaining": "4", "ratelimit-reset": "20"}, ZENDESK_HEADERS, 4),
    ],
)
def test_headers_make_the_next_request_wait(
    server: responses.RequestsMock,
    clock: FakeClock,
    headers: dict[str, str],
    spec: http.RateLimitHeaders,
    wait: float,
) -> None:
    sent = record_sends(server, clock, lambda _: (200, headers, "{}"))
    client = make_client(clock, limiter=RateLimiter(headers=spec, clock=clock))

    client.get("tickets.json")
    client.get("tickets.json")

    assert wait <= sent[1] - sent[0] <= wait + 0.5


def fixed_window_server(
    clock: FakeClock,
    limit: int,
    window: float,
    refused: list[float],
    rounding: Callable[[float], int],
) -> Handler:
    """A vendor counting requests per fixed window and answering 429 past the limit."""
    counts: dict[int, int] = {}

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        clock.advance(0.5)  # each request takes half a second
        index = math.floor(clock.now() / window)
        counts[index] = counts.get(index, 0) + 1
        reset = (index + 1) * window - clock.now()
        remaining = max(0, limit - counts[index])
        headers = {"ratelimit-remaining": str(remaining), "ratelimit-reset": str(rounding(reset))}
        if counts[index] > limit:
            refused.append(clock.now())
            return 429, {**headers, "Retry-After": f"{math.ceil(reset)}"}, "{}"
        return 200, headers, "{}"

    return reply


@pytest.mark.parametrize(
    ("headers", "rounding"),
    [(None, math.floor), (ZENDESK_HEADERS, math.floor), (ZENDESK_HEADERS, math.ceil)],
)
def test_a_long_run_stays_at_the_ceiling_without_429s(
    server: responses.RequestsMock,
    clock: FakeClock,
    headers: http.RateLimitHeaders | None,
    rounding: Callable[[float], int],
) -> None:
    refused: list[float] = []
    sent = record_sends(server, clock, fixed_window_server(clock, 10, 60, refused, rounding))
    limiter = RateLimiter(Budget(10, 60), headers, clock=clock)
    client = make_client(clock, limiter=limiter)

    for _ in range(300):
        client.get("tickets.json")

    assert refused == []
    achieved = len(sent) / (clock.now() - sent[0])  # requests per second, over 30 minutes
    assert achieved >= 0.95 * 10 / 60


def test_the_budget_counts_from_when_the_server_saw_a_request(
    server: responses.RequestsMock, clock: FakeClock
) -> None:
    """A slow first response must not let the eleventh request in early."""
    arrivals: list[float] = []
    refused: list[float] = []

    def sliding_window_vendor(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        clock.advance(5.0 if not arrivals else 0.1)  # the first request is slow to arrive
        arrivals.append(clock.now())
        if sum(1 for t in arrivals if t > clock.now() - 60) > 10:
            refused.append(clock.now())
            return 429, {"Retry-After": "1"}, "{}"
        return 200, {}, "{}"

    record_sends(server, clock, sliding_window_vendor)
    client = make_client(clock, limiter=RateLimiter(Budget(10, 60), clock=clock))
    for _ in range(30):
        client.get("tickets.json")

    assert refused == []
    assert len(arrivals) == 30


def test_concurrent_requests_leave_the_window_only_after_they_finish(clock: FakeClock) -> None:
    """Freshdesk fetches conversations on four threads: one waiting on the budget must not
    count a request in flight as sent at its start, nor trust a plan its sleep overran."""
    limiter = RateLimiter(Budget(1, 60), clock=clock, margin=0.1)
    first = limiter.acquire()
    got: list[float] = []
    waiter = threading.Thread(target=lambda: got.append(limiter.acquire().at))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive()
    assert got == []
    clock.advance(5.0)  # a slow server: the vendor may have counted it as late as this
    limiter.release(first, None)
    waiter.join(timeout=5)
    assert got == [pytest.approx(65.1)]  # a window after the first finished, not started

    late = RateLimiter(Budget(1, 60), clock=clock, margin=0.1)
    slot = late.acquire()
    late.release(slot, None)
    original = clock.sleep

    def overrun(seconds: float) -> None:  # another thread's sleep runs on past ours
        original(seconds + 3.0)

    clock.sleep = overrun  # type: ignore[method-assign]
    assert late.acquire().at == pytest.approx(slot.at + 60.1 + 3.0)  # sent then, counted then


# --- hosts that cannot be reached, absurd waits, redirects, plaintext (issue 23) ----------


def test_a_host_that_does_not_resolve_fails_at_once_with_the_cause(clock: FakeClock) -> None:
    client = HttpClient("acme", "https://cskpi-no-such-host.invalid/api/v2", clock=clock)
    with pytest.raises(FatalAPIError, match=r"Name or service not known|Failed to resolve"):
        client.get("tickets.json")
    assert clock.sleeps == []


def test_a_refused_connection_fails_at_once_with_the_cause(clock: FakeClock) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HttpClient("acme", f"http://127.0.0.1:{port}/api", clock=clock)
    with pytest.raises(FatalAPIError, match="Connection refused"):
        client.get("tickets.json")
    assert clock.sleeps == []


@pytest.mark.parametrize("retry_after", ["31536000", "Fri, 01 Jan 2100 00:00:00 GMT"])
def test_a_retry_after_longer_than_the_longest_wait_fails_the_run_without_sleeping(
    api: responses.RequestsMock, clock: FakeClock, retry_after: str
) -> None:
    api.get(URL, status=429, headers={"Retry-After": retry_after})
    with pytest.raises(FatalAPIError, match=r"asks to wait [\d,]+ s, longer than the longest"):
        make_client(clock, longest_wait=600).get("tickets.json")
    assert clock.sleeps == []


def test_a_negative_retry_after_is_no_wait(api: responses.RequestsMock, clock: FakeClock) -> None:
    api.get(URL, status=429, headers={"Retry-After": "-5"})
    api.get(URL, json={})
    make_client(clock).get("tickets.json")
    assert clock.sleeps == [0.0]


def test_a_quota_used_up_until_a_distant_reset_fails_the_run_without_sleeping(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    headers = {"ratelimit-remaining": "0", "ratelimit-reset": "86400"}
    api.get(URL, json={}, headers=headers)
    limiter = RateLimiter(headers=ZENDESK_HEADERS, clock=clock)
    with pytest.raises(FatalAPIError, match=r"quota is used up for 86,4\d\d s more"):
        make_client(clock, limiter=limiter, longest_wait=900).get("tickets.json")
    assert clock.sleeps == []


def test_a_redirect_within_the_base_url_is_followed(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(URL, status=301, headers={"Location": f"{BASE}/tickets/v2.json"})
    api.get(f"{BASE}/tickets/v2.json", json={"ok": True})
    assert make_client(clock).get_json("tickets.json") == {"ok": True}


@pytest.mark.parametrize(
    "location",
    ["https://evil.example/steal", "http://acme.zendesk.com/api/v2/tickets.json"],
)
def test_a_redirect_to_another_host_or_to_plain_http_is_refused(
    api: responses.RequestsMock, clock: FakeClock, location: str
) -> None:
    api.get(URL, status=302, headers={"Location": location})
    with pytest.raises(FatalAPIError, match="refusing to follow"):
        make_client(clock).get("tickets.json")
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("base_url", "refused"),
    [
        ("http://acme.zendesk.com/api/v2", True),
        ("http://10.0.0.5/api", True),
        ("http://127.0.0.1:8080/api", False),
        ("http://localhost:8080/api", False),
        ("https://acme.zendesk.com/api/v2", False),
    ],
)
def test_plain_http_is_refused_except_to_this_machine(
    clock: FakeClock, base_url: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(FatalAPIError, match="plain http; use https://"):
            HttpClient("acme", base_url, clock=clock)
    else:
        HttpClient("acme", base_url, clock=clock).close()


def _echo(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """A proxy that repeats the request's headers in its error page."""
    return 502, {}, json.dumps({"error": "bad gateway", "request": dict(request.headers)})


@pytest.mark.parametrize(
    ("user", "secret"),
    [("agent@acme.test/token", "zd-T0ken-4f9c2e71"), ("fd-ApiKey-7c1e93d0", "X")],
)
def test_an_echoed_basic_authorization_never_reaches_the_error(
    api: responses.RequestsMock, clock: FakeClock, user: str, secret: str
) -> None:
    api.add_callback(responses.GET, URL, callback=_echo)
    client = make_client(clock, auth=HTTPBasicAuth(user, secret), max_attempts=1)

    with pytest.raises(RetriableAPIError) as caught:
        client.get("tickets.json")
    message = str(caught.value)
    credentials = base64.b64encode(f"{user}:{secret}".encode()).decode()
    assert api.calls[0].request.headers["Authorization"] == f"Basic {credentials}"
    for leaked in (credentials, credentials.rstrip("="), user if secret == "X" else secret):
        assert leaked not in message
    assert '"Authorization": "Basic ***"' in message
