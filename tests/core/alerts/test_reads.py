"""An alert's values from one query equal what they were computed from before, on generated
stores: the backlog at every bucket's end equals ``backlog_counts`` at each instant (and,
per key, the KPI engine's backlog of each bucket); a duration or rate per bucket and key
equals the KPI engine's report over that bucket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import JSON, Engine, bindparam, text

from cskpi.connectors import base
from cskpi.core.alerts.evaluate import baseline_buckets, last_bucket
from cskpi.core.alerts.reads import WHOLE, Bucket, Sizes, Values, backlog_values, measure_values
from cskpi.core.config.file import DIMENSIONS
from cskpi.core.config.periods import Window
from cskpi.core.config.tables import ALERT_MEASURES
from cskpi.core.kpis.backlog import backlog_counts
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.report import KpiContext, compute, none_label
from cskpi.core.store.engine import open_engine, write_transaction
from tests.core.kpis.kpi_reference import Dataset
from tests.core.kpis.test_kpis_property import BASE, histories, migrated, pg_store, scenarios
from tests.postgres import PgServer

__all__ = ["migrated", "pg_store"]  # the fixtures, used by name

WHERES = (  # an alert's `where`, resolved: stored values (None: no value)
    EVERYTHING,
    Where((("channel", ("email", None)),)),
    Where((("tag", ("vip",)), ("priority", ("high", "urgent")))),
    Where((("tag", (None,)),)),
)
FAST = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def anchors(data: Dataset) -> list[datetime]:
    """The instants that put a row in a bucket: creations, solves and ratings."""
    tickets = [t for ts in data.tickets.values() for t in ts]
    return sorted({*(t.created_at for t in tickets), *(t.solved_at for t in tickets if t.solved_at),
                   *(r.rated_at for rs in data.ratings.values() for r in rs)})  # fmt: skip


def engine_values(
    engine: Engine, ctx: KpiContext, kpi: str, dimension: str | None,
    buckets: Sequence[Bucket], now: datetime, where: Where = EVERYTHING,
) -> tuple[Values, Sizes]:  # fmt: skip
    """The reference: a KPI per bucket and key from the KPI engine's report over each bucket (as
    alerts computed it before ``reads.py``)."""
    values: Values = {}
    sizes: Sizes = {}
    for i, b in enumerate(buckets):
        window = Window(b.start, b.end, ctx.timezone, max(now, b.end))
        # the bucket's end passes for the present: no KPI read here is the backlog
        report = compute(engine, window, ctx, by=dimension, wall=b.end, where=where)
        entries = {WHOLE: report.kpis[kpi]} if dimension is None else {
            g.key if g.key is not None else none_label(dimension): g.kpis[kpi]
            for g in (report.by.groups if report.by else [])
        }  # fmt: skip
        for k, entry in entries.items():
            values.setdefault(k, [None] * len(buckets))[i] = entry["value"]
            n = entry.get("n", entry.get("denominator"))
            sizes.setdefault(k, [None] * len(buckets))[i] = None if n is None else int(n)
    return values, sizes


@st.composite
def alert_buckets(draw: st.DrawFn, tz: Any, near: list[datetime]) -> tuple[list[Bucket], datetime]:
    """An alert's buckets (the current one first) and ``now``: mostly the bucket holding one
    of the ``near`` instants (so that it has rows to compare), else anywhere over the data."""
    interval = draw(st.sampled_from(("hour", "day")))
    length = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    anywhere = st.integers(0, 30 * 24 * 60).map(lambda m: BASE + timedelta(minutes=m))
    close = st.sampled_from(near).map(lambda at: at + length) if near else anywhere
    now = draw(st.one_of(close, close, close, anywhere))
    bucket = last_bucket(interval, tz, now)
    weeks = draw(st.integers(2, 4))
    return [bucket, *baseline_buckets(bucket, weeks, interval)], now


@contextmanager
def stored(migrated: Path, data: Dataset) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}"
        with filled(url, data) as engine:
            yield engine


@contextmanager
def filled(url: str, data: Dataset) -> Iterator[Engine]:
    engine = open_engine(url)
    try:
        data.store(engine)
        yield engine
    finally:
        engine.dispose()


def engine_backlog(
    engine: Engine, ctx: KpiContext, by: str | None, buckets: list[Bucket], now: datetime,
    where: Where,
) -> Values:  # fmt: skip
    """The KPI engine's backlog per group in each bucket's report (None: no group)."""
    values: Values = {}
    for i, b in enumerate(buckets):
        report = compute(engine, Window(b.start, b.end, ctx.timezone, max(now, b.end)), ctx,
                         by=by, wall=now, where=where)  # fmt: skip
        if by is None:
            values.setdefault("", [None] * len(buckets))[i] = report.kpis["backlog"]["value"]
            continue
        assert report.by is not None
        for g in report.by.groups:
            key = g.key if g.key is not None else none_label(by)
            values.setdefault(key, [None] * len(buckets))[i] = g.kpis["backlog"]["value"]
    return values


def check_backlog(
    engine: Engine, ctx: KpiContext, data: st.DataObject, near: list[datetime]
) -> None:
    buckets, now = data.draw(alert_buckets(ctx.timezone, near))
    by = data.draw(st.sampled_from((None, "agent", "priority", "tag")))
    where = data.draw(st.sampled_from(WHERES))
    counts = backlog_counts(engine, [min(b.end, now) for b in buckets], wall=now)
    assert backlog_values(engine, None, buckets, now) == {"": [float(n) for n in counts]}
    got = backlog_values(engine, by, buckets, now, where)
    want = engine_backlog(engine, ctx, by, buckets, now, where)
    # a key the engine has no group for in a bucket (no rows there at all) has 0 in it here;
    # a key in no backlog at any of the instants is not judged at all
    want = {k: [v or 0.0 for v in vs] for k, vs in want.items() if by is None or any(vs)}
    assert got == want


@FAST
@given(scenario=histories(), data=st.data())
def test_backlog_at_every_bucket_end_equals_the_rule_at_each_instant(
    migrated: Path, scenario: dict[str, Any], data: st.DataObject
) -> None:
    with stored(migrated, scenario["data"]) as engine:
        check_backlog(engine, scenario["context"], data, anchors(scenario["data"]))


def check_measure(
    engine: Engine, ctx: KpiContext, data: st.DataObject, near: list[datetime]
) -> None:
    kpi = data.draw(st.sampled_from(ALERT_MEASURES))
    by = data.draw(st.sampled_from((None, *DIMENSIONS)))
    where = data.draw(st.sampled_from(WHERES))
    buckets, now = data.draw(alert_buckets(ctx.timezone, near))
    got = measure_values(engine, ctx, kpi, by, buckets, now, where)
    want = engine_values(engine, ctx, kpi, by, buckets, now, where)
    nothing = [None] * len(buckets)
    for values, sizes in (got, want):  # a key with no value in any bucket is never judged
        for key in [k for k, vs in values.items() if vs == nothing]:
            del values[key], sizes[key]
    assert got == want


@FAST
@given(scenario=scenarios(), data=st.data())
def test_a_measure_per_bucket_and_key_equals_the_kpi_engine(
    migrated: Path, scenario: dict[str, Any], data: st.DataObject
) -> None:
    with stored(migrated, scenario["data"]) as engine:
        check_measure(engine, scenario["context"], data, anchors(scenario["data"]))


@settings(FAST, max_examples=5)  # the same SQL as on SQLite: a few find a dialect gap
@given(histories=histories(), scenario=scenarios(), data=st.data())
def test_both_on_postgresql(
    pg_server: PgServer, pg_store: str, histories: dict[str, Any], scenario: dict[str, Any],
    data: st.DataObject,
) -> None:  # fmt: skip
    for drawn, check in ((histories, check_backlog), (scenario, check_measure)):
        pg_server.clear(pg_store)
        with filled(pg_store, drawn["data"]) as engine:
            check(engine, drawn["context"], data, anchors(drawn["data"]))


def test_instants_on_the_edges(migrated: Path) -> None:
    """A ticket created as the bucket starts is in it; solved as it ends, it is still in the
    backlog at its end (solved at or after the instant)."""
    start, end = BASE + timedelta(days=13), BASE + timedelta(days=14)
    edge = base.Ticket("edge", start, end, "solved", first_reply_at=start + timedelta(hours=1),
                       solved_at=end)  # fmt: skip
    ctx = KpiContext(timezone=ZoneInfo("UTC"))
    now = end + timedelta(minutes=5)
    buckets = [Bucket(start, end), *baseline_buckets(Bucket(start, end), 2, "day")]
    said = [
        base.Message("m1", "edge", start + timedelta(minutes=10), "customer", True, "u1"),
        base.Message("m2", "edge", start + timedelta(minutes=40), "agent", True, "a1"),
    ]
    with stored(migrated, Dataset(tickets={"zd": [edge]}, messages={"zd": said})) as engine:
        assert backlog_counts(engine, [end], wall=now) == [1]
        assert backlog_values(engine, None, buckets, now) == {"": [1.0, 0.0, 0.0]}
        assert backlog_values(engine, "priority", buckets, now) == {"(none)": [1.0, 0.0, 0.0]}
        assert measure_values(engine, ctx, "first_response_time", None, buckets, now) == (
            {"": [3600.0, None, None]},
            {"": [1, None, None]},
        )
        # the customer wrote 10 minutes in, the agent answered 30 minutes later
        assert measure_values(engine, ctx, "response_time", None, buckets, now) == (
            {"": [1800.0, None, None]},
            {"": [1, None, None]},
        )


# A solved ticket's stored tags, and whether it is escalated by the escalation tags of
# ESCALATION_TAGS (the first only: plain tags, searched in the stored text before they are
# matched; the others are matched only exactly). As everywhere in the engine (by_tag), an
# entry that is no string is the tag its JSON text spells.
ESCALATION_TAGS = (("escalated",), ("escalated", "über"), ("escalated", '["escalated"]'))
TAGGED: tuple[tuple[object, tuple[bool, bool, bool]], ...] = (
    (["escalated"], (True, True, True)),
    (["Escalated"], (False, False, False)),  # compared as stored: case counts
    (["escalate"], (False, False, False)),  # a prefix of an escalation tag
    (["escalated-by-bot"], (False, False, False)),  # an escalation tag is a prefix of it
    (["vip", "escalated"], (True, True, True)),
    ([1, "escalated"], (True, True, True)),  # a number before the tag: the search goes on
    ([["escalated"]], (False, False, True)),  # a list in the list is its JSON text
    ([{"escalated": "escalated"}], (False, False, False)),
    ([None], (False, False, False)),
    ([], (False, False, False)),
    (["über"], (False, True, False)),  # a store writes it escaped (\u00fc): matched exactly
    (["Über"], (False, False, False)),
)


def test_escalation_by_tag_is_the_kpi_engines_on_every_tag_case(store_url: str) -> None:
    """An alert's escalation_rate, one ticket per hour's bucket, against each ticket's case
    and against the KPI engine's report of each bucket (SQLite and PostgreSQL)."""
    start = BASE + timedelta(days=13)
    buckets = [Bucket(start + timedelta(hours=i), start + timedelta(hours=i + 1))
               for i in range(len(TAGGED) + 1)]  # fmt: skip
    tickets = [
        base.Ticket(f"t{i}", b.start, b.end, "solved", solved_at=b.start + timedelta(minutes=30),
                    group_changes=int(i == len(TAGGED)))  # the last ticket changed groups
        for i, b in enumerate(buckets)
    ]  # fmt: skip
    now = buckets[-1].end
    with filled(store_url, Dataset(tickets={"zd": tickets})) as engine:
        stored_tags = text("UPDATE ticket SET tags = :tags WHERE id = :id").bindparams(
            bindparam("tags", type_=JSON)
        )
        with write_transaction(engine) as conn:
            for i, (tags, _) in enumerate(TAGGED):
                conn.execute(stored_tags, {"tags": tags, "id": f"zd:t{i}"})
        for i, escalation_tags in enumerate(ESCALATION_TAGS):
            ctx = KpiContext(timezone=ZoneInfo("UTC"), escalation_tags=escalation_tags)
            got = measure_values(engine, ctx, "escalation_rate", None, buckets, now)
            rates = [100.0 * escalated[i] for _, escalated in TAGGED] + [100.0]  # changed groups
            assert got == ({WHOLE: rates}, {WHOLE: [1] * len(buckets)})
            assert got == engine_values(engine, ctx, "escalation_rate", None, buckets, now)
