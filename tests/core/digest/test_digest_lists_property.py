"""The lists of tickets the digest and the report show under the SLA figures
(``digest/content.py``), on the KPI property tests' generated stores against rules written
here from their docstrings and docs/kpis.md:

* ``breached``: the tickets created in the window that missed a first-response or
  resolution target, judged as the SLA KPIs judge them (what is known at ``now``), oldest
  first, each with what it missed;
* ``unanswered``: the tickets with no first reply and not solved at an instant, how many,
  and the oldest of them.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cskpi.connectors import base
from cskpi.connectors.registry import installed
from cskpi.core.config.file import Config, load_config
from cskpi.core.digest.content import breached, unanswered
from cskpi.core.kpis.report import KpiContext
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import DONE, Dataset, business_seconds
from tests.core.kpis.test_kpis_property import migrated, scenarios

__all__ = ["migrated"]  # the fixture, imported for pytest

EVERY = 10**6  # a limit above any generated store: the whole list


def epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def chosen(data: Dataset, connectors: tuple[str, ...]) -> list[tuple[str, base.Ticket]]:
    """The stored tickets of ``connectors`` (every connector when none), not deleted, in the
    lists' order: by creation, then by stored id (connector:external_id)."""
    found = [(c, t) for c, tickets in data.tickets.items() for t in tickets
             if not t.deleted and (not connectors or c in connectors)]  # fmt: skip
    return sorted(found, key=lambda ct: (epoch(ct[1].created_at), f"{ct[0]}:{ct[1].external_id}"))


def missed(ctx: KpiContext, t: base.Ticket, now: int) -> list[str]:
    """The targets ``t`` missed at ``now``: one reached late, or one still open past it."""
    assert ctx.sla is not None
    created = epoch(t.created_at)
    assert created is not None
    solved = t.solved_at if t.status in DONE else None
    out = []
    for kind, done_at in (("first_response", t.first_reply_at), ("resolution", solved)):
        target = getattr(ctx.sla, kind).target(t.priority)
        if target is None:
            continue
        done = epoch(done_at)
        until = done if done is not None and done <= now else now  # not known before now
        if ctx.sla.business_hours and ctx.business is not None:
            elapsed = business_seconds(ctx.business, created, until)
        else:
            elapsed = until - created
        if elapsed > target.total_seconds():
            out.append(kind.replace("_", " "))
    return out


def config_at(folder: Path, url: str) -> Config:
    """A config whose one connector has no tickets stored: the lists carry no ticket links,
    and the SLA comes from the scenario's context, as ``breached`` takes it."""
    path = folder / "cskpi.toml"
    text = f'timezone = "UTC"\ndatabase = "{url}"\n\n[connectors.unused]\ntype = "demo"\n'
    path.write_text(text, encoding="utf-8")
    return load_config(path, installed())


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(scenario=scenarios(), shown=st.sampled_from((0, 1, 3, EVERY)), pick=st.data())
def test_the_lists_are_the_tickets_the_rules_name(
    migrated: Path, scenario: dict[str, Any], shown: int, pick: st.DataObject
) -> None:
    data: Dataset = scenario["data"]
    w, ctx, connectors = scenario["window"], scenario["context"], scenario["connectors"]
    # the waiting tickets at the window's end, or at a ticket's own stamp (a reply or solve
    # at the very instant is no longer waiting; a creation then is not yet)
    stamps = [
        m
        for ts in data.tickets.values()
        for t in ts
        for m in (t.created_at, t.first_reply_at, t.first_solved_at, t.solved_at)
        if m
    ]
    instant = pick.draw(st.sampled_from([w.at, *stamps]))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}"
        engine = open_engine(url)
        try:
            data.store(engine)
            config = config_at(Path(folder), url)
            got_breached = breached(engine, config, w, ctx, EVERY, connectors)
            got_waiting, total = unanswered(engine, config, instant, shown, connectors)
        finally:
            engine.dispose()
    tickets = chosen(data, connectors)
    start, end, now, at = (int(m.timestamp()) for m in (w.start, w.end, w.now, instant))
    if ctx.sla is None:
        assert got_breached == []
    else:
        want = [(f"{c}:{t.external_id}", ", ".join(m)) for c, t in tickets
                if t.priority is not None and start <= (epoch(t.created_at) or 0) < end
                and (m := missed(ctx, t, now))]  # fmt: skip
        assert [(b.ticket_id, b.missed) for b in got_breached] == want
    waiting = [f"{c}:{t.external_id}" for c, t in tickets
               if (epoch(t.created_at) or 0) < at
               and (t.first_reply_at is None or (epoch(t.first_reply_at) or 0) >= at)
               and ((solved := t.first_solved_at or t.solved_at) is None
                    or (epoch(solved) or 0) >= at)]  # fmt: skip
    assert total == len(waiting)
    assert [u.ticket_id for u in got_waiting] == waiting[:shown]
