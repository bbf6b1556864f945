"""Benchmark: the freshdesk connector against the local Freshdesk imitation.

    python -m benchmarks.freshdesk --tickets 100000  # -m: benchmarks/email.py shadows stdlib

1. No rate limit: the imitation runs in its own process (records rendered up front, so its
   own JSON encoding is not what is measured) with the real 300-page cap, and the connector
   paces on a fake clock, so its budget never waits. Two syncs of a fresh database: without
   conversations (``conversations = false``: the ticket list alone) and with them (one more
   request per ticket). Reports tickets/s stored by the tickets stream and the peak RSS of
   this process. Target (issue 8): at least 5,000 tickets/s without conversations, < 200 MB.
2. The growth plan's limits simulated: the imitation, in this process, enforces 200 credits
   and 20 ticket-list calls per minute on a fake clock shared with the connector, and answers
   429 beyond them. Reports the achieved share of the binding budget (the time the fastest
   schedule the limit allows would take for the same requests, over the time they took) and
   the number of 429s: with conversations the account's credits bind, without them the ticket
   list's calls. Target: at least 95 %, zero 429s.

Run by hand from the repository root; the figures go into the closing note. Not a test.
"""

from __future__ import annotations

import argparse
import os

from benchmarks.harness import (
    Timer,
    fastest,
    fresh_database,
    imitation_process,
    peak_rss_mb,
    timed_sync,
)
from cskpi.connectors.freshdesk import FreshdeskConnector, FreshdeskSettings
from cskpi.core.clock import FakeClock
from cskpi.core.sync import SyncReport
from tests.connectors.freshdesk_desk import TICKET_LIST
from tests.connectors.freshdesk_server import FreshdeskImitation

KEY = "fd-test-key-1234"  # the imitation's default credentials
GROWTH = (200, 20)  # credits per minute, ticket-list calls per minute


def connector(url: str, clock: FakeClock, conversations: bool, workers: int) -> FreshdeskConnector:
    settings = FreshdeskSettings(
        type="freshdesk", domain="bench", api_key=KEY, base_url=url, conversations=conversations,
        workers=workers,
    )  # fmt: skip
    return FreshdeskConnector("bench", settings, clock=clock)


def sync(
    url: str, clock: FakeClock, conversations: bool, timer: Timer, workers: int = 4
) -> SyncReport:
    engine = fresh_database("cskpi-fd-")
    return timed_sync(engine, connector(url, clock, conversations, workers), timer)[0]


def unlimited(tickets: int) -> None:
    print(
        f"starting the imitation with {tickets:,} tickets in its own process (rendering up front)"
    )
    imitation = ("tests.connectors.freshdesk_server", "--tickets", str(tickets), "--warm")
    with imitation_process(*imitation) as url:
        print("\n1. no rate limit")
        for conversations in (False, True):
            timer = Timer()
            report = sync(url, FakeClock(), conversations, timer)
            rows = {s.stream: s.rows for s in report.streams}
            seconds = timer.seconds["tickets"]
            peak = peak_rss_mb()
            label = "with conversations" if conversations else "without conversations"
            cpu = timer.cpu["tickets"]
            print(f"   {label}: tickets stream {rows['tickets']:,} rows in {seconds:.1f} s = "
                  f"{tickets / seconds:,.0f} tickets/s; peak RSS so far {peak:.0f} MB")  # fmt: skip
            load = os.getloadavg()[0]
            print(f"      ({cpu:.1f} CPU s in this process: {tickets / cpu:,.0f} tickets per CPU "
                  f"second; load average {load:.1f} on {os.cpu_count()} cores)")  # fmt: skip


def limited(tickets: int, conversations: bool) -> None:
    clock = FakeClock()
    with FreshdeskImitation(tickets, clock=clock, limits=GROWTH) as server:
        # One worker: a fake clock adds up the waits of threads that would wait side by side.
        sync(server.url, clock, conversations, Timer(), workers=1)
    served = [e for e in server.log if e.status < 400]
    got_429 = sum(1 for e in server.log if e.status == 429)
    if conversations:  # the account's credits bind: credit k goes no sooner than minute k // 200
        costs = [5 if e.path == TICKET_LIST else 1 for e in served]
        ideal = fastest(costs, GROWTH[0], 60)
        times, what = [e.at for e in served], f"{sum(costs):,} credits"
        ceiling = f"{GROWTH[0]} credits/min"
    else:  # the ticket list's calls bind
        times = [e.at for e in served if e.path == TICKET_LIST]
        ideal, what = fastest([1] * len(times), GROWTH[1], 60), f"{len(times):,} ticket-list calls"
        ceiling = f"{GROWTH[1]} ticket-list calls/min"
    actual = times[-1] - times[0]
    label = "with conversations" if conversations else "without conversations"
    print(f"\n2. growth plan on a fake clock, {label} ({tickets:,} tickets)")
    if actual > 0:
        print(f"   {what} in {actual / 60:.1f} simulated minutes; the fastest schedule the")
        print(f"   {ceiling} allow takes {ideal / 60:.0f}: {ideal / actual:.1%} of the ceiling")
    else:  # all within the first minute's allowance: no pacing to measure
        print(f"   {what}, all within one minute's {ceiling}: too few to measure pacing")
    print(f"   429 responses: {got_429} (limit trips: {server.throttled})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--limited-tickets", type=int, default=20_000)
    parser.add_argument("--skip-unlimited", action="store_true")
    args = parser.parse_args()
    if not args.skip_unlimited:
        unlimited(args.tickets)
    limited(args.limited_tickets, conversations=True)
    limited(args.limited_tickets, conversations=False)


if __name__ == "__main__":
    main()
