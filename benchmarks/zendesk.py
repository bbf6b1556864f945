"""Benchmark: the zendesk connector against the local Zendesk imitation.

    python -m benchmarks.zendesk --tickets 200000   # -m: benchmarks/email.py shadows the stdlib

1. No rate limit: the imitation runs in its own process (records rendered up front, so its
   own JSON encoding is not what is measured) and the connector paces on a fake clock, so
   its budget never waits. Reports tickets/s (the tickets stream alone, and the whole sync
   of every stream per ticket) and the peak RSS of this process. Target (issue 5): at least
   10,000 tickets/s, under 200 MB.
2. Real limits simulated: the imitation, in this process, enforces 10 incremental-export
   requests per minute on a fake clock shared with the connector and answers 429 beyond it.
   Reports the achieved share of that ceiling (the time the fastest schedule the limit allows
   would take for the same export requests, over the time they took) and the number of
   429s. Target: at least 95 %, zero 429s.

Run by hand from the repository root; the figures go into the closing note. Not a test.
"""

from __future__ import annotations

import argparse

from benchmarks.harness import (
    Timer,
    fastest,
    fresh_database,
    imitation_process,
    peak_rss_mb,
    print_streams,
    timed_sync,
)
from cskpi.connectors.zendesk import ZendeskConnector, ZendeskSettings
from cskpi.core.clock import FakeClock
from tests.connectors.zendesk_server import ZendeskImitation

TOKEN = "zd-test-token-1234"  # the imitation's default credentials
EMAIL = "ops@acme.test"


def connector(url: str, clock: FakeClock) -> ZendeskConnector:
    settings = ZendeskSettings(
        type="zendesk", subdomain="bench", email=EMAIL, api_token=TOKEN, base_url=url
    )
    return ZendeskConnector("bench", settings, clock=clock)


def unlimited(tickets: int) -> None:
    print(
        f"starting the imitation with {tickets:,} tickets in its own process (rendering up front)"
    )
    imitation = ("tests.connectors.zendesk_server", "--tickets", str(tickets), "--warm")
    with imitation_process(*imitation) as url:
        timer = Timer()
        engine = fresh_database("cskpi-zd-")
        report, elapsed = timed_sync(engine, connector(url, FakeClock()), timer)
    rows, peak = {s.stream: s.rows for s in report.streams}, peak_rss_mb()
    print("\n1. no rate limit")
    print_streams(report, timer)
    print(f"   tickets stream: {rows['tickets'] / timer.seconds['tickets']:,.0f} tickets/s")
    print(f"   whole sync:     {tickets / elapsed:,.0f} tickets/s ({elapsed:.1f} s, all streams)")
    print(f"   peak RSS:       {peak:.0f} MB (this process; the imitation runs in another)")


def limited(tickets: int) -> None:
    clock = FakeClock()
    with ZendeskImitation(tickets, clock=clock, export_limit=10) as server:
        timed_sync(fresh_database("cskpi-zd-"), connector(server.url, clock))
    times = [e.at for e in server.requests_to("/api/v2/incremental/") if e.status < 400]
    ideal = fastest([1] * len(times), 10, 60)
    actual = times[-1] - times[0]
    got_429 = sum(1 for e in server.log if e.status == 429)
    print(f"\n2. real limits on a fake clock ({tickets:,} tickets)")
    print(f"   export requests: {len(times)} in {actual / 60:.1f} simulated minutes")
    print(f"   share of the 10/min ceiling: {ideal / actual:.1%} (the fastest allowed schedule")
    print(f"   would take {ideal / 60:.0f} minutes); {len(times) / (actual / 60):.2f} requests/min")
    print(f"   429 responses: {got_429}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--limited-tickets", type=int, default=None, help="default: --tickets")
    parser.add_argument("--skip-unlimited", action="store_true")
    args = parser.parse_args()
    if not args.skip_unlimited:
        unlimited(args.tickets)
    limited(args.limited_tickets or args.tickets)


if __name__ == "__main__":
    main()
