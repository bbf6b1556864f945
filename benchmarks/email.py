"""Benchmark: the email connector against a local Dovecot holding 20,000 messages.

    python -m benchmarks.email --messages 20000    # as the other benchmarks; or
    python benchmarks/email.py --messages 20000     # works too: see the sys.path line below

Starts a throwaway Dovecot (tests/connectors/dovecot.py) on 127.0.0.1, fills it over IMAP
MULTIAPPEND with seeded support threads (a customer mail in INBOX, agent replies in Sent,
follow-ups, some threads filed in Resolved, some auto-replies), then measures:

1. the first sync of the whole mailbox into SQLite: messages/s and the peak RSS of this
   process (the server runs in its own processes);
2. a second sync with nothing new (only the UID searches);
3. 1,000 new messages appended, then an incremental sync.

It also prints the size of the stored cursor (the thread index). Run by hand from the
repository root; the machine is shared, so the figures are noisy. Not a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# stdlib `email` package that imapclient and the connector import.
HERE, ROOT = Path(__file__).resolve().parent, Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from benchmarks.harness import peak_rss_mb, timed_sync  # noqa: E402
from cskpi.connectors.email.connector import EmailConnector, EmailSettings  # noqa: E402
from cskpi.core.store.engine import open_engine  # noqa: E402
from tests.connectors.email.dovecot import Dovecot, available  # noqa: E402

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
AGENTS = ("ana", "ben", "chen", "dara")
SUBJECTS = ("Invoice question", "Cannot log in", "Refund request", "Export fails", "Order late")
Folders = dict[str, list[bytes]]


def message(
    mid: str, sender: str, to: str, subject: str, at: datetime, parents: list[str], auto: bool
) -> bytes:
    refs = " ".join(f"<{p}>" for p in parents)
    lines = [
        f"From: {sender}", f"To: {to}", f"Subject: {subject}",
        f"Date: {at.strftime('%a, %d %b %Y %H:%M:%S +0000')}", f"Message-ID: <{mid}>",
        *([f"In-Reply-To: <{parents[-1]}>", f"References: {refs}"] if parents else []),
        *(["Auto-Submitted: auto-replied"] if auto else []),
        "Content-Type: text/plain; charset=utf-8",
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\nHello,\r\n\r\nthanks for writing.\r\n").encode()


def thread(rng: random.Random, n: int, at: datetime) -> Iterator[tuple[str, bytes]]:
    """(folder, mail) for one thread of 1 to 7 messages, alternating customer and agent."""
    customer = f"user{rng.randrange(3000)}@client{rng.randrange(400)}.test"
    subject = rng.choice(SUBJECTS)
    filed = rng.random() < 0.4
    parents: list[str] = []
    for step in range(rng.choice((1, 2, 2, 3, 4, 4, 5, 7))):
        mid = f"t{n}.{step}@bench.test"
        agent = step % 2 == 1
        sender = f"{rng.choice(AGENTS)}@acme.test" if agent else customer
        to = customer if agent else "support@acme.test"
        title = subject if step == 0 else f"Re: {subject}"
        auto = step == 1 and rng.random() < 0.1
        raw = message(mid, sender, to, title, at, parents, auto)
        folder = "Sent" if agent else ("Resolved" if filed and step == 0 else "INBOX")
        yield folder, raw
        parents.append(mid)
        at += timedelta(minutes=rng.randrange(5, 600))


def fill(server: Dovecot, total: int, seed: int, first: int = 0) -> tuple[int, int]:
    """Append about ``total`` messages in threads numbered from ``first``; returns how many
    were appended and the next thread number."""
    rng = random.Random(seed)
    folders: Folders = {"INBOX": [], "Sent": [], "Resolved": []}
    count, n = 0, first
    with server.client() as imap:
        while count < total:
            at = START + timedelta(minutes=n * 7)
            for folder, raw in thread(rng, n, at):
                folders[folder].append(raw)
                count += 1
            n += 1
            if count >= total or sum(map(len, folders.values())) >= 500:
                for folder, raws in folders.items():
                    if raws:
                        imap.multiappend(folder, raws)
                        raws.clear()
    return count, n


def connector(server: Dovecot) -> EmailConnector:
    settings = EmailSettings(
        type="email", host=server.host, port=server.port, tls="none", username=server.user,
        password=server.password, agent_addresses=["*@acme.test"],
        resolved_folders=["Resolved"], resolve_after=timedelta(hours=72),
    )  # fmt: skip
    return EmailConnector("bench", settings)


def mail_sync(server: Dovecot, db: Path) -> tuple[int, int, float]:
    report, elapsed = timed_sync(open_engine(f"sqlite:///{db}"), connector(server))
    return report.streams[0].pages, report.streams[0].rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not available():
        sys.exit("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot()
    server.start()
    db = Path(tempfile.mkdtemp(prefix="cskpi-mail-")) / "bench.db"
    try:
        began = time.perf_counter()
        total, threads = fill(server, args.messages, args.seed)
        print(f"appended {total:,} messages in {time.perf_counter() - began:.1f} s")
        pages, rows, elapsed = mail_sync(server, db)
        peak = peak_rss_mb()
        print("\n1. first sync")
        print(f"   {total:,} messages, {pages} pages, {rows:,} rows in {elapsed:.1f} s")
        print(f"   {total / elapsed:,.0f} messages/s; peak RSS {peak:.0f} MB (this process)")
        with sqlite3.connect(db) as conn:
            (cursor,) = conn.execute("SELECT length(cursor) FROM sync_state").fetchone()
            counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("ticket", "message")]  # fmt: skip
        print(f"   {counts[0]:,} tickets, {counts[1]:,} messages; cursor {cursor / 1024:.0f} KiB")
        pages, rows, elapsed = mail_sync(server, db)
        print(f"\n2. second sync, nothing new: {pages} pages, {rows} rows in {elapsed:.2f} s")
        added, _ = fill(server, 1000, args.seed + 1, first=threads)
        pages, rows, elapsed = mail_sync(server, db)
        print(f"\n3. {added:,} new messages: {pages} pages, {rows:,} rows in {elapsed:.2f} s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
