"""Benchmark: the intercom connector against the local Intercom imitation.

    python -m benchmarks.intercom --conversations 50000

1. No rate limit: the imitation runs in its own process (every conversation rendered up
   front, so its own JSON encoding is not what is measured) and the connector paces on a fake
   clock, so its budget never waits. Every conversation is searched and then retrieved with
   its parts (one request each). Reports conversations/s stored (the tickets stream alone,
   and the whole sync) and the peak RSS of this process. Target (issue 9): under 200 MB.
2. Real limits simulated: the imitation, in this process, enforces ``--limit`` requests per
   10-second window (Intercom's 1,000/min is 167) on a fake clock shared with the connector,
   sends ``X-RateLimit-*`` headers and answers 429 beyond the limit. The connector is left at
   its default budget (10,000/min), so the headers alone pace it. Reports the achieved share
   of the ceiling (the time the fastest schedule the limit allows would take for the same
   requests, over the time they took) and the 429s. Target: at least 95 %, zero 429s.

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
from cskpi.connectors.intercom import IntercomConnector, IntercomSettings
from cskpi.core.clock import FakeClock
from tests.connectors.intercom_desk import TOKEN
from tests.connectors.intercom_server import IntercomImitation


def connector(url: str, clock: FakeClock) -> IntercomConnector:
    settings = IntercomSettings(type="intercom", access_token=TOKEN, base_url=url)
    return IntercomConnector("bench", settings, clock=clock)


def unlimited(conversations: int) -> None:
    print(f"starting the imitation with {conversations:,} conversations in its own process")
    imitation = ("tests.connectors.intercom_server", "--conversations", str(conversations))
    with imitation_process(*imitation, "--warm") as url:
        timer = Timer()
        engine = fresh_database("cskpi-ic-")
        report, elapsed = timed_sync(engine, connector(url, FakeClock()), timer)
    peak, tickets = peak_rss_mb(), timer.seconds["tickets"]
    print("\n1. no rate limit")
    print_streams(report, timer)
    print(f"   tickets stream: {conversations / tickets:,.0f} conversations/s (with their parts)")
    print(f"   whole sync:     {conversations / elapsed:,.0f} conversations/s ({elapsed:.1f} s)")
    print(f"   peak RSS:       {peak:.0f} MB (this process; the imitation runs in another)")


def limited(conversations: int, limit: int) -> None:
    clock = FakeClock()
    with IntercomImitation(conversations, clock=clock, limit=limit) as server:
        timed_sync(fresh_database("cskpi-ic-"), connector(server.url, clock))
    times = [e.at for e in server.log if 0 < e.status < 400]
    # At exactly `limit` per 10-second window, request k (from 0) goes no sooner than the
    # start of window k // limit, counted from the window of the first request.
    first_window = times[0] // 10 * 10
    ideal = fastest([1] * len(times), limit, 10, lead=times[0] - first_window)
    actual = times[-1] - times[0]
    print(f"\n2. real limits on a fake clock ({conversations:,} conversations)")
    print(f"   requests: {len(times):,} in {actual / 60:.1f} simulated minutes")
    print(f"   share of the {limit} per 10 s ceiling: {ideal / actual:.1%} (the fastest allowed")
    print(f"   schedule would take {ideal / 60:.1f} minutes); {len(times) / actual:.2f} requests/s")
    print(f"   429 responses: {sum(1 for e in server.log if e.status == 429)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--limited-conversations", type=int, default=None, help="default: same")
    parser.add_argument("--limit", type=int, default=167, help="requests per 10 s window")
    parser.add_argument("--skip-unlimited", action="store_true")
    args = parser.parse_args()
    if not args.skip_unlimited:
        unlimited(args.conversations)
    limited(args.limited_conversations or args.conversations, args.limit)


if __name__ == "__main__":
    main()
